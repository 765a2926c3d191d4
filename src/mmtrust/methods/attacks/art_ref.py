"""Side-by-side reference: the same victim and images through IBM's Adversarial Robustness Toolbox (ART).

Benchmark-only (``pip install "mmtrust[bench]"``). An attack class that has an ART twin declares it with
``art_spec() -> (ART evasion class name, keyword arguments)`` built from its own config, so both libraries
run with the same budget, steps and targets. ART reports no iteration counts (``iters_mean`` is NaN).
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import torch

from ..._deps import require

__all__ = ["run_art", "art_classifier"]


def art_classifier(attack: Any, input_shape: tuple[int, ...], nb_classes: int) -> Any:
    """ART's ``PyTorchClassifier`` around the attack's victim (images in [0, 1], normalisation inside)."""
    require("art", "bench")
    from art.estimators.classification import PyTorchClassifier

    device = next(attack.model.parameters()).device
    return PyTorchClassifier(model=attack.model, loss=torch.nn.CrossEntropyLoss(), input_shape=input_shape,
                             nb_classes=nb_classes, clip_values=(0.0, 1.0),
                             device_type="gpu" if device.type == "cuda" else "cpu")


def run_art(attack: Any, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
    """Run the ART twin of ``attack`` on ``images``; metrics by the attack task's protocol."""
    require("art", "bench")
    import art.attacks.evasion as evasion

    from ...tasks.attack import measure

    name, kwargs = attack.art_spec()
    attack.model.eval()
    device = next(attack.model.parameters()).device
    with torch.no_grad():
        logits = attack.predict(images.to(device)).cpu()
    clean = logits.argmax(1)
    y = clean if labels is None else labels.long()
    gen = torch.Generator().manual_seed(attack.cfg.seed)
    tgt = attack._targets(logits, y, None, gen)  # the same targets our attack draws
    clf = art_classifier(attack, tuple(images.shape[1:]), logits.shape[1])
    cls = getattr(evasion, name)
    if "verbose" in inspect.signature(cls.__init__).parameters:
        kwargs = {**kwargs, "verbose": False}
    atk = cls(clf, **kwargs)
    x_np = images.cpu().numpy().astype("float32")
    t0 = time.perf_counter()
    adv = atk.generate(x=x_np, y=(tgt if tgt is not None else y).numpy())
    attack_s = time.perf_counter() - t0
    adv_t = torch.from_numpy(adv).float().clamp(0, 1)
    nan = torch.full((len(y),), float("nan"))
    metrics, _ = measure(attack, images.cpu(), adv_t, clean, y, tgt, nan, nan, attack_s)
    return metrics
