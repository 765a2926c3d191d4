"""The engine: safetensors checkpoints (no pickle), resume, real DDP with 2 CPU processes."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmtrust.config import TrainSettings
from mmtrust.engine.checkpoint import load_tree, save_tree
from mmtrust.engine.trainer import RunDirectoryError, fit

SCRIPT = Path(__file__).parent / "scripts" / "ddp_fit.py"


def _run(*args, timeout=240):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_tree_roundtrip_keeps_types(tmp_path):
    tree = {"epoch": 3, "state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.randn(3, 2)}},
            "groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "nesterov": False, "name": None}],
            "score": float("inf"), "path": "x/y.ckpt"}
    save_tree(tree, tmp_path / "a.ckpt")
    back = load_tree(tmp_path / "a.ckpt")
    assert back["epoch"] == 3 and list(back["state"]) == [0]
    assert torch.equal(back["state"][0]["exp_avg"], tree["state"][0]["exp_avg"])
    assert back["groups"][0]["betas"] == (0.9, 0.999) and back["groups"][0]["name"] is None
    assert math.isinf(back["score"])
    # it is a plain safetensors file (8-byte header length, then a JSON header), not a pickle/zip
    from safetensors import safe_open

    raw = (tmp_path / "a.ckpt").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert raw[8:9] == b"{" and 8 + n < len(raw) and not raw.startswith(b"PK")
    with safe_open(str(tmp_path / "a.ckpt"), framework="pt") as f:
        assert "mmtrust_tree" in f.metadata()


def test_tree_refuses_unknown_objects(tmp_path):
    with pytest.raises(TypeError, match="cannot store a object"):
        save_tree({"x": object()}, tmp_path / "b.ckpt")
    assert not (tmp_path / "b.ckpt").exists()


def test_failed_save_keeps_previous_file(tmp_path):
    save_tree({"a": torch.ones(2)}, tmp_path / "c.ckpt")
    before = (tmp_path / "c.ckpt").read_bytes()
    with pytest.raises(TypeError):
        save_tree({"a": torch.zeros(2), "bad": object()}, tmp_path / "c.ckpt")
    assert (tmp_path / "c.ckpt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]  # no temp file left behind


def test_load_tree_rejects_pickle(tmp_path):
    torch.save({"a": torch.ones(1)}, tmp_path / "p.ckpt")
    with pytest.raises(ValueError, match="not an mmtrust training checkpoint"):
        load_tree(tmp_path / "p.ckpt")


def test_resume_continues_and_run_dir_is_protected(tmp_path):
    out = tmp_path / "run"
    first = _run(out, 1, "--epochs", 3, "--stop-after", 1)  # an interrupted 3-epoch run
    assert "epoch=1" in first
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file() and load_tree(last)["epoch"] == 0
    # same folder without --resume: refused, nothing touched
    before = last.read_bytes()

    with pytest.raises(RunDirectoryError, match="--resume"):
        fit(None, None, None, out, TrainSettings())
    assert last.read_bytes() == before
    second = _run(out, 1, "--resume", "--epochs", 3)
    assert "epoch=3" in second  # two more epochs, not three
    ck = load_tree(last)
    assert ck["epoch"] == 2 and ck["global_step"] == 18  # 6 batches x 3 epochs
    assert ck["optimizer_states"][0]["state"]  # Adam moments were saved and restored
    assert (out / "logs" / "metrics.csv").is_file()


def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    stdout = _run(out, 2, "--epochs", 2)
    assert "world=2" in stdout
    d0 = (out / "digests" / "rank0.sha256").read_text().strip()
    d1 = (out / "digests" / "rank1.sha256").read_text().strip()
    assert len(d0) == 64 and d0 == d1
    # and the replicas really trained: the weights moved away from the seed-0 initialisation
    torch.manual_seed(0)
    init = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    state = load_tree(out / "checkpoints" / "last.ckpt")["state_dict"]
    assert not torch.allclose(state["model.0.weight"], init[0].weight)
    # each rank saw half of the 6 batches per epoch: 3 optimiser steps per epoch
    assert load_tree(out / "checkpoints" / "last.ckpt")["global_step"] == 6


def test_ddp_val_auc_is_the_auc_of_the_whole_validation_split(tmp_path):
    """Under DDP each rank scores half of the validation split; the logged val_auc (and the epoch chosen on it)
    is the AUC of all of it, not of rank 0's half."""
    import csv

    from sklearn.metrics import roc_auc_score

    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from ddp_fit import Linear1, forgery_data
    finally:
        sys.path.pop(0)
    out = tmp_path / "ddp_auc"
    assert "world=2" in _run(out, 2, "--forgery")
    x, y = forgery_data()
    torch.manual_seed(0)
    model = Linear1()  # lr 0: the model never moves from this initialisation
    with torch.no_grad():
        scores = model(x[48:]).numpy()
    whole = roc_auc_score(y[48:].numpy(), scores)
    logged = [float(r["val_auc"]) for r in csv.DictReader(open(out / "logs" / "metrics.csv")) if r.get("val_auc")]
    assert len(logged) == 2 and all(v == pytest.approx(whole, abs=1e-6) for v in logged)
    halves = [roc_auc_score(y[48:][r::2].numpy(), scores[r::2]) for r in (0, 1)]  # the DistributedSampler split
    assert all(abs(h - whole) > 1e-3 for h in halves)  # so a per-rank AUC would have been caught


