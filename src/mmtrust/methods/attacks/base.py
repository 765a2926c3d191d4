"""The attack core: one base class, torchattacks style, that every adversarial attack subclasses.

An attack is an ``nn.Module`` that holds its victim (``self.model``, a classifier that takes images in
[0, 1] and carries its own normalisation) and is called as ``attack(images, labels) -> adv_images``.
The base class does everything that is not the attack itself, once:

* input checks: images ``(B, C, H, W)`` float in [0, 1], labels ``(B,)`` class indices (``None``: the
  victim's clean prediction is the label), a clear error for NaN / missing gradients;
* eval mode: the victim is switched to eval for the attack and every sub-module's mode is restored after;
* device: inputs move to the victim's device, the result comes back on the caller's device;
* targets: untargeted, or targeted with the target given, drawn at random (seeded, never the label) or
  the least-likely class of the clean prediction;
* batching (``cfg.batch_size``) and seeding (``cfg.seed``: the same call gives the same result).

A subclass implements :meth:`Attack.perturb` (``x, y, target -> adv, info``) and may use the helpers
:meth:`loss_grad`, :meth:`is_adversarial`, :func:`lp_norm`, :func:`project`, :func:`step_direction`.

Shape:
    images: (B, C, H, W) float in [0, 1]
    labels: (B,) int64, optional
    target: (B,) int64, only with ``cfg.targeted`` and ``cfg.target_mode == "given"``
    returns: (B, C, H, W) float in [0, 1]; ``attack.last_info`` holds per-sample ``iterations`` (gradient
        evaluations), ``queries`` (forward passes), ``labels`` and ``target``.

Example::

    import mmtrust
    atk = mmtrust.create_method("pgd-imp", preset="tiny")           # victim: a small random CNN
    x = torch.rand(4, 3, 32, 32)
    adv = atk(x)                                                      # untargeted, labels = clean prediction
    atk.last_info["iterations"]                                       # (4,) gradient steps per sample
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AttackConfig", "Attack", "AttackGradientError", "lp_norm", "project", "step_direction"]

TARGET_MODES = ("random", "least_likely", "given")


class AttackGradientError(RuntimeError):
    """The victim gave no usable gradient (not differentiable, or NaN/inf)."""


@dataclass
class AttackConfig:
    """Settings every attack shares."""

    victim: str = "mobilenet_v2"  # a name in mmtrust.nn.victims.VICTIMS (ignored when a model is passed)
    pretrained: bool = True  # load the victim's shipped weights
    targeted: bool = False
    target_mode: str = "random"  # random | least_likely | given
    seed: int = 0  # random targets / random starts; also seeds a random victim's initialisation
    batch_size: int = 0  # attack this many images at a time (0: the whole batch at once)


def lp_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of ``delta`` (B, ...) -> (B,) for ``norm`` in {"linf", "l2"}."""
    flat = delta.flatten(1)  # (B, N)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))  # (B,) -> (B, 1, 1, 1)


