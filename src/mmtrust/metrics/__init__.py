"""Shared metrics: binary detection, rPPG, adversarial attacks and clustering.

See each submodule's docstring for its conventions (notably, in :mod:`.classification`,
``scores`` are the probability of the positive class = attack / fake / spoof and
``labels`` are 1 = attack / fake, 0 = bona fide / real).
"""

from mmtrust.metrics.attacks import attack_report, attack_success_rate, lp_norms, psnr, ssim
from mmtrust.metrics.classification import (
    accuracy,
    binary_auc,
    binary_report,
    eer,
    error_rates,
    threshold_at_eer,
    tpr_at_fpr,
)
from mmtrust.metrics.clustering import ari, asw, clustering_report, nmi
from mmtrust.metrics.rppg import hr_metrics, macc, snr_db

__all__ = [
    "accuracy",
    "ari",
    "asw",
    "attack_report",
    "attack_success_rate",
    "binary_auc",
    "binary_report",
    "clustering_report",
    "eer",
    "error_rates",
    "hr_metrics",
    "lp_norms",
    "macc",
    "nmi",
    "psnr",
    "snr_db",
    "ssim",
    "threshold_at_eer",
    "tpr_at_fpr",
]
