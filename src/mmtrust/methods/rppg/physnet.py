"""PhysNet: a 3-D convolutional encoder-decoder that regresses the rPPG signal from a face video.

Paper:
    Zitong Yu, Xiaobai Li, Guoying Zhao. "Remote Photoplethysmograph Signal Measurement from Facial
    Videos Using Spatio-Temporal Networks." BMVC 2019. arXiv:1905.02419.
Code:
    original   https://github.com/ZitongYu/PhysNet (``PhysNetED_BMVC.py``, MIT licence, "research only")
    toolbox    https://github.com/ubicomplab/rPPG-Toolbox (``neural_methods/model/PhysNet.py``,
               class ``PhysNet_padding_Encoder_Decoder_MAX``; the same network as the original file)

This is a re-implementation, written from the published architecture. Its sub-module names are the
official ones, so the rPPG-Toolbox checkpoints (``PURE_PhysNet_DiffNormalized.pth``,
``UBFC-rPPG_PhysNet_DiffNormalized.pth``) load with ``strict=True`` through :func:`load_official`.
The weights are not shipped (they are under the RAIL licence).

Network (``w = cfg.width``, 64 in the paper; every block is Conv3d -> BatchNorm3d -> ReLU)::

    ConvBlock1   Conv3d(C, w/4, 1x5x5)             MaxpoolSpa    (1,2,2)
    ConvBlock2   Conv3d(w/4, w/2, 3x3x3)
    ConvBlock3   Conv3d(w/2, w, 3x3x3)              MaxpoolSpaTem (2,2,2)
    ConvBlock4-5 Conv3d(w, w, 3x3x3)                MaxpoolSpaTem (2,2,2)
    ConvBlock6-7 Conv3d(w, w, 3x3x3)                MaxpoolSpa    (1,2,2)
    ConvBlock8-9 Conv3d(w, w, 3x3x3)
    upsample, upsample2  ConvTranspose3d(w, w, 4x1x1, stride (2,1,1), pad (1,0,0)) -> BN -> ELU
    poolspa      spatial average to 1x1 (time kept)
    ConvBlock10  Conv3d(w, 1, 1x1x1)

Shape:
    video: (B, C, T, H, W) float, C = cfg.in_channels (3, RGB), rPPG-Toolbox DiffNormalized frames.
        T must be a positive multiple of 4 (two temporal halvings, then two doublings);
        H and W must be at least 16 (four spatial halvings). The released weights were trained at
        T = 128, H = W = 72.
    returns: (B, T) rPPG, derivative-like (``output_type = "diffnormalized"``: cumsum it before
        estimating a heart rate).

Training (rPPG-Toolbox @ d807b01, ``configs/train_configs/PURE_PURE_UBFC-rPPG_PHYSNET_BASIC.yaml`` and
``UBFC-rPPG_UBFC-rPPG_PURE_PHYSNET_BASIC.yaml``: ``TRAIN.BATCH_SIZE: 4``, ``EPOCHS: 30``,
``LR: 9e-3``, ``CHUNK_LENGTH: 128``, ``RESIZE 72x72``, ``DATA_TYPE/LABEL_TYPE DiffNormalized``,
``MODEL.PHYSNET.FRAME_NUM: 128``; ``neural_methods/trainer/PhysnetTrainer.py``: ``optim.Adam(lr=LR)``
with PyTorch default betas/eps and no weight decay, ``OneCycleLR(max_lr=LR, epochs, steps_per_epoch)``
stepped every batch, loss = negative Pearson correlation of the per-batch z-scored prediction and
label). These are the defaults of :class:`PhysNetConfig`.

Deviations from the paper / official code:
    * We follow the released code (``PhysNet_padding_Encoder_Decoder_MAX``, the paper's 3DCNN-ED
      PhysNet). The paper's recurrent variants (PhysNet-LSTM / ConvLSTM) are not implemented.
    * ``forward`` returns only the rPPG (B, T). The official forward returns
      ``(rPPG, x_visual, x_visual3232, x_visual1616)``; :meth:`PhysNet.forward_features` gives the
      feature maps (``x_visual`` is just the input, so it is not repeated).
    * The official final pooling is ``AdaptiveAvgPool3d((frames, 1, 1))`` with ``frames`` fixed at
      construction, so any clip length other than ``frames`` either fails or is silently resampled.
      We pool to the *input* length instead: for T == ``cfg.frames`` (and any T divisible by 4) the
      decoder already returns T frames, the temporal part of the pooling is the identity and the
      result equals the official one; other lengths are refused with a ValueError.
    * ``width`` and ``in_channels`` are configurable (the official net hard-codes 16/32/64 and 3) so
      that a tiny preset exists; the paper preset is the official network (768,577 parameters).
    * The toolbox configs set ``MODEL.DROP_RATE: 0.2``, but the PhysNet model never reads it: there
      is no dropout in the network, so none is offered here.
    * Input is validated (rank, channels, T, H, W) with a ValueError, where the official code fails
      inside a layer or returns a wrongly shaped view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtrust.config import TrainSettings
from mmtrust.methods.rppg.base import RPPGModel
from mmtrust.registry import Paper, register_method
from mmtrust.weights import OfficialWeights

__all__ = ["PhysNetConfig", "PhysNet", "load_official"]

#: spatial halvings: MaxpoolSpa, MaxpoolSpaTem, MaxpoolSpaTem, MaxpoolSpa
_MIN_SIDE = 16
#: temporal halvings (two MaxpoolSpaTem) undone by two stride-2 transposed convolutions
_T_MULTIPLE = 4

#: where the rPPG-Toolbox released weights are published (RAIL licence; never bundled or downloaded)
_RELEASE = 'https://github.com/ubicomplab/rPPG-Toolbox/tree/main/final_model_release'


@dataclass
class PhysNetConfig:
    """PhysNet settings; the defaults are the rPPG-Toolbox configuration of the released weights."""

    #: clip length the model is built and trained for (toolbox MODEL.PHYSNET.FRAME_NUM / CHUNK_LENGTH)
    frames: int = 128
    #: side of the square face crop (toolbox PREPROCESS.RESIZE)
    image_size: int = 72
    in_channels: int = 3
    #: main channel width; the stem is width/4 -> width/2 -> width (16, 32, 64 in the paper)
    width: int = 64
    train: TrainSettings = field(
        default_factory=lambda: TrainSettings(
            epochs=30, batch_size=4, lr=9e-3, weight_decay=0.0, optimizer="adam", scheduler="onecycle"
        )
    )


def _conv_bn_relu(
    cin: int, cout: int, kernel: tuple[int, int, int], padding: tuple[int, int, int]
) -> nn.Sequential:
    # indices 0/1/2 give the official key names ConvBlockN.0.* (conv) and ConvBlockN.1.* (BN)
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel, stride=1, padding=padding),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


def _temporal_up(ch: int) -> nn.Sequential:
    # doubles T exactly: (T - 1) * 2 - 2 * 1 + 4 = 2T; H, W unchanged
    return nn.Sequential(
        nn.ConvTranspose3d(ch, ch, kernel_size=(4, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)),
        nn.BatchNorm3d(ch),
        nn.ELU(),
    )


@register_method(
    "physnet",
    config=PhysNetConfig,
    family="rppg",
    task="rppg",
    paper=Paper(
        title="Remote Photoplethysmograph Signal Measurement from Facial Videos Using Spatio-Temporal Networks",
        venue="BMVC",
        year=2019,
        arxiv="1905.02419",
        code_url="https://github.com/ZitongYu/PhysNet",
        licence="code: MIT, 'research purpose only' (ZitongYu/PhysNet); rPPG-Toolbox released weights: RAIL",
        verified=(
            "architecture and state-dict names: the two released rPPG-Toolbox checkpoints load with strict=True",
            "parameter count 768,577 (paper preset) equals the official model's",
            "forward matches the official code with the released PURE and UBFC-rPPG weights on the "
            "parity_input_b72 fixture within 1e-5 + 1e-4*|ref|",
            "train settings from rPPG-Toolbox @ d807b01 PURE_PURE_UBFC-rPPG_PHYSNET_BASIC.yaml "
            "(batch 4, 30 epochs, LR 9e-3, 128-frame chunks, 72x72, DiffNormalized) and "
            "PhysnetTrainer.py (Adam, OneCycleLR, negative Pearson loss)",
        ),
        inferred=(
            "the toolbox training recipe is the one of its released weights, not necessarily the paper's "
            "own (the paper's optimiser settings were not checked)",
            "pooling to the input length (instead of a fixed `frames`) is our choice; identical for T == frames",
        ),
    ),
    presets={
        "tiny": {"frames": 32, "image_size": 32, "width": 16, "train": {"epochs": 2, "batch_size": 2}},
        # demo size: the tiny network trained long enough to learn (about 30 s on 2 CPU cores). lr 3e-3, not
        # the paper's 9e-3: on synthetic-rppg's validation split 9e-3 diverged for seed 100 (val MAE 8.0 vs
        # 0.0 bpm) and tied for seed 1 (0.25 vs 0.25); chosen on validation, never on test.
        "quick": {"frames": 32, "image_size": 32, "width": 16,
                  "train": {"epochs": 10, "batch_size": 2, "lr": 3e-3}},
    },
    trainable=True,
    default_data="synthetic-rppg",
)
class PhysNet(RPPGModel):
    """PhysNet (Yu et al., BMVC 2019): 3-D CNN encoder-decoder from DiffNormalized video to rPPG."""

    #: released rPPG-Toolbox checkpoints, loadable as ``--checkpoint official:NAME`` (see mmtrust.weights)
    official_weights = {
        "PURE": OfficialWeights("PURE_PhysNet_DiffNormalized.pth", _RELEASE, "PURE", "RAIL"),
        "UBFC-rPPG": OfficialWeights("UBFC-rPPG_PhysNet_DiffNormalized.pth", _RELEASE, "UBFC-rPPG", "RAIL",
                                     aliases=("UBFC",)),
    }
    input_type = "diffnormalized"
    output_type = "diffnormalized"

    def __init__(self, cfg: PhysNetConfig | None = None) -> None:
        cfg = cfg if cfg is not None else PhysNetConfig()
        super().__init__(cfg)
        w = cfg.width
        if w < 4 or w % 4:
            raise ValueError(f"PhysNet width must be a positive multiple of 4 (stem is width/4), got {w}")
        if cfg.frames < _T_MULTIPLE or cfg.frames % _T_MULTIPLE:
            raise ValueError(f"PhysNet frames must be a positive multiple of {_T_MULTIPLE}, got {cfg.frames}")
        if cfg.image_size < _MIN_SIDE:
            raise ValueError(f"PhysNet image_size must be at least {_MIN_SIDE}, got {cfg.image_size}")
        self.chunk_length = cfg.frames
        self.image_size = cfg.image_size

        k3, p3 = (3, 3, 3), (1, 1, 1)
        self.ConvBlock1 = _conv_bn_relu(cfg.in_channels, w // 4, (1, 5, 5), (0, 2, 2))
        self.ConvBlock2 = _conv_bn_relu(w // 4, w // 2, k3, p3)
        self.ConvBlock3 = _conv_bn_relu(w // 2, w, k3, p3)
        self.ConvBlock4 = _conv_bn_relu(w, w, k3, p3)
        self.ConvBlock5 = _conv_bn_relu(w, w, k3, p3)
        self.ConvBlock6 = _conv_bn_relu(w, w, k3, p3)
        self.ConvBlock7 = _conv_bn_relu(w, w, k3, p3)
        self.ConvBlock8 = _conv_bn_relu(w, w, k3, p3)
        self.ConvBlock9 = _conv_bn_relu(w, w, k3, p3)
        self.upsample = _temporal_up(w)
        self.upsample2 = _temporal_up(w)
        self.ConvBlock10 = nn.Conv3d(w, 1, kernel_size=1)
        self.MaxpoolSpa = nn.MaxPool3d((1, 2, 2), stride=(1, 2, 2))
        self.MaxpoolSpaTem = nn.MaxPool3d((2, 2, 2), stride=2)

    def _check(self, video: Tensor) -> None:
        exp = f"(B, {self.cfg.in_channels}, T, H, W) with T a positive multiple of {_T_MULTIPLE} and H, W >= {_MIN_SIDE}"
        if not isinstance(video, Tensor):
            raise TypeError(f"PhysNet expects a torch.Tensor {exp}, got {type(video).__name__}")
        if video.dim() != 5:
            raise ValueError(f"PhysNet expects a 5-D video {exp}, got shape {tuple(video.shape)}")
        _, c, t, h, w = video.shape
        if c != self.cfg.in_channels:
            raise ValueError(
                f"PhysNet expects {self.cfg.in_channels} channels at dim 1 {exp} (NCDHW layout), "
                f"got shape {tuple(video.shape)}"
            )
        if t < _T_MULTIPLE or t % _T_MULTIPLE:
            raise ValueError(
                f"PhysNet needs T a positive multiple of {_T_MULTIPLE} (trained for T={self.cfg.frames}), "
                f"got T={t} in shape {tuple(video.shape)}"
            )
        if h < _MIN_SIDE or w < _MIN_SIDE:
            raise ValueError(
                f"PhysNet needs H, W >= {_MIN_SIDE} (trained at {self.cfg.image_size}x{self.cfg.image_size}), "
                f"got {h}x{w} in shape {tuple(video.shape)}"
            )
        if not video.is_floating_point():
            raise ValueError(f"PhysNet expects a floating-point video, got dtype {video.dtype}")

    def _run(self, video: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self._check(video)
        b, _, t, _, _ = video.shape
        x = self.MaxpoolSpa(self.ConvBlock1(video))  # (B, w/4, T, H/2, W/2)
        x = self.ConvBlock2(x)  # (B, w/2, T, H/2, W/2)
        f64 = self.ConvBlock3(x)  # (B, w, T, H/2, W/2)
        x = self.ConvBlock4(self.MaxpoolSpaTem(f64))  # (B, w, T/2, H/4, W/4)
        f32 = self.ConvBlock5(x)  # (B, w, T/2, H/4, W/4)
        x = self.ConvBlock6(self.MaxpoolSpaTem(f32))  # (B, w, T/4, H/8, W/8)
        f16 = self.ConvBlock7(x)  # (B, w, T/4, H/8, W/8)
        x = self.ConvBlock9(self.ConvBlock8(self.MaxpoolSpa(f16)))  # (B, w, T/4, H/16, W/16)
        x = self.upsample2(self.upsample(x))  # (B, w, T, H/16, W/16)
        x = F.adaptive_avg_pool3d(x, (t, 1, 1))  # (B, w, T, 1, 1): spatial mean (time already T)
        x = self.ConvBlock10(x)  # (B, 1, T, 1, 1)
        rppg = x.reshape(b, t)  # (B, T)
        return rppg, f64, f32, f16

    def forward(self, video: Tensor, fs: float = 30.0) -> Tensor:
        """``video`` (B, C, T, H, W) DiffNormalized -> rPPG (B, T). ``fs`` is unused (kept for the contract)."""
        return self._run(video)[0]

    def load_pretrained(self, path: str | Path) -> PhysNet:
        """Load an rPPG-Toolbox PhysNet ``.pth`` strictly (see :func:`load_official`)."""
        return load_official(self, path)

    def forward_features(self, video: Tensor) -> dict[str, Tensor]:
        """The rPPG and the official intermediate maps.

        Keys: ``rppg`` (B, T); ``x_visual6464`` (B, w, T, H/2, W/2); ``x_visual3232``
        (B, w, T/2, H/4, W/4); ``x_visual1616`` (B, w, T/4, H/8, W/8). The official names say 64/32/16
        because the original code ran at 128x128.
        """
        rppg, f64, f32, f16 = self._run(video)
        return {"rppg": rppg, "x_visual6464": f64, "x_visual3232": f32, "x_visual1616": f16}


def _preview(items: list[str], n: int = 8) -> str:
    head = ", ".join(items[:n])
    return head + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def load_official(model: PhysNet, path_or_state_dict: str | Path | Mapping[str, Any]) -> PhysNet:
    """Load an rPPG-Toolbox / official PhysNet checkpoint into ``model`` (strictly) and return it.

    Accepts a path (loaded with ``torch.load(..., map_location="cpu", weights_only=True)``) or a state
    dict. A ``{"state_dict": ...}`` wrapper and a DataParallel ``module.`` prefix are removed. Any
    missing key, unexpected key or shape mismatch raises a ValueError that lists them.
    """
    if isinstance(path_or_state_dict, str | Path):
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise FileNotFoundError(f"PhysNet checkpoint not found: {path}")
        sd: Any = torch.load(path, map_location="cpu", weights_only=True)
        src = str(path)
    else:
        sd, src = path_or_state_dict, "the given state dict"
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping):
        raise ValueError(f"{src} is not a state dict (got {type(sd).__name__})")
    sd = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in sd.items()}

    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and isinstance(sd[k], Tensor) and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys [{_preview(unexpected)}]")
        if missing:
            parts.append(f"{len(missing)} missing keys [{_preview(missing)}]")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches [{_preview(shapes, 4)}]")
        cfg = model.cfg
        raise ValueError(
            f"{src} is not a PhysNet checkpoint for this config (width={cfg.width}, "
            f"in_channels={cfg.in_channels}): " + "; ".join(parts)
        )
    model.load_state_dict(sd, strict=True)
    return model
