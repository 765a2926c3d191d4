"""PNG figures for face forgery: ROC curves (frame / video level) and sample grids of real and fake faces."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmtrust.tasks.plots import _plt, _save

__all__ = ["plot_roc", "sample_grid", "save_image_grid"]


def plot_roc(path: str | Path, curves: Mapping[str, tuple[Any, Any]], title: str = "") -> Path:
    """ROC curves, one per entry ``name -> (scores (N,), labels (N,))`` (1 = fake), AUC in the legend."""
    from sklearn.metrics import roc_curve

    from mmtrust.metrics.classification import _check, binary_auc

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    for name, (scores, labels) in curves.items():
        s, y = _check(scores, labels)
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=1.4, label=f"{name} (AUC {binary_auc(s, y):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.7)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (real called fake)",
           ylabel="true positive rate (fake caught)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def save_image_grid(path: str | Path, rows: Sequence[Sequence[np.ndarray]], row_names: Sequence[str] = (),
                    title: str = "") -> Path:
    """A grid of uint8 RGB images (rows of equal-size tiles) with a label per row."""
    plt = _plt()
    n_r, n_c = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_r, n_c, figsize=(1.3 * n_c + 0.8, 1.3 * n_r + 0.3), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_c):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(row):
                ax.imshow(row[j], cmap="gray", vmin=0, vmax=255 if row[j].dtype == np.uint8 else 1)
            else:
                ax.axis("off")
        if i < len(row_names):
            axes[i][0].set_ylabel(row_names[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def sample_grid(path: str | Path, dataset: Any, per_kind: int = 6, with_masks: bool = True) -> Path:
    """Real and fake samples of a :class:`~mmtrust.data.synthetic_deepfake.SyntheticDeepfake` split,
    one row per kind (and a row of blending masks under each fake kind)."""
    rows, names = [], []
    kinds: dict[str, list[int]] = {}
    for i, r in enumerate(dataset.records):
        kinds.setdefault(r["kind"], []).append(i)
    for kind, idx in kinds.items():
        pick = idx[:: max(1, len(idx) // per_kind)][:per_kind]
        items = [dataset[i] for i in pick]
        imgs = [it.image if hasattr(it, "image") else it.frames[0] for it in items]
        rows.append(imgs)
        names.append(f"{kind} ({'real' if kind == 'real' else 'fake'})")
        if with_masks and kind != "real" and all(getattr(it, "mask", None) is not None for it in items):
            rows.append([np.clip(np.round(it.mask * 255), 0, 255).astype(np.uint8) for it in items])
            names.append(f"{kind} mask")
    return save_image_grid(path, rows, names, title=f"synthetic-deepfake ({dataset.split})")