def step_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit ``norm``: sign(g) for linf, g / ||g||_2 for l2."""
    if norm == "linf":
        return grad.sign()
    n = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
    return grad / _view(n, grad)


def project(delta: torch.Tensor, radius: torch.Tensor | float, norm: str) -> torch.Tensor:
    """Project ``delta`` (B, ...) onto the ``norm`` ball of per-sample ``radius`` (B,) or a float."""
    r = radius if isinstance(radius, torch.Tensor) else torch.full((delta.shape[0],), float(radius),
                                                                     device=delta.device, dtype=delta.dtype)
    r = _view(r.to(delta.dtype), delta)
    if norm == "linf":
        return torch.maximum(torch.minimum(delta, r), -r)
    n = _view(delta.flatten(1).norm(dim=1), delta)
    return delta * torch.where(n > r, r / n.clamp_min(1e-12), torch.ones_like(n))


class Attack(nn.Module):
    """Base class of every attack: ``attack(images, labels=None, target=None) -> adv_images``."""

    norm = "l2"  # the norm the attack bounds or minimises (for reports)
    supports_targeted = True

    def __init__(self, cfg: AttackConfig, model: nn.Module | None = None) -> None:
        super().__init__()
        from ...nn.victims import VICTIMS, build_victim

        if cfg.target_mode not in TARGET_MODES:
            raise ValueError(f"target_mode must be one of {TARGET_MODES}, got {cfg.target_mode!r}")
        if cfg.targeted and not self.supports_targeted:
            raise ValueError(f"{type(self).__name__} is an untargeted attack; set targeted=false")
        self.cfg = cfg
        if model is None:
            model = build_victim(cfg.victim, cfg.pretrained, seed=cfg.seed)
            self.input_shape: tuple[int, ...] | None = VICTIMS[cfg.victim].input_shape
        else:
            self.input_shape = None
        self.model = model
        self.last_info: dict[str, Any] = {}

    @classmethod
    def wrap(cls, model: nn.Module, preset: str = "paper", mean: tuple[float, ...] | None = None,
             std: tuple[float, ...] | None = None, **overrides: Any) -> Attack:
        """This attack around any classifier ``model`` (images in [0, 1], or give its ``mean``/``std``)."""
        from ...config import build_config
        from ...nn.victims import Normalized
        from ...registry import get_method

        entry = get_method(cls.method_name)
        cfg = build_config(entry.config_cls, entry.presets, preset, overrides=overrides)
        if mean is not None or std is not None:
            model = Normalized(model, mean or (0.0,), std or (1.0,))
        return cls(cfg, model=model)

    # ------------------------------------------------------------------ helpers for subclasses
    def loss_grad(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits at ``x`` and the gradient of the attack loss (ascent direction) w.r.t. ``x``.

        Untargeted: ``CE(f(x), y)``; targeted: ``-CE(f(x), target)`` (summed over the batch, so each
        sample's gradient is its own).
        """
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.model(x)  # (B, K)
            loss = -F.cross_entropy(logits, target, reduction="sum") if target is not None else \
                F.cross_entropy(logits, y, reduction="sum")
            if not loss.requires_grad:
                raise AttackGradientError("the victim's output does not depend differentiably on the images "
                                          "(no gradient): gradient attacks need a differentiable model")
            (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
        if grad is None:
            raise AttackGradientError("the victim's output does not depend on the images (no gradient)")
        bad = ~torch.isfinite(grad.flatten(1)).all(dim=1)
        if bad.any():
            raise AttackGradientError(f"the gradient w.r.t. the images is NaN/inf for {int(bad.sum())} of "
                                      f"{len(bad)} samples: the model is not differentiable there")
        return logits.detach(), grad.detach()

    def is_adversarial(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """(B,) bool: prediction differs from ``y`` (untargeted) or equals ``target`` (targeted)."""
        pred = logits.argmax(dim=1)
        return pred == target if target is not None else pred != y

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Victim logits (B, K), in batches of ``cfg.batch_size``."""
        bs = self.cfg.batch_size or len(x)
        return torch.cat([self.model(x[i : i + bs]) for i in range(0, len(x), bs)])

    # ------------------------------------------------------------------ the one method to override
    def perturb(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Adversarial images for ``x`` (B, C, H, W) and per-sample info (``iterations``, ``queries``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ call
    def _check(self, images: Any, labels: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                      torch.Tensor | None]:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a float tensor (B, C, H, W) with values in [0, 1], got {got}")
        if self.input_shape is not None and tuple(images.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"images must be (B, {', '.join(map(str, self.input_shape))}) for the victim "
                             f"{self.cfg.victim!r}, got {tuple(images.shape)}")
        if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
            raise ValueError(f"images must lie in [0, 1] (got min {float(images.min()):.4g}, max "
                             f"{float(images.max()):.4g}); pass unnormalised images: the victim normalises them")
        b = images.shape[0]
        out = []
        for name, v in (("labels", labels), ("target", target)):
            if v is None:
                out.append(None)
                continue
            v = torch.as_tensor(v)
            if v.ndim == 0:
                v = v.expand(b)
            if v.ndim != 1 or v.shape[0] != b or v.is_floating_point():
                raise ValueError(f"{name} must be {b} integer class indices (B,), got shape {tuple(v.shape)}")
            out.append(v.long())
        return images, out[0], out[1]

    def _targets(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                 gen: torch.Generator) -> torch.Tensor | None:
        if not self.cfg.targeted:
            if target is not None:
                raise ValueError("a target was given but the attack is untargeted; set targeted=true")
            return None
        k = logits.shape[1]
        if self.cfg.target_mode == "given":
            if target is None:
                raise ValueError("target_mode 'given' needs target=(B,) class indices")
            if (target < 0).any() or (target >= k).any():
                raise ValueError(f"target classes must lie in [0, {k}), got {target.tolist()}")
            return target
        if target is not None:
            raise ValueError(f"a target was given but target_mode is {self.cfg.target_mode!r}; use 'given'")
        if self.cfg.target_mode == "least_likely":
            return logits.argmin(dim=1)
        offset = torch.randint(1, k, (len(y),), generator=gen).to(y.device)  # never the label itself
        return (y + offset) % k

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                target: torch.Tensor | None = None) -> torch.Tensor:
        images, labels, target = self._check(images, labels, target)
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            param = next(self.model.parameters(), None)
            device = param.device if param is not None else images.device
            x = images.detach().to(device, torch.float32)
            clean = self.predict(x)  # (B, K)
            y = clean.argmax(dim=1) if labels is None else labels.to(device)
            if (y < 0).any() or (y >= clean.shape[1]).any():
                raise ValueError(f"labels must lie in [0, {clean.shape[1]}), got {y.tolist()}")
            gen = torch.Generator().manual_seed(self.cfg.seed)
            tgt = self._targets(clean, y, None if target is None else target.to(device), gen)
            bs = self.cfg.batch_size or len(x)
            advs, infos = [], []
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.cfg.seed)
                for i in range(0, len(x), bs):
                    sl = slice(i, i + bs)
                    adv, info = self.perturb(x[sl], y[sl], None if tgt is None else tgt[sl])
                    advs.append(adv.detach())
                    infos.append(info)
            adv = torch.cat(advs)
        finally:
            for m, mode in modes:
                m.training = mode
        if adv.shape != x.shape or not torch.isfinite(adv).all():
            raise RuntimeError(f"{type(self).__name__} returned {tuple(adv.shape)} (non-finite or wrong shape)")
        adv = adv.clamp(0, 1)
        self.last_info = {k: torch.cat([inf[k] for inf in infos]).cpu() for k in infos[0]}
        self.last_info.update(labels=y.cpu(), target=None if tgt is None else tgt.cpu())
        return adv.to(images.device, images.dtype)

    def extra_repr(self) -> str:
        fields = {f.name: getattr(self.cfg, f.name) for f in dataclasses.fields(self.cfg)}
        return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) and not math.isinf(v) else f"{k}={v}"
                         for k, v in fields.items())
