"""The one Lightning module every training recipe derives from.

A recipe wraps a pure ``nn.Module`` (``self.model``) and says only what is specific to the method: the
loss (:meth:`TaskModule.compute_loss`) and, if needed, extra steps. Optimiser, schedule, logging and
devices come from here and from :mod:`mmtrust.engine.trainer`.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from ..config import TrainSettings

__all__ = ["TaskModule"]


class TaskModule(L.LightningModule):
    """Base training module: ``compute_loss(batch) -> (loss, logs)`` is the one method to override."""

    def __init__(self, model: nn.Module, train: TrainSettings) -> None:
        super().__init__()
        self.model = model
        self.train_cfg = train

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def compute_loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_train_epoch_start(self) -> None:
        # a train dataset with set_epoch (data re-rendered every epoch, e.g. synthetic-deepfake?online=1) is set
        # to this epoch before the epoch's loader iterator (and its worker processes) is made; the first epoch of
        # a fit is set by engine.fit before Lightning makes that iterator
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def _batch_size(self, batch: Any) -> int:
        first = batch[0] if isinstance(batch, list | tuple) else next(iter(batch.values()))
        return int(first.shape[0])

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, logs = self.compute_loss(batch)
        bs = self._batch_size(batch)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=bs, sync_dist=True)
        for k, v in logs.items():
            self.log(f"train_{k}", v, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, logs = self.compute_loss(batch)
        bs = self._batch_size(batch)
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, batch_size=bs, sync_dist=True)
        for k, v in logs.items():
            self.log(f"val_{k}", v, on_epoch=True, batch_size=bs, sync_dist=True)
        return loss

    def configure_optimizers(self) -> Any:
        t = self.train_cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizers = {
            "adam": lambda: torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay),
            "adamw": lambda: torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay),
            "sgd": lambda: torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay),
        }
        if t.optimizer not in optimizers:
            raise ValueError(f"unknown optimizer {t.optimizer!r}; choose one of {sorted(optimizers)}")
        opt = optimizers[t.optimizer]()
        if t.scheduler == "none":
            return opt
        # the schedule spans the configured epochs even when this run stops earlier (resumed later)
        per_epoch = self.trainer.estimated_stepping_batches / max(self.trainer.max_epochs, 1)
        steps = int(round(per_epoch * t.epochs))
        schedulers = {
            "onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t.lr, total_steps=max(steps, 1)),
            "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1)),
        }
        if t.scheduler not in schedulers:
            raise ValueError(f"unknown scheduler {t.scheduler!r}; choose none or one of {sorted(schedulers)}")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedulers[t.scheduler](), "interval": "step"}}
