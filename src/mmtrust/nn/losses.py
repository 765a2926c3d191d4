"""Losses shared by several methods."""

from __future__ import annotations

import torch

__all__ = ["neg_pearson"]


def neg_pearson(pred: torch.Tensor, target: torch.Tensor, *, batch_global_target: bool = False,
                eps: float = 1e-8) -> torch.Tensor:
    """Mean over the batch of ``1 - r`` (Pearson correlation along time), as in PhysNet.

    Shape:
        pred, target: (B, T). Returns a scalar.

    ``batch_global_target=True`` reproduces the rPPG-Toolbox/PhysMamba quirk of z-scoring the target with
    the mean and std of the whole batch instead of per sample (the prediction is always per sample).
    """
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f"neg_pearson expects pred and target of the same shape (B, T); got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    p = (pred - pred.mean(dim=1, keepdim=True)) / (pred.std(dim=1, keepdim=True) + eps)  # (B, T)
    if batch_global_target:
        t = (target - target.mean()) / (target.std() + eps)
    else:
        t = (target - target.mean(dim=1, keepdim=True)) / (target.std(dim=1, keepdim=True) + eps)
    n = pred.shape[1]
    r = (p * t).sum(dim=1) / (n - 1)  # (B,)
    return (1.0 - r).mean()
