"""PNG figures for results people would rather see than read (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.cache import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)
    return path


def plot_pulse(path, pulse: np.ndarray, fs: float, freqs: np.ndarray, power: np.ndarray, hr_bpm: float,
               title: str = "") -> Path:
    """Pulse trace over time (top) and its power spectrum with the HR peak marked (bottom)."""
    plt = _plt()
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 5))
    t = np.arange(len(pulse)) / fs
    a.plot(t, pulse, lw=0.9, color="crimson")
    a.set(xlabel="time (s)", ylabel="pulse (a.u.)", title=title)
    bpm = np.asarray(freqs) * 60.0
    keep = (bpm >= 30) & (bpm <= 240)
    b.plot(bpm[keep], np.asarray(power)[keep], color="navy")
    b.axvline(hr_bpm, color="crimson", ls="--", label=f"HR {hr_bpm:.1f} bpm")
    b.set(xlabel="frequency (bpm)", ylabel="power")
    b.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_hr_scatter(path, hr_gt: Sequence[float], hr_pred: Sequence[float], title: str = "") -> Path:
    """Predicted vs reference HR (left) and a Bland-Altman plot (right)."""
    plt = _plt()
    gt, pr = np.asarray(hr_gt, float), np.asarray(hr_pred, float)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    lo, hi = min(gt.min(), pr.min()) - 5, max(gt.max(), pr.max()) + 5
    a.scatter(gt, pr, s=18)
    a.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    a.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="reference HR (bpm)", ylabel="predicted HR (bpm)", title=title)
    mean, diff = (gt + pr) / 2, pr - gt
    md, sd = diff.mean(), diff.std()
    b.scatter(mean, diff, s=18)
    for y, ls in ((md, "-"), (md + 1.96 * sd, "--"), (md - 1.96 * sd, "--")):
        b.axhline(y, color="gray", ls=ls, lw=0.8)
    b.set(xlabel="mean of predicted and reference (bpm)", ylabel="predicted - reference (bpm)",
          title=f"Bland-Altman: bias {md:.2f}, LoA ±{1.96 * sd:.2f}")
    fig.tight_layout()
    return _save(fig, path)


def plot_bar(path, names: Sequence[str], values: Sequence[float], ylabel: str, title: str = "") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(names) + 2), 3.6))
    ax.bar(list(names), list(values), color="steelblue")
    ax.set(ylabel=ylabel, title=title)
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
