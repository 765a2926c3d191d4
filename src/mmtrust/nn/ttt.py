"""Test-time-training (TTT) layers: TTT-Linear and TTT-MLP in plain PyTorch.

Paper: Y. Sun et al., "Learning to (Learn at Test Time): RNNs with Expressive Hidden States",
arXiv 2407.04620 (2024). Reference code: https://github.com/test-time-training/ttt-lm-pytorch (``ttt.py``).
This file is our own implementation of the published equations; it was written after reading the reference.

The hidden state of a TTT layer is the weight set ``W`` of a small inner model ``f`` (a linear map, or a
two-layer MLP), one per head. For each token ``t`` the state takes one gradient step on a self-supervised
reconstruction loss::

    l(W; x_t) = 1/2 * || LN(f(x_t^K; W)) - (x_t^V - x_t^K) ||^2
    W_t       = W_{t-1} - eta_t * grad_W l(W_{t-1}; x_t)
    z_t       = x_t^Q + LN(f(x_t^Q; W_t))

**Mini-batch TTT** (the reference's default, ``mini_batch_size = 16``): inside a mini-batch of K tokens
all gradients are taken at the mini-batch's initial state ``W_0``, and token k sees
``W_k = W_0 - sum_{i<=k} eta_{k,i} grad l_i(W_0)`` with ``eta_{k,i} = token_idx[k] * lr_i`` (``token_idx =
1/k`` plus a learned offset, ``lr_i = base_lr * sigmoid(x_i . w_lr + b_lr) / head_dim``). The *dual form*
(:meth:`TTTLayer.forward`) computes all K outputs with matrix products (``tril(X_Q X_K^T)``) and carries
``W_K`` to the next mini-batch; :func:`ttt_primal_reference` computes the same thing token by token with
autograd gradients with respect to the weights, as the test reference. With ``mini_batch_size=1`` both
reduce to plain online gradient descent, one step per token.

Shape:
    - input ``x``: ``(B, T, D)`` with ``D = num_heads * head_dim``
    - output: ``(B, T, D)``
    Any T works: the last mini-batch may be shorter. Cost is linear in T (a scan over T / K mini-batches,
    each O(K^2 d + K d^2) per head).

Deviations from the reference: no RoPE inside the mini-batch, no causal pre-convolution, no output gate
(the reference's defaults ``pre_conv=False``, ``use_gate=False`` agree on the last two); the LN + l2
backward is written out analytically (the reference fuses it the same way); a ``bidirectional`` wrapper
(:class:`BiTTT`) runs a second layer over the reversed sequence, for inputs (genes) that have no causal
direction.

Example::

    >>> layer = TTTLayer(dim=32, num_heads=2, inner="mlp", mini_batch_size=8)
    >>> layer(torch.randn(2, 20, 32)).shape
    torch.Size([2, 20, 32])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["TTTLayer", "BiTTT", "TTTBlock", "ttt_primal_reference", "ln_l2_grad"]


def _ln(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mu = z.mean(-1, keepdim=True)
    var = z.var(-1, keepdim=True, unbiased=False)
    return (z - mu) / torch.sqrt(var + eps) * weight + bias


def ln_l2_grad(z: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
               eps: float) -> torch.Tensor:
    """``d/dz 1/2 ||LN(z) - target||^2`` row-wise (analytic LayerNorm backward), same shape as ``z``."""
    d = z.shape[-1]
    mu = z.mean(-1, keepdim=True)
    std = torch.sqrt(z.var(-1, keepdim=True, unbiased=False) + eps)
    xhat = (z - mu) / std
    g = (xhat * weight + bias - target) * weight  # dL/dxhat
    return (d * g - g.sum(-1, keepdim=True) - xhat * (g * xhat).sum(-1, keepdim=True)) / (d * std)


def _gelu_grad(x: torch.Tensor) -> torch.Tensor:
    """Derivative of the exact GELU ``x * Phi(x)``."""
    cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return cdf + x * pdf


class TTTLayer(nn.Module):
    """One TTT layer (causal over the sequence): projections, per-head inner model, post-norm, output proj.

    ``inner="linear"`` (TTT-Linear: ``W1 (d, d)``) or ``"mlp"`` (TTT-MLP: ``d -> 4d -> d``, GELU).
    """

    def __init__(self, dim: int, num_heads: int = 2, inner: str = "linear", mini_batch_size: int = 16,
                 base_lr: float = 1.0, eps: float = 1e-6) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        if inner not in ("linear", "mlp"):
            raise ValueError(f"inner must be 'linear' or 'mlp', got {inner!r}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.inner, self.mini_batch_size, self.base_lr, self.eps = inner, mini_batch_size, base_lr, eps
        h, d = num_heads, self.head_dim
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.post_norm = nn.LayerNorm(dim, eps=eps)
        # learnable inner learning rate, per head: lr_i = base_lr * sigmoid(x_i . w_h + b_h) / d
        self.lr_weight = nn.Parameter(torch.randn(h, dim) * 0.02)
        self.lr_bias = nn.Parameter(torch.zeros(h))
        # token_idx[k] = 1 / (k+1) + learnable offset (clamped at 0)
        self.register_buffer("token_idx", 1.0 / torch.arange(1, mini_batch_size + 1, dtype=torch.float32),
                             persistent=False)
        self.token_offset = nn.Parameter(torch.zeros(mini_batch_size))
        # the initial inner state (learned by the outer loop)
        hidden = d if inner == "linear" else 4 * d
        self.W1 = nn.Parameter(torch.randn(h, d, hidden) * 0.02)
        self.b1 = nn.Parameter(torch.zeros(h, 1, hidden))
        if inner == "mlp":
            self.W2 = nn.Parameter(torch.randn(h, hidden, d) * 0.02)
            self.b2 = nn.Parameter(torch.zeros(h, 1, d))
        self.ln_weight = nn.Parameter(torch.ones(h, 1, d))
        self.ln_bias = nn.Parameter(torch.zeros(h, 1, d))

    # ------------------------------------------------------------------ pieces shared with the reference
    def qkv_lr(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-head ``q, k, v`` ``(B, H, T, d)`` and the per-token inner learning rate ``(B, H, T)``."""
        q, k, v = (rearrange(p(x), "b t (h d) -> b h t d", h=self.num_heads)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        lr = torch.sigmoid(torch.einsum("btc,hc->bht", x, self.lr_weight) + self.lr_bias[None, :, None])
        return q, k, v, self.base_lr * lr / self.head_dim

    def token_eta(self, n: int) -> torch.Tensor:
        """``token_idx[:n]`` with its learned offset, ``(n,)``."""
        return torch.clamp(self.token_idx[:n] + self.token_offset[:n], min=0.0)

    def initial_state(self, batch: int) -> list[torch.Tensor]:
        names = ["W1", "b1"] + (["W2", "b2"] if self.inner == "mlp" else [])
        return [getattr(self, n).unsqueeze(0).expand(batch, *getattr(self, n).shape) for n in names]

    def finish(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, H, T, d)`` inner outputs -> ``(B, T, D)`` layer output (post-norm, output projection)."""
        return self.o_proj(self.post_norm(rearrange(z, "b h t d -> b t (h d)")))

    # ------------------------------------------------------------------ dual form
    def _minibatch(self, state: list[torch.Tensor], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   lr: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One mini-batch in the dual form. q, k, v ``(B, H, K, d)``, lr ``(B, H, K)``."""
        n = q.shape[2]
        tril = torch.tril(torch.ones(n, n, dtype=q.dtype, device=q.device))
        eta = self.token_eta(n)[:, None] * lr[:, :, None, :] * tril  # (B, H, K, K): eta[k, i]
        eta_last = eta[:, :, -1, :, None]  # (B, H, K, 1): the step that ends the mini-batch
        target = v - k
        if self.inner == "linear":
            W1, b1 = state
            z1 = k @ W1 + b1  # (B, H, K, d)
            g1 = ln_l2_grad(z1, target, self.ln_weight, self.ln_bias, self.eps)
            attn = q @ k.transpose(-1, -2) * eta  # (B, H, K, K)
            z_bar = q @ W1 - attn @ g1 + b1 - eta @ g1
            new = [W1 - (eta_last * k).transpose(-1, -2) @ g1, b1 - (eta_last * g1).sum(2, keepdim=True)]
        else:
            W1, b1, W2, b2 = state
            z1 = k @ W1 + b1  # (B, H, K, 4d)
            x2 = F.gelu(z1)
            z2 = x2 @ W2 + b2  # (B, H, K, d)
            g2 = ln_l2_grad(z2, target, self.ln_weight, self.ln_bias, self.eps)
            g1 = (g2 @ W2.transpose(-1, -2)) * _gelu_grad(z1)  # (B, H, K, 4d)
            z1_bar = q @ W1 - (q @ k.transpose(-1, -2) * eta) @ g1 + b1 - eta @ g1
            x2_bar = F.gelu(z1_bar)
            z_bar = x2_bar @ W2 - (x2_bar @ x2.transpose(-1, -2) * eta) @ g2 + b2 - eta @ g2
            new = [W1 - (eta_last * k).transpose(-1, -2) @ g1, b1 - (eta_last * g1).sum(2, keepdim=True),
                   W2 - (eta_last * x2).transpose(-1, -2) @ g2, b2 - (eta_last * g2).sum(2, keepdim=True)]
        out = q + _ln(z_bar, self.ln_weight, self.ln_bias, self.eps)
        return out, new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v, lr = self.qkv_lr(x)
        state = self.initial_state(b)
        outs = []
        for s in range(0, t, self.mini_batch_size):  # the scan over mini-batches (linear in T)
            sl = slice(s, s + self.mini_batch_size)
            out, state = self._minibatch(state, q[:, :, sl], k[:, :, sl], v[:, :, sl], lr[:, :, sl])
            outs.append(out)
        return self.finish(torch.cat(outs, dim=2))  # (B, T, D)


def _inner_forward(layer: TTTLayer, x: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """The inner model for one head and one token: ``x (d,)`` -> ``(d,)`` before the LN."""
    if layer.inner == "linear":
        W1, b1 = params
        return x @ W1 + b1[0]
    W1, b1, W2, b2 = params
    return F.gelu(x @ W1 + b1[0]) @ W2 + b2[0]


def ttt_primal_reference(layer: TTTLayer, x: torch.Tensor) -> torch.Tensor:
    """Token-by-token reference of :meth:`TTTLayer.forward` (slow; tests only).

    For each token, the weights it sees are built explicitly as ``W_0 - sum_i eta_{k,i} grad_W l_i(W_0)``
    with gradients from autograd with respect to the weights (not the analytic LN backward of the dual
    form), and the state is carried from mini-batch to mini-batch.
    """
    b, t, _ = x.shape
    q, k, v, lr = layer.qkv_lr(x)
    out = torch.zeros_like(q)
    for bi in range(b):
        for h in range(layer.num_heads):
            names = ["W1", "b1"] + (["W2", "b2"] if layer.inner == "mlp" else [])
            state = [getattr(layer, n)[h].detach().clone() for n in names]
            lnw, lnb = layer.ln_weight[h, 0], layer.ln_bias[h, 0]
            for s in range(0, t, layer.mini_batch_size):
                idx = list(range(s, min(s + layer.mini_batch_size, t)))
                tok = layer.token_eta(len(idx))
                grads = []
                for i in idx:  # gradient of each token's loss at the mini-batch's initial state
                    params = [p.detach().clone().requires_grad_(True) for p in state]
                    with torch.enable_grad():
                        z = _inner_forward(layer, k[bi, h, i].detach(), params)
                        loss = 0.5 * ((_ln(z, lnw.detach(), lnb.detach(), layer.eps)
                                       - (v[bi, h, i] - k[bi, h, i]).detach()) ** 2).sum()
                        grads.append(torch.autograd.grad(loss, params))
                for kk, tq in enumerate(idx):
                    w_k = [p - sum(tok[kk] * lr[bi, h, idx[i]] * grads[i][j] for i in range(kk + 1))
                           for j, p in enumerate(state)]
                    z = _inner_forward(layer, q[bi, h, tq], w_k)
                    out[bi, h, tq] = q[bi, h, tq] + _ln(z, lnw, lnb, layer.eps)
                state = w_k  # the state after the mini-batch's last token
    return layer.finish(out)


class BiTTT(nn.Module):
    """Bidirectional TTT: one layer over the sequence and one over its reverse, outputs averaged."""

    def __init__(self, dim: int, **kw) -> None:
        super().__init__()
        self.fwd = TTTLayer(dim, **kw)
        self.bwd = TTTLayer(dim, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.fwd(x) + self.bwd(x.flip(1)).flip(1))  # (B, T, D)


class TTTBlock(nn.Module):
    """Pre-norm block: ``x = x + TTT(RMSNorm(x)); x = x + SwiGLU(RMSNorm(x))``.

    ``mixer="attention"`` swaps the TTT layer for multi-head self-attention (the ablation baseline).
    """

    def __init__(self, dim: int, num_heads: int = 2, inner: str = "linear", mini_batch_size: int = 16,
                 bidirectional: bool = True, mlp_ratio: float = 4.0, mixer: str = "ttt") -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(dim, eps=1e-6)
        self.norm2 = nn.RMSNorm(dim, eps=1e-6)
        self.mixer_kind = mixer
        if mixer == "ttt":
            kw = dict(num_heads=num_heads, inner=inner, mini_batch_size=mini_batch_size)
            self.mixer = BiTTT(dim, **kw) if bidirectional else TTTLayer(dim, **kw)
        elif mixer == "attention":
            self.mixer = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        else:
            raise ValueError(f"mixer must be 'ttt' or 'attention', got {mixer!r}")
        hidden = int(dim * mlp_ratio * 2 / 3)
        self.w_gate = nn.Linear(dim, hidden, bias=False)
        self.w_up = nn.Linear(dim, hidden, bias=False)
        self.w_down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        if self.mixer_kind == "attention":
            h = self.mixer(h, h, h, need_weights=False)[0]
        else:
            h = self.mixer(h)
        x = x + h
        h = self.norm2(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))  # (B, T, D)
