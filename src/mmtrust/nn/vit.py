"""Small vision-transformer layers: multi-head attention with multi-attention scaling (MAS), the
locally-enhanced feed-forward (LeFF), a pre-norm block, an encoder that measures attention collapse.

* :class:`Attention` -- multi-head self-attention; two optional MAS terms, both exactly vanilla attention at
  initialisation:

  - ``head_scale``: a learnable temperature per head, ``A_h = softmax(s_h q k^T / sqrt(d))``,
    ``s_h = exp(t_h)``, ``t_h = 0`` at init;
  - ``head_mix``: re-mixing of the heads' attention maps (DeepViT "re-attention", Zhou et al. 2021),
    ``A'_g = sum_h Theta_gh A_h``, ``Theta = I`` at init (no BatchNorm over heads, so the reduction is exact).

* :class:`LeFF` -- ``Linear(D, hD)``, GELU, a depth-wise ``k x k`` convolution over the token grid + BN +
  GELU (prefix tokens such as ``cls`` bypass the convolution, as in CeiT / LocalViT), ``Linear(hD, D)``.
* :class:`Encoder` -- ``depth`` pre-norm blocks ``x + attn(LN x)``, ``x + ffn(LN x)``; when
  ``measure_attention`` is on, :attr:`Encoder.attn_similarity` holds the attention-collapse measure of the
  last forward: the cosine similarity between the attention maps of consecutive blocks, per image, head
  and query token (the rows ``A_l[b, h, i, :]`` and ``A_{l+1}[b, h, i, :]``), averaged over all of them and
  over the ``depth - 1`` block pairs (DeepViT's cross-layer similarity). 1 = every block attends alike.

Shape:
    tokens: (B, P + N, D) with P prefix tokens and N = H * W grid tokens -> (B, P + N, D)
    attention maps: (B, heads, P + N, P + N)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Attention", "Mlp", "LeFF", "Block", "Encoder", "attention_similarity"]


class Attention(nn.Module):
    """Multi-head self-attention with optional MAS (per-head temperature, head re-mixing)."""

    def __init__(self, dim: int, heads: int, head_scale: bool = False, head_mix: bool = False,
                 qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.log_scale = nn.Parameter(torch.zeros(heads)) if head_scale else None
        self.mix = nn.Parameter(torch.eye(heads)) if head_mix else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, N, d)
        q, k, v = qkv[0], qkv[1], qkv[2]
        logits = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5  # (B, H, N, N)
        if self.log_scale is not None:
            logits = logits * self.log_scale.exp().view(1, -1, 1, 1)
        attn = logits.softmax(dim=-1)  # (B, H, N, N)
        if self.mix is not None:
            attn = torch.einsum("gh,bhnm->bgnm", self.mix, attn)  # (B, H, N, N)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)  # (B, N, D)
        return self.proj(out), attn


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None, prefix: int = 0) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class LeFF(nn.Module):
    """Locally-enhanced feed-forward: a depth-wise convolution over the token grid between the two linears."""

    def __init__(self, dim: int, hidden: int, kernel_size: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dw = nn.Conv2d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden, bias=False)
        self.bn = nn.BatchNorm2d(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None, prefix: int = 0) -> torch.Tensor:
        if grid is None:
            raise ValueError("LeFF needs the token grid (H, W)")
        h = F.gelu(self.fc1(x))  # (B, P + N, hD)
        pre, tok = h[:, :prefix], h[:, prefix:]
        b, n, c = tok.shape
        tok = tok.transpose(1, 2).reshape(b, c, *grid)  # (B, hD, H, W)
        tok = F.gelu(self.bn(self.dw(tok))).flatten(2).transpose(1, 2)  # (B, N, hD)
        return self.drop(self.fc2(self.drop(torch.cat([pre, tok], dim=1))))  # (B, P + N, D)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, leff: bool = False, leff_kernel: int = 3,
                 head_scale: bool = False, head_mix: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, head_scale=head_scale, head_mix=head_mix)
        hidden = int(dim * mlp_ratio)
        self.ffn = LeFF(dim, hidden, leff_kernel, dropout) if leff else Mlp(dim, hidden, dropout)

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None,
                prefix: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        a, attn = self.attn(self.norm1(x))
        x = x + a
        return x + self.ffn(self.norm2(x), grid, prefix), attn


@torch.no_grad()
def attention_similarity(maps: list[torch.Tensor]) -> torch.Tensor:
    """Mean cosine similarity of the attention rows of consecutive blocks; ``maps``: ``depth`` x (B, H, N, N)."""
    if len(maps) < 2:
        return torch.tensor(float("nan"))
    sims = [F.cosine_similarity(a.float(), b.float(), dim=-1).mean() for a, b in zip(maps[:-1], maps[1:], strict=True)]
    return torch.stack(sims).mean()


class Encoder(nn.Module):
    """``depth`` blocks and a final LayerNorm; measures the inter-block attention similarity."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0, leff: bool = False,
                 leff_kernel: int = 3, head_scale: bool = False, head_mix: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, leff, leff_kernel, head_scale, head_mix, dropout)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.measure_attention = True
        self.attn_similarity: torch.Tensor = torch.tensor(float("nan"))

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None, prefix: int = 0) -> torch.Tensor:
        maps = []
        for blk in self.blocks:
            x, attn = blk(x, grid, prefix)
            if self.measure_attention:
                maps.append(attn.detach())
        if self.measure_attention:
            self.attn_similarity = attention_similarity(maps)
        return self.norm(x)
