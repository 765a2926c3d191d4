"""Deepfake benchmark loaders on fake copies of their real layouts, frame sampling, forgery metrics/plots."""

import json
import warnings

import numpy as np
import pytest

from mmtrust.data.forgery_base import even_frame_indices
from mmtrust.data.forgery_datasets import (
    DFD,
    DFDC,
    CelebDFv2,
    DatasetLayoutError,
    DeeperForensics,
    DiFF,
    FaceForensicsPP,
    WildDeepfake,
    sample_frames,
)
from mmtrust.data.video import VideoReadError, write_video

KW = {"n_frames": 3, "image_size": 32, "detector": "haar", "progress": False}


def _vid(path, n=6, size=32, value=None):
    """A tiny lossless video; frame k is uniform grey 20*k (+ value offset) so frames can be told apart."""
    base = 0 if value is None else value
    frames = np.stack([np.full((size, size, 3), min(255, base + 20 * k), np.uint8) for k in range(n)])
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if path.suffix == ".mp4" else "ffv1"
    write_video(path, frames, 25, codec=codec, crf=0 if codec == "libx264" else None)
    return path


def _frames_dir(path, n=5, size=24):
    import cv2

    path.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        cv2.imwrite(str(path / f"{k}.png"), np.full((size, size, 3), 30 * k, np.uint8))
    return path


def test_even_frame_indices_cover_the_whole_video():
    assert even_frame_indices(300, 4).tolist() == [37, 112, 187, 262]
    assert even_frame_indices(3, 8).tolist() == [0, 1, 2]
    idx = even_frame_indices(1000, 32)
    assert idx[0] < 32 and idx[-1] > 960 and len(set(idx.tolist())) == 32
    with pytest.raises(ValueError):
        even_frame_indices(0, 4)


def test_sample_frames_from_video_and_folder(tmp_path):
    p = _vid(tmp_path / "v.mp4", n=12)
    frames, idx, total = sample_frames(p, 4)
    assert total == 12 and idx.tolist() == even_frame_indices(12, 4).tolist()
    assert np.allclose(frames.reshape(4, -1).mean(1), 20 * idx, atol=2)  # the right frames, not the first 4
    frames, idx, total = sample_frames(_frames_dir(tmp_path / "f", n=5), 2)
    assert total == 5 and idx.tolist() == [1, 3] and np.allclose(frames[:, 0, 0, 0], [30, 90])
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoReadError, match="bad.mp4"):
        sample_frames(bad, 2)


# ------------------------------------------------------------------------------------------ FF++ / DFD
@pytest.fixture(scope="module")
def ffpp(tmp_path_factory):
    root = tmp_path_factory.mktemp("ffpp")
    pairs = {"train": [["000", "001"]], "val": [["002", "003"]], "test": [["004", "005"]]}
    (root / "splits").mkdir()
    for s, p in pairs.items():
        (root / "splits" / f"{s}.json").write_text(json.dumps(p))
    for i in range(6):
        _vid(root / "original_sequences/youtube/c23/videos" / f"{i:03d}.mp4", n=4)
    for m in ("Deepfakes", "Face2Face"):
        for a, b in (p for ps in pairs.values() for p in ps):
            for t, s in ((a, b), (b, a)):
                _vid(root / "manipulated_sequences" / m / "c23/videos" / f"{t}_{s}.mp4", n=4, value=100)
    # DFD lives in the same tree
    for actor in ("01", "02", "03", "04", "05"):
        _vid(root / "original_sequences/actors/c23/videos" / f"{actor}__walking.mp4", n=3)
        _vid(root / "manipulated_sequences/DeepFakeDetection/c23/videos" / f"{actor}_09__walking__ABC.mp4", n=3)
    return root


def test_ffpp_splits_labels_and_cache(ffpp, tmp_path):
    counts = {}
    for split in ("train", "val", "test"):
        ds = FaceForensicsPP(ffpp, split=split, cache_dir=tmp_path / "c", **KW)
        counts[split] = ds.counts()
        assert counts[split] == {"real": 2, "Deepfakes": 2, "Face2Face": 2}
        assert sorted(ds.labels.tolist()) == [0, 0, 1, 1, 1, 1]
        v = ds[0]
        assert v.frames.shape == (3, 32, 32, 3)
        assert v.frame_indices.tolist() == even_frame_indices(4, 3).tolist() == [0, 2, 3]
    test = FaceForensicsPP(ffpp, split="test", cache_dir=tmp_path / "c", **KW)
    assert set(test.ids) == {"real/004", "real/005", "Deepfakes/004_005", "Deepfakes/005_004",
                             "Face2Face/004_005", "Face2Face/005_004"}
    # cached once per video: a second dataset does not rewrite the files
    files = sorted((tmp_path / "c").glob("*.npz"))
    mt = [f.stat().st_mtime_ns for f in files]
    FaceForensicsPP(ffpp, split="test", cache_dir=tmp_path / "c", **KW)
    assert [f.stat().st_mtime_ns for f in files] == mt
    # frame-level view keeps the video id for video-level metrics
    fr = test.frames()
    assert len(fr) == 6 * 3 and {f.video for f in fr} == set(test.ids)
    # one method only / a compression that is not there
    only = FaceForensicsPP(ffpp, split="train", methods=["Deepfakes"], cache_dir=tmp_path / "c", **KW)
    assert only.counts() == {"real": 2, "Deepfakes": 2}
    with pytest.raises(DatasetLayoutError, match="original_sequences/youtube/c40"):
        FaceForensicsPP(ffpp, split="train", compression="c40", cache_dir=tmp_path / "c", **KW)


