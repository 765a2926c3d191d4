"""Adversarial-attack metrics: success rate, perturbation size and image fidelity.

Conventions:

* Predictions (``clean_pred``, ``adv_pred``) are class indices ``(B,)`` or logits /
  probabilities ``(B, K)`` (arg-maxed); ``labels`` are true class indices ``(B,)``.
* Untargeted attack success rate is, by default, measured **only over samples the model
  classifies correctly before the attack** (fooling an already-wrong prediction is not an
  attack success); ``only_clean_correct=False`` gives the all-sample variant, i.e. the
  adversarial error rate ``mean(adv_pred != labels)``.
* Images ``x``, ``x_adv`` are float tensors ``(B, C, H, W)`` in ``[0, data_range]``;
  PSNR / SSIM are computed per image and averaged over the batch (torchmetrics).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

__all__ = ["attack_report", "attack_success_rate", "lp_norms", "psnr", "ssim"]


def _as_tensor(x: Any) -> torch.Tensor:
    return x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _classes(pred: Any, name: str) -> torch.Tensor:
    t = _as_tensor(pred)
    if t.ndim == 2:
        t = t.argmax(dim=1)
    if t.ndim != 1:
        raise ValueError(f"{name} must be class indices (B,) or logits (B, K), got shape {tuple(t.shape)}")
    return t.long().cpu()


def attack_success_rate(
    clean_pred: Any,
    adv_pred: Any,
    labels: Any,
    targeted: bool = False,
    target: int | Any | None = None,
    only_clean_correct: bool = True,
) -> float:
    """Fraction of attacked samples on which the attack succeeded.

    Untargeted success: ``adv_pred != labels``. Targeted success: ``adv_pred == target``
    (``target``: an int or ``(B,)`` indices), counted over samples whose true label is not
    already the target. With ``only_clean_correct`` (default) the denominator is further
    restricted to samples with ``clean_pred == labels``. NaN if no sample qualifies.
    """
    c, a, y = _classes(clean_pred, "clean_pred"), _classes(adv_pred, "adv_pred"), _classes(labels, "labels")
    if not (c.shape == a.shape == y.shape):
        raise ValueError(
            f"clean_pred, adv_pred and labels must have the same length, got "
            f"{c.shape[0]}, {a.shape[0]} and {y.shape[0]}"
        )
    keep = torch.ones_like(y, dtype=torch.bool)
    if only_clean_correct:
        keep &= c == y
    if targeted:
        if target is None:
            raise ValueError("targeted=True needs target (an int or (B,) class indices)")
        tgt = _as_tensor(target).long().cpu().expand_as(y)
        keep &= y != tgt
        success = a == tgt
    else:
        if target is not None:
            raise ValueError("target was given but targeted=False; pass targeted=True")
        success = a != y
    if int(keep.sum()) == 0:
        return float("nan")
    return float(success[keep].float().mean())


def lp_norms(x: Any, x_adv: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample L2 and Linf norms of ``x_adv - x`` (any ``(B, ...)`` shape) -> ``((B,), (B,))``."""
    x, x_adv = _as_tensor(x), _as_tensor(x_adv)
    if x.shape != x_adv.shape:
        raise ValueError(
            f"x and x_adv must have the same shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}"
        )
    d = (x_adv.double() - x.double()).reshape(x.shape[0], -1)
    return d.norm(p=2, dim=1), d.abs().amax(dim=1)


def _images(x: Any, x_adv: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x, x_adv = _as_tensor(x).double(), _as_tensor(x_adv).double()
    if x.ndim != 4 or x.shape != x_adv.shape:
        raise ValueError(
            f"x and x_adv must be (B, C, H, W) of the same shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}"
        )
    return x, x_adv


def psnr(x: Any, x_adv: Any, data_range: float = 1.0) -> float:
    """Mean over the batch of per-image PSNR (dB) between ``(B, C, H, W)`` images; inf if identical."""
    x, x_adv = _images(x, x_adv)
    val = peak_signal_noise_ratio(x_adv, x, data_range=data_range, reduction="none", dim=(1, 2, 3))
    return float(val.mean())


def ssim(x: Any, x_adv: Any, data_range: float = 1.0) -> float:
    """Mean over the batch of SSIM (11x11 Gaussian window, sigma 1.5) of ``(B, C, H, W)`` images.

    torchmetrics averages the SSIM map over every pixel (borders via mirror padding), whereas
    skimage crops a 5-pixel border first: expect ~1e-4 differences on small images.
    """
    x, x_adv = _images(x, x_adv)
    val = structural_similarity_index_measure(x_adv, x, data_range=data_range, reduction="none")
    return float(val.mean())


def attack_report(
    x: Any,
    x_adv: Any,
    clean_pred: Any,
    adv_pred: Any,
    labels: Any,
    targeted: bool = False,
    target: int | Any | None = None,
    data_range: float = 1.0,
) -> dict[str, float]:
    """Clean/adversarial accuracy, ASR (clean-correct and all-sample), mean/max L2 and Linf,
    and, for ``(B, C, H, W)`` images, PSNR and SSIM (SSIM only when H, W >= 11)."""
    c, a, y = _classes(clean_pred, "clean_pred"), _classes(adv_pred, "adv_pred"), _classes(labels, "labels")
    l2, linf = lp_norms(x, x_adv)
    out = {
        "clean_acc": float((c == y).float().mean()),
        "adv_acc": float((a == y).float().mean()),
        "ASR": attack_success_rate(c, a, y, targeted, target, only_clean_correct=True),
        "ASR_all": attack_success_rate(c, a, y, targeted, target, only_clean_correct=False),
        "l2_mean": float(l2.mean()),
        "l2_max": float(l2.max()),
        "linf_mean": float(linf.mean()),
        "linf_max": float(linf.max()),
    }
    xt = _as_tensor(x)
    if xt.ndim == 4:
        out["PSNR"] = psnr(x, x_adv, data_range)
        out["SSIM"] = ssim(x, x_adv, data_range) if min(xt.shape[-2:]) >= 11 else math.nan
    return out