def test_last_checkpoint_is_refreshed_even_when_validation_does_not_improve(tmp_path):
    out = tmp_path / "flat"
    _run(out, 1, "--epochs", 3, "--lr", 0.0)  # weights never change: val_loss never improves after epoch 0
    assert load_tree(out / "checkpoints" / "last.ckpt")["global_step"] == 18
    best = list((out / "checkpoints").glob("best-*.ckpt"))
    assert [p.name for p in best] == ["best-epoch=000.ckpt"]


def test_weights_digest_handles_any_dtype():
    from mmtrust.engine.trainer import weights_digest

    m = torch.nn.Linear(3, 2)
    d32 = weights_digest(m)
    assert weights_digest(m.to(torch.bfloat16)) != d32 and len(weights_digest(m)) == 64


def test_fit_trains_in_train_mode_a_model_handed_over_in_eval_mode(tmp_path):
    """A model loaded from a checkpoint arrives in eval mode; Lightning >= 2.2 would keep it there (frozen
    BatchNorm statistics, no dropout). fit() must train it in train mode: BatchNorm statistics move."""
    from torch.utils.data import DataLoader, TensorDataset

    from mmtrust.engine.module import TaskModule

    seen = []

    class Recipe(TaskModule):
        def compute_loss(self, batch):
            seen.append(self.model[0].training)
            return self.model(batch[0]).pow(2).mean(), {}

    net = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 1)).eval()
    x = torch.randn(16, 3) * 4 + 7  # far from the initial running statistics (0, 1)
    loader = DataLoader(TensorDataset(x), batch_size=8)
    fit(Recipe(net, TrainSettings(epochs=1, batch_size=8, lr=0.0, optimizer="sgd", scheduler="none")),
        loader, None, tmp_path / "run", TrainSettings(epochs=1, batch_size=8, lr=0.0, optimizer="sgd",
                                                      scheduler="none"), progress=False, accelerator="cpu")
    assert seen and all(seen)
    assert float(net[0].running_mean.mean()) > 0.5  # the statistics moved towards the data's mean of 7


