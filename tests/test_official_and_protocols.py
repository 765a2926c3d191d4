"""``official:NAME`` weights, benchmark rows of given checkpoints, clip latency, and evaluation protocols."""

import json
import os
from pathlib import Path

import pytest
import torch

import mmtrust
from mmtrust.bench.runner import run_bench, split_spec
from mmtrust.cli import main
from mmtrust.config import config_to_dict
from mmtrust.engine.checkpoint import save_method
from mmtrust.protocols import list_protocols, load_protocol
from mmtrust.registry import get_method
from mmtrust.weights import resolve_official, weights_dirs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "weights" / "rppg"


@pytest.fixture(scope="module")
def data(tiny_still_rppg):
    return tiny_still_rppg


@pytest.fixture()
def weights_dir(tmp_path, monkeypatch):
    """A weights folder holding a PhysNet state dict under its released file name (random weights: these
    tests check the plumbing; the real released weights are checked in test_physnet / test_physmamba)."""
    d = tmp_path / "weights"
    (d / "rppg").mkdir(parents=True)
    torch.manual_seed(0)
    net = mmtrust.create_method("physnet")  # paper architecture, as the released files
    torch.save(net.state_dict(), d / "rppg" / "PURE_PhysNet_DiffNormalized.pth")
    monkeypatch.setenv("MMTRUST_WEIGHTS", str(d))
    return d


def test_official_names_resolve_in_the_weights_folders(weights_dir, tmp_path, monkeypatch):
    entry = get_method("physnet")
    path, name = resolve_official("physnet", entry.model_cls, "official:PURE", "rppg")
    assert path == weights_dir / "rppg" / "PURE_PhysNet_DiffNormalized.pth" and name == "PURE"
    assert weights_dirs()[0] == weights_dir
    # an alias, and a file that is not there: the error says which file and where it was looked for
    with pytest.raises(FileNotFoundError, match=r"UBFC-rPPG_PhysNet_DiffNormalized\.pth.*MMTRUST_WEIGHTS"):
        resolve_official("physnet", entry.model_cls, "official:UBFC", "rppg")
    with pytest.raises(ValueError, match="known: official:PURE, official:UBFC-rPPG"):
        resolve_official("physnet", entry.model_cls, "official:COHFACE", "rppg")
    with pytest.raises(ValueError, match="no official released weights"):
        resolve_official("pos", get_method("pos").model_cls, "official:PURE", "rppg")
    model = mmtrust.load_checkpoint("official:PURE", method="physnet")
    ref = torch.load(weights_dir / "rppg" / "PURE_PhysNet_DiffNormalized.pth", weights_only=True)
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())
    assert not model.training


