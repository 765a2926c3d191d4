"""What every forgery dataset yields, and the frame sampling they share.

**Labels: 1 = fake (manipulated / generated), 0 = real**, in every forgery dataset of mmtrust (built-in
and benchmark loaders alike), matching :mod:`mmtrust.metrics.classification` (1 = attack).

* :class:`ForgerySample` -- one image: ``image`` uint8 ``(S, S, 3)`` RGB, ``label``, ``forgery_type``
  (``"real"`` or the manipulation: ``"sbi"``, ``"swap"``, ``"generator"``, ``"Deepfakes"``, ...),
  ``video`` (the group for video-level metrics; an image is its own video), ``identity``, optional
  ``mask`` float32 ``(S, S)`` (the blending mask, 0 for real images).
* :class:`ForgeryVideo` -- one video: ``frames`` uint8 ``(T, S, S, 3)`` face crops at the sampled
  ``frame_indices`` of the source video.
* :func:`even_frame_indices` -- ``n`` frame indices spread evenly over the **whole** video (the centre of
  ``n`` equal segments), not its first ``n`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ForgerySample", "ForgeryVideo", "even_frame_indices", "REAL", "FAKE"]

REAL, FAKE = 0, 1


@dataclass
class ForgerySample:
    id: str
    image: np.ndarray
    label: int
    forgery_type: str
    video: str = ""
    identity: str = ""
    mask: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ForgeryVideo:
    id: str
    frames: np.ndarray
    label: int
    forgery_type: str
    frame_indices: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    #: uint8 ``(T, S, S)`` manipulation masks of the sampled frames (255 = manipulated), where the dataset
    #: ships them (FF++ ``masks/videos``); None otherwise
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def even_frame_indices(n_total: int, n: int) -> np.ndarray:
    """``min(n, n_total)`` distinct indices in ``[0, n_total)``, evenly spaced over the whole video.

    Index ``k`` is the middle frame of the k-th of ``n`` equal segments, so a 300-frame video with
    ``n = 4`` gives ``[37, 112, 187, 262]``.
    """
    if n_total <= 0:
        raise ValueError(f"a video with {n_total} frames has nothing to sample")
    if n <= 0:
        raise ValueError(f"number of frames to sample must be positive, got {n}")
    if n >= n_total:
        return np.arange(n_total)
    return np.floor((np.arange(n) + 0.5) * n_total / n).astype(np.int64)