def test_ffpp_manipulation_masks_follow_the_frames(ffpp, tmp_path):
    import shutil

    root = tmp_path / "ff"
    shutil.copytree(ffpp, root)
    # a mask video whose frame k is white on its left half for odd k only
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    frames[1::2, :, :16] = 255
    write_video(root / "manipulated_sequences/Deepfakes/masks/videos/004_005.mp4", frames, 25, codec="libx264", crf=0)
    ds = FaceForensicsPP(root, split="test", methods=["Deepfakes"], cache_dir=tmp_path / "c", **KW)
    v = ds[ds.ids.index("Deepfakes/004_005")]
    assert v.masks is not None and v.masks.shape == (3, 32, 32)
    odd = v.frame_indices % 2 == 1  # sampled frames 0, 2, 3: only frame 3 has a mask
    assert (v.masks[odd][:, 16, 4] == 255).all() and (v.masks[~odd] == 0).all()
    assert ds[ds.ids.index("Deepfakes/005_004")].masks is None


def test_ffpp_missing_split_file_shows_the_tree(ffpp, tmp_path):
    import shutil

    root = tmp_path / "ff"
    shutil.copytree(ffpp / "original_sequences", root / "original_sequences")
    (root / "splits").mkdir()
    (root / "splits" / "train.json").write_text("[]")
    with pytest.raises(DatasetLayoutError) as err:
        FaceForensicsPP(root, split="train", **KW)
    msg = str(err.value)
    assert "val.json" in msg and "test.json" in msg and "manipulated_sequences/" in msg and "splits/train.json" in msg


def test_dfd_actor_disjoint(ffpp, tmp_path):
    ids = {}
    for split in ("train", "val", "test"):
        ds = DFD(ffpp, split=split, cache_dir=tmp_path / "d", lazy=True, **KW)
        ids[split] = {e.meta["identity"] for e in ds.entries}
        assert all(e.label == (e.forgery_type != "real") for e in ds.entries)
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["val"])
    assert len(DFD(ffpp, split="all", lazy=True, **KW).entries) == 10


