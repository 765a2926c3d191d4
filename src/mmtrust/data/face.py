"""Face detection and face cropping for rPPG, following rPPG-Toolbox's defaults.

Toolbox facts followed (``BaseLoader`` preprocessing, spec A.6):

* Haar cascade ``haarcascade_frontalface_default.xml`` (here: the copy shipped in ``cv2.data``);
  when several faces are found the largest is used.
* Detection on the **first frame only** by default (``DO_DYNAMIC_DETECTION: False``); with dynamic
  detection the face is re-detected every ``detection_stride`` frames (toolbox default frequency: 30).
* The box is enlarged x1.5 about its centre (``LARGE_BOX_COEF``), then each frame is resized with
  ``cv2.INTER_AREA``.
* No face found: the toolbox uses the whole frame. Here the centre square of the frame is used (so faces
  are not squashed), a warning is emitted and ``info["face_found"]`` is False.

Differences, on purpose: the enlarged box is kept square and shifted (not truncated) to lie inside the
frame; it is only shrunk when it is larger than the frame.

Shapes: frames uint8 ``(T, H, W, 3)`` RGB in, crops uint8 ``(T, size, size, 3)`` out; boxes ``(x, y, w, h)``.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["HaarFaceDetector", "enlarge_box", "centre_square", "crop_face_video"]

Box = tuple[int, int, int, int]


class HaarFaceDetector:
    """OpenCV Haar cascade face detector; :meth:`detect` returns the largest face ``(x, y, w, h)`` or None."""

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 3, min_size: tuple[int, int] = (30, 30),
                 cascade_path: str | None = None) -> None:
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = (int(min_size[0]), int(min_size[1]))
        self.cascade_path = cascade_path
        self._load()

    def _load(self) -> None:
        import cv2

        path = self.cascade_path or cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise FileNotFoundError(f"cannot load the Haar cascade {path}")

    def __getstate__(self) -> dict[str, Any]:  # cv2 classifiers do not pickle (DataLoader workers)
        return {k: v for k, v in self.__dict__.items() if k != "_cascade"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load()

    def detect_all(self, frame: np.ndarray) -> np.ndarray:
        """All faces in one uint8 RGB (or grey) frame as an int array ``(n, 4)`` of ``(x, y, w, h)``."""
        import cv2

        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
        faces = self._cascade.detectMultiScale(grey, scaleFactor=self.scale_factor,
                                               minNeighbors=self.min_neighbors, minSize=self.min_size)
        return np.asarray(faces, dtype=np.int64).reshape(-1, 4)

    def detect(self, frame: np.ndarray) -> Box | None:
        """The largest face ``(x, y, w, h)`` in a uint8 RGB frame, or None."""
        faces = self.detect_all(frame)
        if len(faces) == 0:
            return None
        x, y, w, h = faces[int(np.argmax(faces[:, 2] * faces[:, 3]))]
        return int(x), int(y), int(w), int(h)

    __call__ = detect

    def __repr__(self) -> str:
        return (f"HaarFaceDetector(scale_factor={self.scale_factor}, min_neighbors={self.min_neighbors}, "
                f"min_size={self.min_size})")


def centre_square(frame_shape: tuple[int, ...]) -> Box:
    """The largest centred square ``(x, y, s, s)`` inside a frame of shape ``(H, W, ...)``."""
    h, w = int(frame_shape[0]), int(frame_shape[1])
    s = min(h, w)
    return (w - s) // 2, (h - s) // 2, s, s


def enlarge_box(box: Box, coef: float, frame_shape: tuple[int, ...]) -> Box:
    """Scale ``box`` by ``coef`` about its centre into a square of side ``coef * max(w, h)``.

    The square is shifted to lie inside the frame (``frame_shape`` = ``(H, W, ...)``) and shrunk to
    ``min(H, W)`` if larger. Returns integer ``(x, y, s, s)``.
    """
    x, y, w, h = (float(v) for v in box)
    fh, fw = int(frame_shape[0]), int(frame_shape[1])
    side = int(round(coef * max(w, h)))
    side = max(1, min(side, fh, fw))
    cx, cy = x + w / 2.0, y + h / 2.0
    x0 = int(round(cx - side / 2.0))
    y0 = int(round(cy - side / 2.0))
    x0 = min(max(x0, 0), fw - side)
    y0 = min(max(y0, 0), fh - side)
    return x0, y0, side, side


def crop_face_video(frames: np.ndarray, size: int = 72, box_coef: float = 1.5, dynamic: bool = False,
                    detector: HaarFaceDetector | None = None, detection_stride: int | None = None,
                    video_id: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Crop the face from every frame and resize it to ``size x size`` (``cv2.INTER_AREA``).

    ``frames`` uint8 ``(T, H, W, 3)`` RGB. Detection runs on frame 0 only, or with ``dynamic=True`` on
    every ``detection_stride``-th frame (default 30); a segment where detection fails reuses the nearest
    earlier box (or the first later one). Returns ``(crops, info)`` with crops uint8 ``(T, size, size, 3)``
    and ``info = {"face_found", "boxes": [(frame, (x, y, s, s)), ...], "n_detections", "n_missed"}``.
    """
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) RGB, got {frames.dtype} {frames.shape}")
    t_len = frames.shape[0]
    if t_len == 0:
        raise ValueError("cannot crop an empty video (0 frames)")
    detector = detector or HaarFaceDetector()
    stride = max(1, int(detection_stride or 30)) if dynamic else t_len
    starts = list(range(0, t_len, stride))
    found = [detector.detect(frames[s]) for s in starts]
    n_found = sum(b is not None for b in found)
    info: dict[str, Any] = {"face_found": n_found > 0, "n_detections": len(starts),
                            "n_missed": len(starts) - n_found}
    if n_found == 0:
        name = f"video {video_id!r}" if video_id else "video"
        warnings.warn(f"no face found in {name}: cropping the centre square of the whole frame instead",
                      stacklevel=2)
        boxes = [centre_square(frames.shape[1:])] * len(starts)
    else:
        first = next(b for b in found if b is not None)
        boxes, last = [], first
        for b in found:
            last = b if b is not None else last
            boxes.append(enlarge_box(last, box_coef, frames.shape[1:]))
    info["boxes"] = list(zip(starts, boxes, strict=True))

    out = np.empty((t_len, size, size, 3), np.uint8)
    for s, (x, y, w, h) in zip(starts, boxes, strict=True):
        for t in range(s, min(s + stride, t_len)):
            roi = frames[t, y:y + h, x:x + w]
            if (w, h) == (size, size):
                out[t] = roi
            else:
                cv2.resize(roi, (size, size), dst=out[t], interpolation=cv2.INTER_AREA)
    return out, info


