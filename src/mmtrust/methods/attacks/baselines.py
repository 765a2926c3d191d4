"""Baseline attacks in the same core: FGSM, PGD (linf, l2), Carlini-Wagner l2, DeepFool.

Each is a re-implementation from its paper on :class:`~mmtrust.methods.attacks.base.Attack`
(torchattacks-style ``attack(images, labels) -> adv``; images in [0, 1]).

Papers:
    FGSM     Goodfellow, Shlens, Szegedy. "Explaining and Harnessing Adversarial Examples." ICLR 2015.
             arXiv:1412.6572.
    PGD      Madry, Makelov, Schmidt, Tsipras, Vladu. "Towards Deep Learning Models Resistant to
             Adversarial Attacks." ICLR 2018. arXiv:1706.06083. Code: https://github.com/MadryLab/mnist_challenge
    CW-l2    Carlini, Wagner. "Towards Evaluating the Robustness of Neural Networks." IEEE S&P 2017.
             arXiv:1608.04644. Code: https://github.com/carlini/nn_robust_attacks
    DeepFool Moosavi-Dezfooli, Fawzi, Frossard. "DeepFool: a simple and accurate method to fool deep
             neural networks." CVPR 2016. arXiv:1511.04599. Code: https://github.com/LTS4/DeepFool

Shape:
    images: (B, C, H, W) float in [0, 1]; labels, target: (B,) int64
    returns: (B, C, H, W) in [0, 1]; ``last_info``: ``iterations`` (B,) gradient evaluations,
        ``queries`` (B,) forward passes

Deviations from the papers:
    * PGD: torchattacks' defaults (linf eps 8/255, alpha 2/255, 10 steps; l2 eps 1.0, alpha 0.2, 10 steps),
      random start on; Madry et al. used 7-20 steps on CIFAR with eps 8/255 and 100 steps (eps 0.3) on MNIST.
    * CW-l2: the paper's 9 binary-search steps and 10,000 iterations (Adam, lr 0.01, c0 = 1e-3) are the
      ``paper`` preset; the ``quick`` preset cuts them to 5 x 100. Early abort when the loss has not
      decreased for ``steps // 10`` iterations (as the reference code). Confidence kappa = 0.
    * DeepFool: the l2 variant with the top-``num_candidates`` (10) classes, overshoot 0.02, at most 50
      iterations (the paper's settings); the candidate gradients are taken one candidate rank at a time
      for the whole batch. Untargeted only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...registry import Paper, register_method
from .base import Attack, AttackConfig, AttackGradientError, project, step_direction

__all__ = ["FGSMConfig", "FGSM", "PGDConfig", "PGD", "PGDL2Config", "PGDL2", "CWL2Config", "CWL2",
           "DeepFoolConfig", "DeepFool"]

_TINY = {"victim": "tiny_cnn", "pretrained": False}
_QUICK = {"victim": "mnist_cnn"}


def _info(b: int, device: torch.device, iterations: int | torch.Tensor, queries: int | torch.Tensor
          ) -> dict[str, torch.Tensor]:
    full = lambda v: v if isinstance(v, torch.Tensor) else torch.full((b,), v, dtype=torch.long, device=device)  # noqa: E731
    return {"iterations": full(iterations), "queries": full(queries)}


# ------------------------------------------------------------------------------------------------------ FGSM
@dataclass
class FGSMConfig(AttackConfig):
    eps: float = 8 / 255


@register_method("fgsm", config=FGSMConfig, family="attacks", task="attack", default_data="builtin",
                 presets={"tiny": _TINY, "quick": _QUICK},
                 paper=Paper(title="Explaining and Harnessing Adversarial Examples", venue="ICLR", year=2015,
                             arxiv="1412.6572", licence="re-implementation (Apache-2.0, mmtrust)",
                             verified=("x + eps * sign(grad_x loss), one step (paper eq. 3)",),
                             inferred=("eps = 8/255 default (the paper uses 0.25 on MNIST, 0.007 on ImageNet)",)),
                 summary="FGSM: one signed-gradient step of size eps (linf)")
class FGSM(Attack):
    """Fast Gradient Sign Method: ``x + eps * sign(grad)`` (targeted: ``-CE(target)`` ascent)."""

    norm = "linf"

    def art_spec(self) -> tuple[str, dict]:
        return "FastGradientMethod", {"norm": "inf", "eps": self.cfg.eps, "targeted": self.cfg.targeted}

    def perturb(self, x, y, target):
        _, grad = self.loss_grad(x, y, target)
        adv = (x + self.cfg.eps * grad.sign()).clamp(0, 1)
        return adv, _info(len(x), x.device, 1, 1)


# ------------------------------------------------------------------------------------------------------- PGD
@dataclass
class PGDConfig(AttackConfig):
    eps: float = 8 / 255
    alpha: float = 2 / 255
    steps: int = 10
    random_start: bool = True


_PGD_PAPER = Paper(title="Towards Deep Learning Models Resistant to Adversarial Attacks", venue="ICLR", year=2018,
                   arxiv="1706.06083", code_url="https://github.com/MadryLab/mnist_challenge",
                   licence="re-implementation (Apache-2.0, mmtrust); reference code MIT",
                   verified=("projected gradient ascent on the loss with a uniform random start in the ball",),
                   inferred=("eps/alpha/steps defaults follow torchattacks, not the paper's tables",))


class _PGDBase(Attack):
    def art_spec(self) -> tuple[str, dict]:
        c = self.cfg
        return "ProjectedGradientDescent", {"norm": "inf" if self.norm == "linf" else 2, "eps": c.eps,
                                            "eps_step": c.alpha, "max_iter": c.steps, "targeted": c.targeted,
                                            "num_random_init": int(c.random_start)}

    def perturb(self, x, y, target):
        c = self.cfg
        delta = torch.zeros_like(x)
        if c.random_start:
            rnd = (torch.rand_like(x) * 2 - 1) * c.eps if self.norm == "linf" else \
                project(torch.randn_like(x), torch.rand(len(x), device=x.device) * c.eps, "l2")
            delta = (x + rnd).clamp(0, 1) - x
        for _ in range(c.steps):
            _, grad = self.loss_grad(x + delta, y, target)
            delta = project(delta + c.alpha * step_direction(grad, self.norm), c.eps, self.norm)
            delta = (x + delta).clamp(0, 1) - x
        return x + delta, _info(len(x), x.device, c.steps, c.steps)


@register_method("pgd", config=PGDConfig, family="attacks", task="attack", default_data="builtin",
                 presets={"tiny": {**_TINY, "steps": 5}, "quick": _QUICK}, paper=_PGD_PAPER,
                 summary="PGD (linf): projected signed-gradient ascent in the eps-ball, random start")
class PGD(_PGDBase):
    """Projected Gradient Descent, linf ball, sign steps (Madry et al.)."""

    norm = "linf"


@dataclass
class PGDL2Config(PGDConfig):
    eps: float = 1.0
    alpha: float = 0.2


@register_method("pgd-l2", config=PGDL2Config, family="attacks", task="attack", default_data="builtin",
                 presets={"tiny": {**_TINY, "steps": 5}, "quick": _QUICK}, paper=_PGD_PAPER,
                 summary="PGD (l2): projected normalised-gradient ascent in the l2 ball, random start")
class PGDL2(_PGDBase):
    """Projected Gradient Descent, l2 ball, normalised-gradient steps."""

    norm = "l2"


# ----------------------------------------------------------------------------------------------------- CW-l2
@dataclass
class CWL2Config(AttackConfig):
    c_init: float = 1e-3  # initial trade-off constant c (binary-searched per sample)
    kappa: float = 0.0  # confidence margin
    steps: int = 10000  # Adam iterations per binary-search step
    binary_search_steps: int = 9
    lr: float = 0.01
    abort_early: bool = True


@register_method("cw-l2", config=CWL2Config, family="attacks", task="attack", default_data="builtin",
                 presets={"tiny": {**_TINY, "steps": 10, "binary_search_steps": 2},
                          "quick": {**_QUICK, "steps": 100, "binary_search_steps": 5, "c_init": 0.1}},
                 paper=Paper(title="Towards Evaluating the Robustness of Neural Networks", venue="IEEE S&P",
                             year=2017, arxiv="1608.04644", code_url="https://github.com/carlini/nn_robust_attacks",
                             licence="re-implementation (Apache-2.0, mmtrust); reference code BSD-2-Clause",
                             verified=("tanh change of variables, ||delta||_2^2 + c * max(max_{i!=t} Z_i - Z_t, -kappa), "
                                       "Adam, binary search on c",),
                             inferred=("abort-early rule and c schedule follow the reference code's description",)),
                 summary="Carlini-Wagner l2: Adam on the tanh-space objective with a binary search on c")
class CWL2(Attack):
    """Carlini & Wagner l2 attack: minimise ``||d||^2 + c * f(x + d)`` with a per-sample binary search on c."""

    norm = "l2"

    def art_spec(self) -> tuple[str, dict]:
        c = self.cfg
        return "CarliniL2Method", {"confidence": c.kappa, "targeted": c.targeted, "learning_rate": c.lr,
                                   "binary_search_steps": c.binary_search_steps, "max_iter": c.steps,
                                   "initial_const": c.c_init, "batch_size": 32}

    def perturb(self, x, y, target):
        c = self.cfg
        b, dev = len(x), x.device
        w0 = torch.atanh((x * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))  # (B, C, H, W)
        const = torch.full((b,), c.c_init, device=dev)
        lower = torch.zeros(b, device=dev)
        upper = torch.full((b,), 1e10, device=dev)
        best_l2 = torch.full((b,), float("inf"), device=dev)
        best = x.clone()
        iters = torch.zeros(b, dtype=torch.long, device=dev)
        cls = target if target is not None else y
        onehot = F.one_hot(cls, num_classes=self.predict(x[:1]).shape[1]).bool()
        for _ in range(c.binary_search_steps):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=c.lr)
            succeeded = torch.zeros(b, dtype=torch.bool, device=dev)
            prev = float("inf")
            for step in range(c.steps):
                with torch.enable_grad():
                    adv = (torch.tanh(w) + 1) / 2
                    logits = self.model(adv)  # (B, K)
                    real = logits[onehot]  # (B,)
                    other = logits.masked_fill(onehot, float("-inf")).amax(dim=1)
                    f = (other - real) if target is not None else (real - other)
                    f = f.clamp_min(-c.kappa)
                    l2sq = (adv - x).flatten(1).pow(2).sum(dim=1)
                    loss = (l2sq + const * f).sum()
                    if not logits.requires_grad:
                        raise AttackGradientError("the victim's output does not depend differentiably on the "
                                                  "images: CW needs a differentiable model")
                    (w.grad,) = torch.autograd.grad(loss, w)  # the victim's parameters get no gradient
                if not torch.isfinite(w.grad).all():
                    raise AttackGradientError("the CW gradient is NaN/inf: the model is not differentiable here")
                opt.step()
                iters += 1
                with torch.no_grad():
                    pred = logits.argmax(dim=1)
                    ok = (pred == target) if target is not None else (pred != y)
                    l2 = l2sq.sqrt()
                    better = ok & (l2 < best_l2)
                    best_l2 = torch.where(better, l2, best_l2)
                    best[better] = adv.detach()[better]
                    succeeded |= ok
                if c.abort_early and step % max(c.steps // 10, 1) == 0 and step > 0:
                    if loss.item() > prev * 0.9999:
                        break
                    prev = loss.item()
            # binary search on c (per sample)
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            const = torch.where(upper < 1e9, (lower + upper) / 2, const * 10)
        return best, _info(b, dev, iters, iters)


# -------------------------------------------------------------------------------------------------- DeepFool
@dataclass
class DeepFoolConfig(AttackConfig):
    steps: int = 50
    overshoot: float = 0.02
    num_candidates: int = 10


@register_method("deepfool", config=DeepFoolConfig, family="attacks", task="attack", default_data="builtin",
                 presets={"tiny": {**_TINY, "steps": 10, "num_candidates": 4}, "quick": _QUICK},
                 paper=Paper(title="DeepFool: a simple and accurate method to fool deep neural networks",
                             venue="CVPR", year=2016, arxiv="1511.04599", code_url="https://github.com/LTS4/DeepFool",
                             licence="re-implementation (Apache-2.0, mmtrust); reference code BSD-style",
                             verified=("iterative linearisation towards the closest of the top-k class boundaries, "
                                       "overshoot 0.02, top-10 candidates on ImageNet",),
                             inferred=("iteration cap 50",)),
                 summary="DeepFool (l2): iterative linearisation to the nearest class boundary (untargeted)")
class DeepFool(Attack):
    """DeepFool, l2: step to the nearest linearised boundary among the top-k classes until the label flips."""

    norm = "l2"
    supports_targeted = False

    def art_spec(self) -> tuple[str, dict]:
        c = self.cfg
        # ART's default batch of 1: with a batch, ART takes the gradients of the union of every image's top-k
        # classes for the whole batch (about 80 class gradients per step for 8 ImageNet photos)
        return "DeepFool", {"max_iter": c.steps, "epsilon": c.overshoot, "nb_grads": c.num_candidates,
                            "batch_size": 1}

    def perturb(self, x, y, target):
        c = self.cfg
        b, dev = len(x), x.device
        with torch.no_grad():
            logits0 = self.model(x)
        k = min(c.num_candidates, logits0.shape[1])
        others = logits0.scatter(1, y[:, None], float("-inf")).topk(k - 1, dim=1).indices  # (B, k-1)
        cand = torch.cat([y[:, None], others], dim=1)  # (B, k): the label first, then the top other classes
        r_tot = torch.zeros_like(x)
        active = torch.ones(b, dtype=torch.bool, device=dev)
        iters = torch.zeros(b, dtype=torch.long, device=dev)
        for _ in range(c.steps):
            idx = active.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            xa = (x[idx] + (1 + c.overshoot) * r_tot[idx]).clamp(0, 1).requires_grad_(True)
            with torch.enable_grad():
                logits = self.model(xa)  # (n, K)
                if not logits.requires_grad:
                    raise AttackGradientError("the victim's output does not depend differentiably on the images")
                still = logits.argmax(dim=1) == y[idx]
                ca = cand[idx]
                f = logits.gather(1, ca)  # (n, k)
                grads = [torch.autograd.grad(f[:, j].sum(), xa, retain_graph=j < k - 1)[0] for j in range(k)]
            g = torch.stack(grads, dim=1)  # (n, k, C, H, W)
            if not torch.isfinite(g).all():
                raise AttackGradientError("DeepFool gradient is NaN/inf: the model is not differentiable here")
            w = g[:, 1:] - g[:, :1]  # (n, k-1, C, H, W)
            fd = (f[:, 1:] - f[:, :1]).detach()  # (n, k-1)
            wn = w.flatten(2).norm(dim=2).clamp_min(1e-8)  # (n, k-1)
            ratio = fd.abs() / wn
            best = ratio.argmin(dim=1)  # (n,)
            wb = w[torch.arange(len(idx)), best]  # (n, C, H, W)
            step = (ratio[torch.arange(len(idx)), best] + 1e-4) / wn[torch.arange(len(idx)), best]
            r_i = step.view(-1, 1, 1, 1) * wb
            upd = idx[still]
            r_tot[upd] = r_tot[upd] + r_i[still]
            iters[upd] += 1
            active[idx[~still]] = False
        adv = (x + (1 + c.overshoot) * r_tot).clamp(0, 1)
        return adv, _info(b, dev, iters, iters + 1)