# ------------------------------------------------------------------------------------------ Celeb-DF
def test_celebdf_test_list_and_labels(tmp_path):
    root = tmp_path / "cdf"
    for name in ("id0_0000", "id0_0001", "id1_0000", "id2_0000"):
        _vid(root / "Celeb-real" / f"{name}.mp4", n=3)
    for name in ("id0_id1_0000", "id1_id0_0000", "id2_id0_0000"):
        _vid(root / "Celeb-synthesis" / f"{name}.mp4", n=3)
    _vid(root / "YouTube-real" / "00000.mp4", n=3)
    (root / "List_of_testing_videos.txt").write_text(
        "1 Celeb-real/id0_0001.mp4\n0 Celeb-synthesis/id1_id0_0000.mp4\n1 YouTube-real/00000.mp4\n")
    test = CelebDFv2(root, split="test", lazy=True, **KW)
    assert {e.id: e.label for e in test.entries} == {
        "Celeb-real/id0_0001.mp4": 0, "Celeb-synthesis/id1_id0_0000.mp4": 1, "YouTube-real/00000.mp4": 0}
    train = CelebDFv2(root, split="train", val_fraction=0.0, lazy=True, **KW)
    assert len(train.entries) == 5 and not {e.id for e in train.entries} & {e.id for e in test.entries}
    val = CelebDFv2(root, split="val", val_fraction=0.34, lazy=True, **KW)
    assert val.entries and {e.meta["identity"] for e in val.entries} == {"id2"}
    (root / "List_of_testing_videos.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="List_of_testing_videos.txt"):
        CelebDFv2(root, split="test", **KW)


# ---------------------------------------------------------------------------------------------- DFDC
def test_dfdc_metadata_and_test_labels(tmp_path):
    root = tmp_path / "dfdc"
    for part, names in (("dfdc_train_part_0", ("aaa", "bbb")), ("dfdc_train_part_1", ("ccc",))):
        meta = {}
        for n in names:
            _vid(root / part / f"{n}.mp4", n=3)
            meta[f"{n}.mp4"] = {"label": "FAKE" if n != "aaa" else "REAL", "split": "train",
                                **({"original": "aaa.mp4"} if n != "aaa" else {})}
        (root / part / "metadata.json").write_text(json.dumps(meta))
    _vid(root / "test" / "ttt.mp4", n=3)
    _vid(root / "test" / "uuu.mp4", n=3)
    (root / "test" / "labels.csv").write_text("filename,label\nttt.mp4,1\nuuu.mp4,0\n")
    train = DFDC(root, split="train", lazy=True, **KW)
    assert {e.id: e.label for e in train.entries} == {"dfdc_train_part_0/aaa": 0, "dfdc_train_part_0/bbb": 1,
                                                      "dfdc_train_part_1/ccc": 1}
    test = DFDC(root, split="test", **KW, cache_dir=tmp_path / "c")
    assert dict(zip(test.ids, test.labels.tolist(), strict=True)) == {"test/ttt": 1, "test/uuu": 0}
    (root / "dfdc_train_part_1" / "metadata.json").unlink()
    with pytest.raises(DatasetLayoutError, match="dfdc_train_part_1/metadata.json is missing"):
        DFDC(root, split="train", **KW)


# --------------------------------------------------------------------------------- DeeperForensics
def test_deeperforensics_lists_and_ffpp_reals(tmp_path):
    root = tmp_path / "dfo"
    for tgt, split in (("000", "train"), ("001", "val"), ("002", "test")):
        _vid(root / "manipulated_videos" / "end_to_end" / f"{tgt}_M101.mp4", n=3)
        _vid(root / "original_sequences/youtube/c23/videos" / f"{tgt}.mp4", n=3)
        (root / "lists" / "splits").mkdir(parents=True, exist_ok=True)
        with open(root / "lists" / "splits" / f"{split}.txt", "a") as fh:
            fh.write(f"{tgt}_M101.mp4\n")
    ds = DeeperForensics(root, split="val", lazy=True, **KW)
    assert {e.id: e.label for e in ds.entries} == {"end_to_end/001_M101": 1, "real/001": 0}
    (root / "lists" / "splits" / "test.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="lists/splits/test.txt"):
        DeeperForensics(root, split="val", **KW)


# ------------------------------------------------------------------------------------ WildDeepfake
def test_wilddeepfake_sequences(tmp_path):
    root = tmp_path / "wdf"
    for cls in ("real", "fake"):
        for sp in ("train", "test"):
            for k in range(2):
                _frames_dir(root / f"{cls}_{sp}" / f"{k}" / cls / f"seq{k}", n=4)
    ds = WildDeepfake(root, split="test", **KW, cache_dir=tmp_path / "c")
    assert len(ds) == 4 and sorted(ds.labels.tolist()) == [0, 0, 1, 1]
    assert ds[0].frames.shape == (3, 32, 32, 3)
    train = WildDeepfake(root, split="train", val_fraction=0.5, lazy=True, **KW)
    val = WildDeepfake(root, split="val", val_fraction=0.5, lazy=True, **KW)
    assert len(train.entries) == 2 and len(val.entries) == 2
    (root / "real_test2").mkdir()
    import shutil

    shutil.rmtree(root / "fake_test")
    with pytest.raises(DatasetLayoutError, match="fake_test/ is missing"):
        WildDeepfake(root, split="test", **KW)


# -------------------------------------------------------------------------------------------- DiFF
def test_diff_images(tmp_path):
    import cv2

    root = tmp_path / "diff"
    for sub in ("real", "t2i/Midjourney", "fe/DiffAE"):
        (root / "test" / sub).mkdir(parents=True)
        cv2.imwrite(str(root / "test" / sub / "a.png"), np.full((40, 40, 3), 90, np.uint8))
    ds = DiFF(root, split="test", **KW, cache_dir=tmp_path / "c")
    assert dict(zip(ds.ids, ds.labels.tolist(), strict=True)) == {"test/fe/DiffAE/a": 1, "test/real/a": 0,
                                                                  "test/t2i/Midjourney/a": 1}
    assert ds.counts() == {"FE": 1, "real": 1, "T2I": 1}
    assert ds[0].frames.shape == (1, 32, 32, 3) and ds[0].meta["method"] == "DiffAE"
    with pytest.raises(DatasetLayoutError, match="none of train/, val/, test/"):
        DiFF(tmp_path, split="test", **KW)


# ------------------------------------------------------------------------------------ bad input
def test_undecodable_video_is_named_and_skipped(ffpp, tmp_path):
    import shutil

    root = tmp_path / "ff"
    shutil.copytree(ffpp, root)
    (root / "original_sequences/youtube/c23/videos/004.mp4").write_bytes(b"\x00garbage" * 50)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = FaceForensicsPP(root, split="test", methods=["Deepfakes"], cache_dir=tmp_path / "c", **KW)
    assert [s[0] for s in ds.skipped] == ["real/004"] and "real/004" not in ds.ids
    assert any("004.mp4" in str(w.message) for w in rec)
    with pytest.raises(VideoReadError, match="004.mp4"):
        FaceForensicsPP(root, split="test", methods=["Deepfakes"], cache_dir=tmp_path / "c2", strict=True, **KW)


def test_face_is_found_and_cropped_in_a_real_photo_video(tmp_path):
    import cv2
    from skimage import data

    img = cv2.resize(data.astronaut(), (160, 160), interpolation=cv2.INTER_AREA)
    frames = np.stack([np.roll(img, 2 * k, axis=1) for k in range(4)])
    root = tmp_path / "dfdc"
    write_video(root / "dfdc_train_part_0" / "abc.mp4", frames, 25, codec="libx264", crf=10)
    (root / "dfdc_train_part_0" / "metadata.json").write_text(json.dumps({"abc.mp4": {"label": "REAL"}}))
    ds = DFDC(root, split="train", n_frames=2, image_size=48, detector="haar", progress=False,
              cache_dir=tmp_path / "c")
    v = ds[0]
    assert v.meta["face_found"] == 2 and v.frames.shape == (2, 48, 48, 3)


# --------------------------------------------------------------------------------- metrics, plots
def test_forgery_report_frame_and_video_level(tmp_path):
    from sklearn.metrics import average_precision_score, roc_auc_score

    from mmtrust.metrics.classification import aggregate_by_video, forgery_report
    from mmtrust.tasks.forgery_plots import plot_roc

    rng = np.random.default_rng(0)
    videos = np.repeat([f"v{i}" for i in range(20)], 5)
    labels = np.repeat(np.arange(20) % 2, 5)
    scores = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 100), 0, 1)
    rep = forgery_report(scores, labels, videos)
    assert np.isclose(rep["AUC"], roc_auc_score(labels, scores))
    assert np.isclose(rep["AP"], average_precision_score(labels, scores))
    vs, vy, ids = aggregate_by_video(scores, labels, videos)
    assert ids[:2] == ["v0", "v1"] and np.isclose(vs[3], scores[15:20].mean()) and vy.tolist() == [0, 1] * 10
    assert np.isclose(rep["video_AUC"], roc_auc_score(vy, vs)) and rep["n_videos"] == 20
    assert rep["video_AUC"] >= rep["AUC"] - 0.05  # averaging frames of a video removes noise
    assert 0 <= rep["EER"] <= 0.5 and 0 <= rep["video_ACC"] <= 1
    with pytest.raises(ValueError, match="different labels"):
        aggregate_by_video([0.1, 0.2], [0, 1], ["a", "a"])
    png = plot_roc(tmp_path / "roc.png", {"frame": (scores, labels), "video": (vs, vy)}, title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_deepfakebench_json_round_trip(ffpp, tmp_path):
    from mmtrust.data.forgery_datasets import DeepfakeBenchJSON, export_deepfakebench_json

    src = FaceForensicsPP(ffpp, split="test", cache_dir=tmp_path / "c", **KW)
    path = export_deepfakebench_json(src, tmp_path / "dfb", name="FaceForensics++")
    tree = json.loads(path.read_text())["FaceForensics++"]
    assert set(tree) == {"FF-real", "FF-DF", "FF-F2F"} and set(tree["FF-DF"]["test"]["c23"]) == {
        "Deepfakes_004_005", "Deepfakes_005_004"}
    back = DeepfakeBenchJSON(tmp_path / "dfb", split="test", dataset="FaceForensics++", cache_dir=tmp_path / "c2", **KW)
    assert len(back) == len(src) and sorted(back.labels.tolist()) == sorted(src.labels.tolist())
    a = {e.id.replace("/", "_"): src[i].frames for i, e in enumerate(src._ready)}
    for i, e in enumerate(back._ready):  # already face crops: the frames come back unchanged
        assert np.array_equal(back[i].frames, a[e.id.split("/", 1)[1]])
    with pytest.raises(DatasetLayoutError, match="Celeb-DF-v2.json is missing"):
        DeepfakeBenchJSON(tmp_path / "dfb", split="test", dataset="Celeb-DF-v2", **KW)


def test_unknown_loader_option_is_refused(ffpp):
    with pytest.raises(TypeError, match="unknown option.*compresion"):
        FaceForensicsPP(ffpp, split="test", compresion="c40", **KW)