def crop_face_stream(frames: Iterable[np.ndarray], size: int = 72, box_coef: float = 1.5,
                     detector: HaarFaceDetector | None = None,
                     video_id: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Like :func:`crop_face_video` with detection on the first frame, but frame by frame.

    Only the small crops are kept, so a long high-resolution video never has to fit in memory.
    Returns ``(crops uint8 (T, size, size, 3), info)``.
    """
    import cv2

    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError(f"cannot crop an empty video (0 frames){f': {video_id}' if video_id else ''}")
    detector = detector or HaarFaceDetector()
    found = detector.detect(first)
    if found is None:
        warnings.warn(f"no face found in {f'video {video_id!r}' if video_id else 'video'}: cropping the centre "
                      f"square of the whole frame instead", stacklevel=2)
        box = centre_square(first.shape)
    else:
        box = enlarge_box(found, box_coef, first.shape)
    x, y, w, h = box
    crops = []
    for frame in itertools.chain([first], it):
        if frame.shape != first.shape:
            raise ValueError(f"frame size changed from {first.shape} to {frame.shape} inside the video")
        crops.append(cv2.resize(frame[y:y + h, x:x + w], (size, size), interpolation=cv2.INTER_AREA))
    info = {"face_found": found is not None, "boxes": [(0, box)], "n_detections": 1,
            "n_missed": int(found is None)}
    return np.stack(crops), info
