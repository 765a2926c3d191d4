"""The contract every rPPG model keeps, classical or neural.

Shape:
    video: (B, 3, T, H, W) float32, RGB. What the values mean depends on ``input_type``:
        ``"raw"``            face-crop pixels in [0, 255] (classical methods),
        ``"diffnormalized"`` rPPG-Toolbox DiffNormalized frames,
        ``"standardized"``   per-video z-scored frames.
    returns: (B, T) pulse signal. ``output_type`` says how to turn it into a heart rate:
        ``"diffnormalized"`` it is a derivative-like signal (cumsum before HR estimation),
        anything else is used as it is.
"""

from __future__ import annotations

from torch import nn


class RPPGModel(nn.Module):
    """Base class of rPPG models (tensors in, tensors out; no I/O, no training loop)."""

    input_type: str = "raw"
    output_type: str = "raw"
    #: clip length the model was built for; ``None`` means any length (classical methods use the whole video)
    chunk_length: int | None = None
    #: image side the model expects (the face crop is resized to it)
    image_size: int = 72

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, video, fs: float = 30.0):  # pragma: no cover - abstract
        raise NotImplementedError

    def load_pretrained(self, path):
        """Load third-party (official) weights from a local file; methods that have them override this."""
        raise NotImplementedError(f"{type(self).__name__} has no loader for official weights; "
                                  f"use an mmtrust checkpoint folder written by `mmtrust train`")
