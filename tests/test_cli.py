"""The command line end to end on tiny built-in data: list, eval, train, resume guard, predict, bench."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmtrust.cli import main


@pytest.fixture(scope="module")
def data(tiny_still_rppg):
    return tiny_still_rppg


def _true_hr(root: Path, subject: str) -> float:
    return json.loads((root / subject / "meta.json").read_text())["hr_bpm"]


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("pos", "chrom", "physnet", "synthetic-rppg", "ubfc-rppg", "pure"):
        assert name in out


def test_eval_classical_on_a_path(data, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "chrom", "--data", str(data), "--split", "all", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "metrics.json").read_text())
    assert res["metrics"]["n_videos"] == 5
    assert res["metrics"]["MAE"] <= 3.0
    assert (out / "hr.png").stat().st_size > 5000
    bin_bpm = 60 * 30 / 512  # 10 s at 30 fps, periodogram zero-padded to 512 samples
    for v in res["per_video"]:  # the reference HR read from the PPG label is the generator's true HR
        assert abs(v["hr_gt"] - _true_hr(data, v["id"])) <= bin_bpm


def test_train_eval_and_guards(data, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "physnet", "--preset", "tiny", "--data", str(data), "--out", str(run), "--no-progress",
            "--set", "train.epochs=3", "--accelerator", "cpu"]
    assert main([*args, "--stop-after", "2"]) == 0  # an interrupted run: 2 of 3 epochs
    ck = run / "checkpoint"
    info = json.loads((ck / "config.json").read_text())
    assert info["method"] == "physnet" and info["config"]["train"]["epochs"] == 3
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "logs" / "metrics.csv").is_file()
    assert "val_loss" in (run / "logs" / "metrics.csv").read_text().splitlines()[0]
    before = (ck / "model.safetensors").read_bytes()

    # a second run into the same folder is refused and changes nothing
    capsys.readouterr()
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert (ck / "model.safetensors").read_bytes() == before

    # the exported checkpoint evaluates; another method refuses it, naming both
    assert main(["eval", "physnet", "--checkpoint", str(ck), "--data", str(data), "--out", str(tmp_path / "e"),
                 "--no-progress"]) == 0
    assert main(["eval", "pos", "--checkpoint", str(ck), "--data", str(data), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'physnet'" in err and "'pos'" in err

    # our own training checkpoint (safetensors .ckpt) is accepted too
    assert main(["eval", "physnet", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--data", str(data),
                 "--out", str(tmp_path / "e2"), "--no-progress"]) == 0

    # resume with other settings is refused, listing the difference
    capsys.readouterr()
    assert main([*args, "--set", "train.lr=1e-4", "--resume"]) == 2
    assert "train.lr" in capsys.readouterr().err
    # resume continues the interrupted run to its last epoch, keeping the first run's log
    from mmtrust.engine.checkpoint import load_tree

    steps = load_tree(run / "checkpoints" / "last.ckpt")["global_step"]
    assert steps > 0 and steps % 2 == 0
    assert main([*args, "--resume"]) == 0
    assert load_tree(run / "checkpoints" / "last.ckpt")["global_step"] == steps * 3 // 2  # one more epoch
    assert (run / "logs" / "metrics.csv").is_file() and (run / "logs-resume-1" / "metrics.csv").is_file()


def test_predict_on_a_video_file(data, tmp_path):
    video = next((data / "subject1").glob("vid.*"))
    out = tmp_path / "pred"
    assert main(["predict", "pos", str(video), "--out", str(out)]) == 0
    png = out / "vid_pulse.png"
    assert png.stat().st_size > 5000 and (out / "vid_pulse.csv").is_file()


def test_predict_reports_hr(data, tmp_path, capsys):
    video = next((data / "subject2").glob("vid.*"))
    assert main(["predict", "pos", str(video), "--out", str(tmp_path)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert abs(res["hr_bpm"] - _true_hr(data, "subject2")) <= 60 * 30 / 512 + 1.0
    assert res["face_found"] is True


def test_bench_writes_report(data, tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", "--methods", "pos,green", "--data", str(data), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in res["rows"]] == ["pos", "green"]
    for r in res["rows"]:
        assert {"method", "dataset", "split", "metrics", "params", "train_s", "infer_items_per_s",
                "peak_rss_mb"} <= set(r)
        assert r["split"] == "test" and r["peak_rss_mb"] > 50
    assert {"torch", "python", "cpu_count"} <= set(res["env"])
    report = (out / "report.md").read_text()
    assert "| pos |" in report and "rppg_MAE.png" in report
    assert (out / "rppg_MAE.png").is_file() and (out / "pos_hr.png").is_file()


def test_bad_input_errors(data, tmp_path, capsys):
    assert main(["eval", "poss", "--data", str(data)]) == 2
    assert "Known methods" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["eval", "pos", "--data", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "subject1/vid.avi" in err and "ground_truth.txt" in err  # the expected UBFC tree is shown
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00 ftypisom not really a video")
    assert main(["predict", "pos", str(bad), "--out", str(tmp_path / "p")]) == 2
    assert "broken.mp4" in capsys.readouterr().err


def test_train_refuses_untrainable_method(data):
    with pytest.raises(SystemExit, match="not trainable"):
        main(["train", "pos", "--data", str(data)])


def test_console_script_runs():
    exe = Path(sys.executable).parent / "mmtrust"
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 0 and "mmtrust" in proc.stdout


def test_trainable_method_needs_weights(data, tmp_path, capsys):
    assert main(["eval", "physnet", "--data", str(data), "--no-progress"]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    assert main(["eval", "physnet", "--checkpoint", str(junk), "--data", str(data), "--no-progress"]) == 2
    assert "junk.pth" in capsys.readouterr().err
    assert main(["predict", "physnet", "--untrained", str(next((data / "subject1").glob("vid.*"))),
                 "--out", str(tmp_path / "u")]) == 0


def test_training_is_reproducible(data, tmp_path):
    digests = []
    for k in range(2):
        out = tmp_path / f"r{k}"
        assert main(["train", "physnet", "--preset", "tiny", "--data", str(data), "--out", str(out), "--no-progress",
                     "--set", "train.epochs=1", "--accelerator", "cpu"]) == 0
        digests.append((out / "checkpoint" / "model.safetensors").read_bytes())
    assert digests[0] == digests[1]


def test_predict_many_inputs_and_frame_folders(data, tmp_path, capsys):
    import cv2

    from mmtrust.data.video import read_video

    vids = [next((data / f"subject{i}").glob("vid.*")) for i in (1, 2)]
    out = tmp_path / "many"
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for i, f in enumerate(read_video(vids[0]).frames[:200]):
        cv2.imwrite(str(frames_dir / f"img{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    capsys.readouterr()
    with pytest.warns(UserWarning, match="assuming 30 fps"):
        rc = main(["predict", "pos", str(vids[0]), str(vids[1]), str(frames_dir), str(tmp_path / "missing.mp4"),
                   "--out", str(out)])
    assert rc == 2  # one input failed; the others were still processed and reported
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 4 and "error" in lines[3] and "missing.mp4" in lines[3]["error"]
    assert lines[2]["fps_source"] == "assumed" and lines[0]["fps_source"] == "file"
    assert {p.name for p in out.glob("*.png")} == {"subject1_vid_pulse.png", "subject2_vid_pulse.png",
                                                   "frames_pulse.png"}


def test_bad_config_file(data, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: [1e-3\n")
    assert main(["train", "physnet", "--preset", "tiny", "--config", str(bad), "--data", str(data),
                 "--out", str(tmp_path / "x")]) == 2
    assert "bad.yaml is not valid YAML" in capsys.readouterr().err


def test_bench_twice_into_the_same_folder(data, tmp_path):
    out = tmp_path / "bench2"
    for _ in range(2):
        assert main(["bench", "--methods", "physnet", "--data", str(data), "--out", str(out),
                     "--preset", "tiny"]) == 0
        assert "error" not in json.loads((out / "results.json").read_text())["rows"][0]
