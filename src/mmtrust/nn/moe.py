"""Mixture of experts over a convolutional feature map (dense or top-k gating, load-balancing loss).

Each expert is a small convolution (``k x k`` conv, BatchNorm, GELU) from ``C`` to ``C`` channels; the gate
reads the globally pooled map and gives one weight per expert and image. The output is
``x + sum_e g_e * expert_e(x)`` (a residual mixture, so an untrained MoE starts near the identity).

* **dense** (``top_k=0``): ``g = softmax(W_g GAP(x))``.
* **top-k**: the ``k`` largest softmax gates are kept and renormalised to sum to 1, the rest are 0 (every
  expert is still evaluated: the maps are small and this keeps the code short; outputs are identical to a
  sparse dispatch).
* **load balancing** (Switch Transformer, Fedus et al. 2021): ``aux = E * sum_e f_e * P_e`` where ``f_e``
  is the fraction of images whose largest gate is ``e`` and ``P_e`` the mean gate probability of ``e``;
  it equals 1 for a perfectly balanced gate and ``E`` when one expert takes everything. The last
  forward's value is in :attr:`MoE2d.aux_loss`.

Shape:
    x: (B, C, H, W) -> (B, C, H, W); gates: (B, E)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MoE2d", "load_balance_loss", "topk_gates"]


def topk_gates(probs: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest gates per row of ``probs`` ``(B, E)`` and renormalise them; ``k=0``: all."""
    if k <= 0 or k >= probs.shape[-1]:
        return probs
    vals, idx = probs.topk(k, dim=-1)  # (B, k)
    return torch.zeros_like(probs).scatter(-1, idx, vals / vals.sum(-1, keepdim=True))


def load_balance_loss(probs: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer balance loss of softmax gates ``(B, E)``: 1 when balanced, up to ``E``."""
    e = probs.shape[-1]
    frac = F.one_hot(probs.argmax(-1), e).float().mean(0)  # (E,) share of images routed to e
    return e * (frac * probs.mean(0)).sum()


class MoE2d(nn.Module):
    """Residual mixture of ``num_experts`` convolutional experts with an image-level gate."""

    def __init__(self, channels: int, num_experts: int = 4, top_k: int = 0, kernel_size: int = 3) -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        self.num_experts, self.top_k = num_experts, top_k
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, bias=False),
                          nn.BatchNorm2d(channels), nn.GELU())
            for _ in range(num_experts)
        )
        self.gate = nn.Linear(channels, num_experts)
        self.aux_loss: torch.Tensor = torch.zeros(())
        self.last_gates: torch.Tensor | None = None

    def __getstate__(self) -> dict:
        # the last forward's loss is part of a graph: copies (EMA teachers) start without it
        state = self.__dict__.copy()
        state["aux_loss"], state["last_gates"] = torch.zeros(()), None
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = self.gate(x.mean(dim=(2, 3))).softmax(-1)  # (B, E)
        gates = topk_gates(probs, self.top_k)  # (B, E)
        self.aux_loss = load_balance_loss(probs)
        self.last_gates = gates.detach()
        outs = torch.stack([e(x) for e in self.experts], dim=1)  # (B, E, C, H, W)
        return x + torch.einsum("be,bechw->bchw", gates, outs)  # (B, C, H, W)