def test_predict_with_official_weights(weights_dir, data, tmp_path, capsys):
    out = tmp_path / "pred"
    video = data / "subject1" / "vid.avi"
    assert main(["predict", "physnet", "--checkpoint", "official:PURE", str(video), "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 36 <= res["hr_bpm"] <= 198 and Path(res["plot"]).stat().st_size > 5000
    # a checkpoint of another architecture is refused with the mismatching keys named
    capsys.readouterr()
    rc = main(["predict", "physmamba", "--checkpoint", str(weights_dir / "rppg" / "PURE_PhysNet_DiffNormalized.pth"),
               str(video), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "unexpected keys" in err and "PhysNet checkpoint" in err


def test_bench_rows_of_given_checkpoints_with_latency(weights_dir, data, tmp_path):
    assert split_spec("physmamba@official:PURE") == ("physmamba", "official:PURE")
    assert split_spec("pos") == ("pos", None)
    torch.manual_seed(0)
    tiny = mmtrust.create_method("physmamba", preset="tiny")
    save_method(tmp_path / "pm", tiny, method="physmamba", preset="tiny", config=config_to_dict(tiny.cfg))
    specs = ["physnet@official:PURE", f"physmamba@{tmp_path / 'pm'}"]
    res = run_bench(specs, data=str(data), out_dir=tmp_path / "bench", isolate=False, progress=False)
    rows = {r["method"]: r for r in res["rows"]}
    assert set(rows) == set(specs) and not any("error" in r for r in rows.values())
    off = rows["physnet@official:PURE"]
    assert off["train_s"] == 0 and off["params"] == 768_577 and off["checkpoint"] == "official:PURE"
    assert off["clip_shape"] == "3x128x72x72" and off["clip_latency_s"] > 0
    pm = rows[specs[1]]
    assert pm["preset"] == "tiny" and pm["clip_shape"] == "3x32x32x32"
    (variant,) = pm["latency_variants"]  # the straightforward port (sequential scan), same weights
    assert variant["overrides"] == {"scan": "ref"} and variant["clip_latency_s"] > 0 and variant["ratio"] > 0
    report = (tmp_path / "bench" / "report.md").read_text()
    assert "Latency against reference implementations" in report and "physnet@official:PURE" in report
    assert (tmp_path / "bench" / "physnet@official-PURE_hr.png").is_file()


def test_shipped_protocols_and_their_errors(tmp_path, monkeypatch):
    assert {"ubfc-intra", "pure-intra", "pure-to-ubfc", "ubfc-to-pure", "synthetic-intra",
            "synthetic-cross"} <= set(list_protocols("rppg"))
    monkeypatch.delenv("PURE_ROOT", raising=False)
    monkeypatch.setenv("UBFC_ROOT", "/data/UBFC")
    with pytest.raises(ValueError, match=r"\$PURE_ROOT"):
        load_protocol("pure-to-ubfc")
    monkeypatch.setenv("PURE_ROOT", "/data/PURE")
    p = load_protocol("pure-to-ubfc")
    assert p.train_data.startswith("pure:/data/PURE?split_fractions=") and p.test_data == "ubfc-rppg:/data/UBFC"
    assert p.test_split == "all"
    with pytest.raises(ValueError, match="known: .*pure-intra"):
        load_protocol("pure-to-mars")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train_data: pos\ntest_dataa: pos\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_protocol(str(bad))


def test_train_with_a_cross_domain_protocol(data, tmp_path, capsys):
    """Train on one built-in domain (80/20 train/validation), test on all videos of another."""
    proto = tmp_path / "cross.yaml"
    proto.write_text(f"name: tiny-cross\ntrain_data: \"{data}?split_fractions={{train: [0.0, 0.8], val: [0.8, 1.0]}}\"\n"
                     "test_data: \"synthetic-rppg?preset=tiny&domain=clean&seed=3&n_subjects=3\"\ntest_split: all\n")
    run = tmp_path / "run"
    assert main(["train", "physnet", "--preset", "tiny", "--protocol", str(proto), "--out", str(run), "--no-progress",
                 "--set", "train.epochs=1", "--accelerator", "cpu"]) == 0
    info = json.loads((run / "checkpoint" / "config.json").read_text())
    assert info["test_split"] == "all" and "domain=clean" in info["test_data"]
    assert info["test_metrics"]["n_videos"] == 3  # every video of the other domain, none of the training one
    capsys.readouterr()
    assert main(["train", "physnet", "--protocol", str(proto), "--data", str(data), "--out", str(tmp_path / "x")]) == 2
    assert "drop --data" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / "PURE_PhysMamba_DiffNormalized.pth").is_file(),
                    reason="released PhysMamba weights not present (../shared/weights/rppg)")
def test_official_physmamba_by_name(monkeypatch):
    monkeypatch.setenv("MMTRUST_WEIGHTS", str(SHARED.parent) + os.pathsep + "/nonexistent")
    model = mmtrust.load_checkpoint("official:PURE", method="physmamba")
    assert sum(p.numel() for p in model.parameters()) == 728_769


def test_bench_skips_a_method_whose_extra_is_missing(data, tmp_path, monkeypatch):
    from mmtrust._deps import MissingExtraError
    from mmtrust.tasks.rppg import RPPGTask

    def needs_extra(self, entry, *a, **k):
        if entry.name == "green":
            raise MissingExtraError('this feature needs the optional package \'scanpy\': pip install "mmtrust[x]"')
        return real(self, entry, *a, **k)

    real = RPPGTask.bench
    monkeypatch.setattr(RPPGTask, "bench", needs_extra)
    res = run_bench(["green", "pos"], data=str(data), out_dir=tmp_path / "b", isolate=False, progress=False)
    green, pos = res["rows"]
    assert "mmtrust[x]" in green["unavailable"] and green["task"] == "rppg" and "metrics" in pos
    report = (tmp_path / "b" / "report.md").read_text()
    assert "## Skipped" in report and "## rppg" in report and "## Failures" not in report
