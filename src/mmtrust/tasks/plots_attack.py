"""Attack figures: clean / adversarial / amplified perturbation, with the victim's predicted labels."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.cache import atomic_path

__all__ = ["plot_examples"]


def _hwc(img: torch.Tensor):
    img = img.detach().cpu().clamp(0, 1)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()  # (H, W) or (H, W, 3)


def plot_examples(path: str | Path, clean: torch.Tensor, adv: torch.Tensor, clean_pred: torch.Tensor,
                  adv_pred: torch.Tensor, class_names: list[str], title: str = "", max_rows: int = 4) -> Path:
    """A PNG with one row per image (at most ``max_rows``): clean, adversarial, perturbation.

    The perturbation is shown as ``0.5 + delta / (2 max|delta|)`` (grey = unchanged); its l2 and linf norms
    are in the panel title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(clean), max_rows)
    fig, axes = plt.subplots(n, 3, figsize=(9, 3.1 * n), squeeze=False)
    name = lambda k: class_names[int(k)] if int(k) < len(class_names) else str(int(k))  # noqa: E731
    for i in range(n):
        delta = (adv[i] - clean[i]).detach().cpu()
        amp = delta.abs().max().clamp_min(1e-12)
        cmap = "gray" if clean.shape[1] == 1 else None
        panels = [(clean[i], f"clean: {name(clean_pred[i])}"), (adv[i], f"adversarial: {name(adv_pred[i])}"),
                  (0.5 + delta / (2 * amp), f"perturbation x{0.5 / float(amp):.0f}\n"
                                             f"l2 {float(delta.norm()):.3f}, linf {float(amp) * 255:.2f}/255")]
        for ax, (img, label) in zip(axes[i], panels, strict=True):
            ax.imshow(_hwc(img), cmap=cmap, vmin=0, vmax=1)
            ax.set_title(label, fontsize=9)
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return path
