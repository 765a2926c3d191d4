"""Trainer factory and the one ``fit`` every trainable method goes through.

Lightning does the loop, devices, DDP (``devices > 1``: one process per device, gloo on CPU, NCCL on
GPU; multi-node through torchrun/SLURM environment variables), precision, progress bars and CSV logs.
Checkpoints go through :class:`~mmtrust.engine.checkpoint.SafetensorsCheckpointIO` (no pickle).
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from ..config import ConfigError, TrainSettings
from .checkpoint import SafetensorsCheckpointIO, load_tree

__all__ = ["make_trainer", "fit", "FitResult", "weights_digest", "RunDirectoryError", "monitor_setting"]


class RunDirectoryError(FileExistsError):
    """The run folder already holds checkpoints of an earlier run."""


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer, in state-dict order (identical weights <=> identical digest)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype
    return h.hexdigest()


class _DigestCallback(Callback):
    """Each rank writes the digest of its final weights: a cheap proof that DDP kept replicas in sync."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = self.out_dir / "digests" / f"rank{trainer.global_rank}.sha256"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(weights_digest(pl_module) + "\n")


def make_trainer(
    out_dir: str | Path,
    train: TrainSettings,
    *,
    devices: int | str = 1,
    accelerator: str = "auto",
    num_nodes: int = 1,
    monitor_val: bool = True,
    progress: bool = True,
    max_epochs: int | None = None,
    resumed: bool = False,
    extra_callbacks: list[Callback] | None = None,
) -> tuple[L.Trainer, ModelCheckpoint | None, ModelCheckpoint]:
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    # "last" is its own callback: Lightning's save_last only refreshes when a top-k file is written, which
    # would leave a stale last.ckpt after an epoch whose validation loss did not improve.
    last = ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False, save_on_train_epoch_end=True)
    monitor, mode = monitor_setting(train)
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best-{epoch:03d}", monitor=monitor, mode=mode,
                           save_top_k=1) if monitor_val else None
    n_dev = devices if isinstance(devices, int) else None
    strategy: Any = "ddp" if (n_dev or 1) > 1 or num_nodes > 1 else "auto"
    callbacks: list[Callback] = [c for c in (best, last) if c is not None]
    callbacks += [_DigestCallback(out_dir), *(extra_callbacks or [])]
    if progress:
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    trainer = L.Trainer(
        default_root_dir=str(out_dir),
        max_epochs=max_epochs if max_epochs is not None else train.epochs,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=train.precision,
        deterministic=train.deterministic,
        gradient_clip_val=train.gradient_clip_val or None,
        limit_train_batches=train.limit_train_batches,
        logger=CSVLogger(str(out_dir), name="", version=_log_version(out_dir, resumed)),
        callbacks=callbacks,
        plugins=[SafetensorsCheckpointIO()],
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    return trainer, best, last


def monitor_setting(train: TrainSettings) -> tuple[str, str]:
    """``(quantity, "min" | "max")`` that chooses the kept epoch, from ``train.monitor`` / ``train.monitor_mode``."""
    name, mode = train.monitor, train.monitor_mode
    if not name.startswith("val_"):
        raise ConfigError(f"train.monitor: expected a validation quantity such as val_loss or val_auc (the epoch "
                          f"is never chosen on training or test data), got {name!r}")
    if mode == "auto":
        words = set(name.lower().split("_")[1:])
        mode = "min" if words & _LOWER_IS_BETTER or "loss" in name else "max" if words & _HIGHER_IS_BETTER else ""
        if not mode:
            raise ConfigError(f"train.monitor_mode=auto cannot tell whether {name!r} is better low or high (it "
                              f"knows losses and {sorted(_LOWER_IS_BETTER | _HIGHER_IS_BETTER)}): set "
                              f"train.monitor_mode to min or max")
    if mode not in ("min", "max"):
        raise ConfigError(f"train.monitor_mode: expected min, max or auto, got {mode!r}")
    return name, mode


#: name parts that ``train.monitor_mode=auto`` reads as a cost (kept where lowest) or a score (kept where highest)
_LOWER_IS_BETTER = {"loss", "bce", "ce", "kd", "aux", "mse", "mae", "rmse", "eer", "error", "err", "fwd", "nll"}
_HIGHER_IS_BETTER = {"auc", "auroc", "acc", "accuracy", "ap", "f1", "pearson", "r", "psnr", "ssim", "recall",
                     "precision"}


def _resume_epoch(last: Path) -> int:
    """The epoch a run resumed from ``last`` (saved at the end of a training epoch) starts with."""
    return int(load_tree(last)["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])


def _log_version(out_dir: Path, resumed: bool) -> str:
    """``logs`` for a new run; ``logs-resume-<k>`` for the k-th resume (earlier logs are never replaced)."""
    if not resumed:
        return "logs"
    k = 1
    while (out_dir / f"logs-resume-{k}").exists():
        k += 1
    return f"logs-resume-{k}"


def _check_run_config(path: Path, run_config: dict[str, Any], resume: bool) -> None:
    import json

    from ..data.cache import atomic_path

    current = json.loads(json.dumps(run_config, default=str))
    if resume and path.is_file():
        saved = json.loads(path.read_text())
        flat_s, flat_c = _flatten(saved), _flatten(current)
        # a training setting added to the library after the run started, left at its default, is no difference
        # (only inside a group that holds every TrainSettings field, such as config.train or config.adapt)
        defaults = dataclasses.asdict(TrainSettings())
        groups = {k.rsplit(".", 1)[0] for k in flat_c if "." in k}
        groups = {g for g in groups if all(f"{g}.{f}" in flat_c for f in defaults)}
        added = {k for k in set(flat_c) - set(flat_s) if "." in k and k.rsplit(".", 1)[0] in groups
                 and flat_c[k] == defaults[k.rsplit(".", 1)[1]]}
        diff = [f"{k}: {flat_s.get(k)!r} -> {flat_c.get(k)!r}" for k in sorted((set(flat_s) | set(flat_c)) - added)
                if flat_s.get(k) != flat_c.get(k)]
        if diff:
            raise ValueError("--resume continues an interrupted run with the same settings, but these differ "
                             "from the run's: " + "; ".join(diff) + " (start a new run with another --out)")
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(current, indent=2))


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}."))
    return out


@dataclass
class FitResult:
    trainer: L.Trainer
    best_path: Path | None
    last_path: Path | None
    is_global_zero: bool
    train_seconds: float
    best_state: dict[str, torch.Tensor] | None = None


def fit(
    module: L.LightningModule,
    train_loader: Any,
    val_loader: Any | None,
    out_dir: str | Path,
    train: TrainSettings,
    *,
    devices: int | str = 1,
    accelerator: str = "auto",
    num_nodes: int = 1,
    resume: bool = False,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    run_config: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``module`` and return where its best (by ``train.monitor`` on the validation split, validation loss
    unless set) and last checkpoints are.

    ``resume=True`` continues from ``out_dir/checkpoints/last.ckpt`` (epoch, optimiser, scheduler and
    loop state restored). Without it, a folder that already holds checkpoints is refused, so an earlier
    run is never overwritten. ``stop_after_epochs`` ends this run early (the schedule still spans
    ``train.epochs``), to be continued later with ``resume=True``. ``run_config`` (the method's full config)
    is stored in ``out_dir/run_config.json``; a resume with a different config is refused, listing the
    differences (an optimiser schedule cannot be stretched half-way through).
    """
    import time

    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if resume and not last.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint to resume from at {last}")
    if not resume and ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):
        raise RunDirectoryError(
            f"{ckpt_dir} already holds checkpoints of an earlier run; pass --resume to continue it "
            f"or choose another --out folder (nothing was changed)"
        )
    if run_config is not None:
        _check_run_config(out_dir / "run_config.json", run_config, resume)
    L.seed_everything(train.seed, workers=True, verbose=False)
    monitor_val = val_loader is not None and train.select_best
    trainer, best_cb, last_cb = make_trainer(out_dir, train, resumed=resume, devices=devices, accelerator=accelerator, num_nodes=num_nodes,
                                 monitor_val=monitor_val, progress=progress, max_epochs=stop_after_epochs)
    # Lightning >= 2.2 keeps each submodule's train/eval mode as it finds it: a model loaded from a checkpoint
    # (eval mode) would train with frozen BatchNorm statistics and without dropout. Training starts in train
    # mode, as it did before; a module that needs a part frozen sets it in its own ``train()`` override.
    module.train()
    # Lightning makes the first epoch's loader iterator (worker processes copy the dataset then) before any
    # epoch hook runs: a dataset re-rendered per epoch is set to the epoch this fit starts at here
    dataset = getattr(train_loader, "dataset", None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(_resume_epoch(last) if resume else 0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*isn't a subclass of.*")
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resume else None)
    seconds = time.perf_counter() - t0
    best = Path(best_cb.best_model_path) if best_cb is not None and best_cb.best_model_path else None
    last_path = last if last.is_file() else None
    chosen = best if (best and best.is_file()) else last_path
    state = None
    if trainer.is_global_zero and chosen is not None and chosen.is_file():
        state = load_tree(chosen)["state_dict"]
    return FitResult(trainer, best, last_path, trainer.is_global_zero, seconds, state)
