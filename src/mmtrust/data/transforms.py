"""rPPG video and label transforms (numpy), with rPPG-Toolbox semantics (spec A.6).

Toolbox facts followed:

* ``DiffNormalized`` video: ``d_t = (x_{t+1} - x_t) / (x_{t+1} + x_t + 1e-7)`` over the whole video
  (before chunking), divided by the global std of ``d``; a zero frame is appended so the length stays
  ``T``; NaNs are set to 0.
* ``DiffNormalized`` label: ``np.diff(ppg) / std(np.diff(ppg))`` with a 0 appended.
* ``Standardized``: a plain z-score over the whole array (NaN -> 0).
* Chunks are non-overlapping and the remainder is dropped.

Shapes: video ``(T, H, W, C)``; label ``(T,)``; :func:`chunk` ``(T, ...) -> (N, length, ...)``;
:func:`to_ncdhw` ``(T, H, W, C) -> (C, T, H, W)`` and ``(N, T, H, W, C) -> (N, C, T, H, W)``.
All outputs are float32 (except :func:`chunk`, which keeps the dtype and returns a view).
"""

from __future__ import annotations

import numpy as np

__all__ = ["diff_normalize_video", "diff_normalize_label", "standardize_video", "standardize_label",
           "chunk", "to_ncdhw"]

_EPS = 1e-7


def _scale(x: np.ndarray) -> np.ndarray:
    """Divide by the global std (accumulated in float64) and zero NaNs/infs from a zero std, in place."""
    std = np.std(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        x /= np.float32(std) if std > 0 else np.float32(np.nan)
    x[~np.isfinite(x)] = 0.0
    return x


def diff_normalize_video(frames: np.ndarray) -> np.ndarray:
    """Normalised frame differences of ``(T, H, W, C)`` frames, float32 ``(T, H, W, C)`` (last frame 0)."""
    x = np.asarray(frames, dtype=np.float32)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"need at least one frame, got shape {x.shape}")
    out = np.zeros_like(x)
    d = out[:-1]
    np.subtract(x[1:], x[:-1], out=d)
    with np.errstate(divide="ignore", invalid="ignore"):
        d /= x[1:] + x[:-1] + np.float32(_EPS)
    if d.size:
        _scale(d)
    out[np.isnan(out)] = 0.0
    return out


def diff_normalize_label(ppg: np.ndarray) -> np.ndarray:
    """``np.diff(ppg) / std``, with a 0 appended: float32 ``(T,)``."""
    x = np.asarray(ppg, dtype=np.float64)
    d = np.diff(x, axis=0)
    if d.size:
        std = np.std(d)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = d / std
        d[~np.isfinite(d)] = 0.0
    return np.concatenate([d, np.zeros((1, *x.shape[1:]))], axis=0).astype(np.float32)


def standardize_video(frames: np.ndarray) -> np.ndarray:
    """Z-score over the whole video: ``(x - mean) / std``, float32, same shape, NaN -> 0."""
    x = np.array(frames, dtype=np.float32, copy=True)
    x -= np.float32(np.mean(x, dtype=np.float64))
    return _scale(x)


def standardize_label(ppg: np.ndarray) -> np.ndarray:
    """Z-score of a label signal, float32, NaN -> 0."""
    x = np.asarray(ppg, dtype=np.float64)
    x = x - x.mean()
    std = x.std()
    with np.errstate(divide="ignore", invalid="ignore"):
        x = x / std
    x[~np.isfinite(x)] = 0.0
    return x.astype(np.float32)


def chunk(array: np.ndarray, length: int) -> np.ndarray:
    """Split ``(T, ...)`` into non-overlapping ``(N, length, ...)`` clips, ``N = T // length``.

    The last ``T % length`` items are dropped (as the toolbox does). Raises if ``T < length``.
    """
    array = np.asarray(array)
    length = int(length)
    if length < 1:
        raise ValueError(f"chunk length must be >= 1, got {length}")
    t_len = array.shape[0] if array.ndim else 0
    if t_len < length:
        raise ValueError(f"cannot cut chunks of {length} frames from a sequence of only {t_len} frames; "
                         f"use a chunk length <= {t_len} or a longer video")
    n = t_len // length
    return array[: n * length].reshape(n, length, *array.shape[1:])


def to_ncdhw(frames: np.ndarray) -> np.ndarray:
    """``(T, H, W, C) -> (C, T, H, W)``, or batched ``(N, T, H, W, C) -> (N, C, T, H, W)``; contiguous."""
    frames = np.asarray(frames)
    if frames.ndim == 4:
        return np.ascontiguousarray(frames.transpose(3, 0, 1, 2))
    if frames.ndim == 5:
        return np.ascontiguousarray(frames.transpose(0, 4, 1, 2, 3))
    raise ValueError(f"expected (T, H, W, C) or (N, T, H, W, C), got shape {frames.shape}")