def test_monitor_chooses_the_kept_epoch_by_the_named_validation_quantity(tmp_path):
    """train.monitor picks the kept epoch: by default the lowest val_loss; a quantity to maximise keeps the epoch
    where it is highest. auto mode knows costs (losses, EER, MAE ...) from scores (AUC, accuracy ...) and refuses
    a name it cannot place; non-validation quantities are refused."""
    from torch.utils.data import DataLoader, TensorDataset

    from mmtrust.config import ConfigError
    from mmtrust.engine.module import TaskModule

    class Recipe(TaskModule):  # val loss and val score both rise every epoch
        def compute_loss(self, batch):
            e = float(self.current_epoch)
            return self.model(batch[0]).pow(2).mean() * 0 + e, {"score": e}

    loader = DataLoader(TensorDataset(torch.randn(8, 3)), batch_size=4)

    def kept(**kw):
        t = TrainSettings(epochs=3, batch_size=4, lr=0.0, optimizer="sgd", **kw)
        out = tmp_path / "_".join(f"{k}{v}" for k, v in kw.items()) if kw else tmp_path / "default"
        res = fit(Recipe(torch.nn.Linear(3, 1), t), loader, loader, out, t, progress=False, accelerator="cpu")
        return res.best_path.name

    assert kept() == "best-epoch=000.ckpt"
    assert kept(monitor="val_score", monitor_mode="min") == "best-epoch=000.ckpt"
    assert kept(monitor="val_score", monitor_mode="max") == "best-epoch=002.ckpt"
    from mmtrust.engine.trainer import monitor_setting

    for name, mode in (("val_loss", "min"), ("val_bce", "min"), ("val_eer", "min"), ("val_mae", "min"),
                       ("val_fwd_prior", "min"), ("val_auc", "max"), ("val_acc", "max"), ("val_pearson", "max")):
        assert monitor_setting(TrainSettings(monitor=name)) == (name, mode), name
    for bad, match in (({"monitor": "train_loss"}, "validation quantity"), ({"monitor_mode": "up"}, "min, max"),
                       ({"monitor": "val_score"}, "cannot tell")):
        t = TrainSettings(epochs=1, **bad)
        with pytest.raises(ConfigError, match=match):
            fit(Recipe(torch.nn.Linear(3, 1), t), loader, loader, tmp_path / "bad", t, progress=False,
                accelerator="cpu")


def test_resume_accepts_a_run_saved_before_a_setting_existed_only_at_its_default(tmp_path):
    """A run_config.json written before train.monitor existed resumes with the default; another value of the
    new setting, or any other difference, is refused and named."""
    import dataclasses
    import json

    from mmtrust.engine.trainer import _check_run_config

    old = dataclasses.asdict(TrainSettings())
    del old["monitor"], old["monitor_mode"]
    path = tmp_path / "run_config.json"
    path.write_text(json.dumps({"method": "m", "config": {"train": old}}))
    _check_run_config(path, {"method": "m", "config": {"train": dataclasses.asdict(TrainSettings())}}, resume=True)
    for changed, key in (({"monitor": "val_auc"}, "train.monitor"), ({"lr": 0.5}, "train.lr")):
        cur = {"method": "m", "config": {"train": dataclasses.asdict(TrainSettings(**changed))}}
        with pytest.raises(ValueError, match=key):
            _check_run_config(path, cur, resume=True)
    # a new key elsewhere whose name happens to be a training setting's, at that setting's default, is a difference
    cur = {"method": "m", "config": {"train": dataclasses.asdict(TrainSettings()), "dsd": {"lr": TrainSettings().lr}}}
    with pytest.raises(ValueError, match="config.dsd.lr"):
        _check_run_config(path, cur, resume=True)


def test_a_dataset_with_set_epoch_is_at_each_epoch_in_worker_processes_too(tmp_path):
    """A train dataset with ``set_epoch`` (re-rendered data) is set to the epoch before the loader's worker
    processes copy it: every batch of every epoch comes from that epoch's data, including the first epoch of a
    resumed run and a second fit of the same loader (born-again generations)."""
    from torch.utils.data import DataLoader, Dataset

    from mmtrust.engine.module import TaskModule

    class EpochData(Dataset):
        def __init__(self):
            self.epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return (torch.full((3,), float(self.epoch)),)

    class Recipe(TaskModule):
        seen: list

        def compute_loss(self, batch):
            self.seen.append((self.current_epoch, int(batch[0][0, 0])))
            return self.model(batch[0]).pow(2).mean(), {}

    data = EpochData()
    loader = DataLoader(data, batch_size=2, num_workers=1)
    t = TrainSettings(epochs=3, batch_size=2, lr=0.0, optimizer="sgd", select_best=False)

    def run(out, **kw):
        module = Recipe(torch.nn.Linear(3, 1), t)
        module.seen = []
        fit(module, loader, None, out, t, progress=False, accelerator="cpu", **kw)
        return sorted(set(module.seen))

    assert run(tmp_path / "a", stop_after_epochs=2) == [(0, 0), (1, 1)]
    assert run(tmp_path / "a", resume=True) == [(2, 2)]  # resumed: the workers start from epoch 2's data
    assert run(tmp_path / "b") == [(0, 0), (1, 1), (2, 2)]  # the same loader again, left at epoch 2
