"""The rPPG task: POS/CHROM recover the HR of built-in clips; chunking; the training loss."""

import numpy as np
import pytest
import torch
from scipy import stats

import mmtrust
from mmtrust.data.rppg_datasets import RPPGVideo
from mmtrust.nn.losses import neg_pearson
from mmtrust.tasks.rppg import RPPGChunks, RPPGTask, prepare_video, run_on_video


@pytest.fixture(scope="module")
def clean_clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    return mmtrust.load_dataset("synthetic-rppg", root=str(root / "d"), split="all", preset="tiny",
                                domain="still", progress=False)


@pytest.mark.parametrize("name", ["pos", "chrom"])
def test_pos_chrom_recover_hr_of_builtin_clips(clean_clips, name):
    metrics, per_video = RPPGTask().evaluate(mmtrust.create_method(name), clean_clips)
    assert metrics["n_videos"] == len(clean_clips) >= 5
    assert metrics["MAE"] <= 3.0, [(r.id, r.hr_pred, r.hr_gt) for r in per_video]
    for r in per_video:  # the reference is the generator's true HR, read back through the shared estimator
        true = clean_clips[[v.id for v in clean_clips].index(r.id)].meta["hr_bpm"]
        assert abs(r.hr_gt - true) <= 60 * 30 / 512


def test_a_model_without_pulse_fails_the_same_check(clean_clips):
    """The HR check can fail: a 'method' that outputs noise does not reach MAE <= 3."""

    class Noise(torch.nn.Module):
        input_type = output_type = "raw"
        chunk_length = None

        def forward(self, video, fs=30.0):
            return torch.randn(video.shape[0], video.shape[2], generator=torch.Generator().manual_seed(1))

    metrics, _ = RPPGTask().evaluate(Noise(), clean_clips)
    assert metrics["MAE"] > 3.0


def test_chunks_and_neural_run_concatenate(clean_clips):
    v = clean_clips[0]
    chunks = RPPGChunks([v], chunk_length=64, input_type="diffnormalized", label_type="diffnormalized")
    n = len(v) // 64
    assert len(chunks) == n
    x, y = chunks[0]
    assert x.shape == (3, 64, *v.frames.shape[1:3]) and y.shape == (64,)
    full_x, full_y = prepare_video(v, "diffnormalized", "diffnormalized")
    assert torch.equal(x, torch.from_numpy(full_x[:, :64])) and np.array_equal(chunks[1][1], full_y[64:128])

    class Echo(torch.nn.Module):  # returns the green channel's spatial mean: checks the chunk order
        input_type = output_type = "diffnormalized"
        chunk_length = 64

        def forward(self, video, fs=30.0):
            return video[:, 1].mean(dim=(2, 3))

    pred, label = run_on_video(Echo(), v, tail="drop")  # rPPG-Toolbox: the frames after the last chunk dropped
    assert pred.shape == label.shape == (n * 64,)
    np.testing.assert_allclose(pred, full_x[1, : n * 64].mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(label, full_y[: n * 64])


def test_the_frames_after_the_last_chunk_are_read_from_an_overlapping_chunk(clean_clips):
    v = clean_clips[0]
    full_x, full_y = prepare_video(v, "diffnormalized", "diffnormalized")
    total = full_x.shape[1]
    assert total % 64, "the clip must not be a multiple of the chunk for this test"

    class Where(torch.nn.Module):  # output = the green mean of each frame, plus 1000 x (index of the chunk in
        input_type = output_type = "diffnormalized"  # its batch): tells which chunk supplied each output
        chunk_length = 64

        def forward(self, video, fs=30.0):
            return video[:, 1].mean(dim=(2, 3)) + 1000.0 * torch.arange(len(video))[:, None]

    pred, label = run_on_video(Where(), v, batch_size=64)  # one batch: chunk k adds 1000 k
    assert pred.shape == label.shape == (total,)  # the whole video, as a classical method reads it
    np.testing.assert_array_equal(label, full_y)
    n = total // 64
    expect = full_x[1].mean(axis=(1, 2)) + 1000.0 * np.repeat(np.arange(n + 1), 64)[:total]
    expect[n * 64:] = full_x[1, n * 64:].mean(axis=(1, 2)) + 1000.0 * n  # the extra chunk is the (n+1)-th
    np.testing.assert_allclose(pred, expect, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match=r"tail: expected one of \('cover', 'drop'\), got 'keep'"):
        run_on_video(Where(), v, tail="keep")
    metrics, _ = RPPGTask().evaluate(Where(), [v], tail="drop")
    assert metrics["frames_read"] == pytest.approx(n * 64 / total)
    assert RPPGTask().evaluate(Where(), [v])[0]["frames_read"] == 1.0


def test_neg_pearson_matches_scipy():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 50, generator=g), torch.randn(3, 50, generator=g)
    expected = np.mean([1 - stats.pearsonr(a[i], b[i])[0] for i in range(3)])
    assert neg_pearson(a, b).item() == pytest.approx(expected, abs=1e-5)
    assert neg_pearson(a, a).item() == pytest.approx(0.0, abs=1e-5)
    assert neg_pearson(a, -a).item() == pytest.approx(2.0, abs=1e-5)
    with pytest.raises(ValueError, match=r"same shape \(B, T\)"):
        neg_pearson(a, b[:, :10])


def test_too_short_video_for_a_chunk_is_explained():
    v = RPPGVideo(id="short", subject="s", frames=np.zeros((10, 8, 8, 3), np.uint8), ppg=np.zeros(10, np.float32),
                  fs=30.0, meta={})
    model = mmtrust.create_method("physnet", preset="tiny")
    with pytest.raises(ValueError, match="short has 10 frames, fewer than the model's chunk of 32"):
        run_on_video(model, v)


def test_dataset_options_in_the_data_string(tmp_path):
    task = RPPGTask()
    ds = task.load_data(f"synthetic-rppg:{tmp_path / 'd'}?preset=tiny&domain=still&n_subjects=3", "all", 32,
                        progress=False)
    assert len(ds) == 3 and ds[0].frames.shape[1:] == (32, 32, 3)
    with pytest.raises(ValueError, match="must be key=value"):
        task.load_data("synthetic-rppg?preset", "all", 32)
    with pytest.raises(ValueError, match="unknown split 'tset'"):
        task.load_data("synthetic-rppg", "tset", 32)


def test_windowed_evaluation(clean_clips):
    video_metrics, _ = RPPGTask().evaluate(mmtrust.create_method("chrom"), clean_clips)
    win_metrics, _ = RPPGTask().evaluate(mmtrust.create_method("chrom"), clean_clips, window_s=5.0)
    frames = len(clean_clips[0])
    assert win_metrics["n_windows"] == len(clean_clips) * (frames // 150) and "n_windows" not in video_metrics
    assert win_metrics["MAE"] <= 8.0  # 5 s windows resolve HR to ~7 bpm (a 256-point periodogram at 30 fps)
