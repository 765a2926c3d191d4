"""Face masks from landmark hulls (no face-parsing network needed), and SBI-style mask deformation.

* :func:`face_outline` gives a face polygon: the convex hull of dense landmarks (68 dlib / 478 MediaPipe)
  when there are any, else an ellipse built from the five points (eye centre, eye-mouth axis and eye
  distance) that covers brows to chin and cheek to cheek. ``extent`` grows or shrinks it about its centre.
* :func:`hull_mask` rasterises the convex hull of any points into a binary ``float32 (H, W)`` mask.
* :func:`deform_mask` is the random mask deformation of self-blended images (Shiohara & Yamasaki,
  "Detecting Deepfakes with Self-Blended Images", CVPR 2022, sec. 3.3; recipe re-implemented from the
  paper): a smooth random elastic warp of the hull, a random erosion or dilation, then a Gaussian blur
  with a random kernel so the blend boundary is soft; the result is multiplied by a random blend ratio
  in ``(0, 1]``. Outside the (dilated, blurred) region the mask is exactly 0.
"""

from __future__ import annotations

import numpy as np

__all__ = ["face_outline", "hull_mask", "face_mask", "deform_mask", "mask_bbox"]


def face_outline(landmarks5: np.ndarray | None = None, landmarks: np.ndarray | None = None,
                 extent: float = 1.0, n: int = 32) -> np.ndarray:
    """Face polygon ``(K, 2)``: hull of dense ``landmarks``, else an ellipse from ``landmarks5``."""
    import cv2

    if landmarks is not None and len(landmarks) >= 20:
        pts = cv2.convexHull(np.asarray(landmarks, np.float32)).reshape(-1, 2).astype(np.float64)
    else:
        if landmarks5 is None:
            raise ValueError("face_outline needs landmarks5 (5, 2) or dense landmarks (N >= 20, 2)")
        l5 = np.asarray(landmarks5, np.float64).reshape(5, 2)
        eye_c, mouth_c = l5[:2].mean(0), l5[3:].mean(0)
        u = l5[1] - l5[0]  # eye axis, image-left to image-right
        v = mouth_c - eye_c  # eye centre to mouth centre (down the face)
        # brows ~0.55 v above the eyes, chin ~1.6 v below them; half-width ~1.0 eye distance
        centre = eye_c + 0.5 * v
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        pts = centre + np.outer(np.cos(t), 1.0 * u) + np.outer(np.sin(t), 1.1 * v)
    if extent != 1.0:
        c = pts.mean(0)
        pts = c + (pts - c) * float(extent)
    return pts


def hull_mask(shape: tuple[int, ...], points: np.ndarray) -> np.ndarray:
    """Binary ``float32 (H, W)`` mask of the convex hull of ``points`` ``(N, 2)`` in an image of ``shape``."""
    import cv2

    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), np.uint8)
    hull = cv2.convexHull(np.round(np.asarray(points, np.float64) * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(np.float32)


def face_mask(shape: tuple[int, ...], landmarks5: np.ndarray | None = None, landmarks: np.ndarray | None = None,
              extent: float = 1.0) -> np.ndarray:
    """Binary face mask ``float32 (H, W)`` from landmarks (:func:`face_outline` + :func:`hull_mask`)."""
    return hull_mask(shape, face_outline(landmarks5, landmarks, extent))


def deform_mask(mask: np.ndarray, rng: np.random.Generator, elastic: float = 0.04, blur: tuple[float, float] = (0.03, 0.10),
                morph: float = 0.06, ratio: tuple[float, float] = (0.5, 1.0), hard_blend_p: float = 0.25) -> np.ndarray:
    """A soft, randomly deformed copy of a binary ``mask`` ``(H, W)``; values in [0, 1], float32.

    ``elastic``: displacement amplitude (fraction of the mask's size); ``morph``: erosion/dilation radius
    (fraction); ``blur``: range of the Gaussian sigma (fraction); ``ratio``: range of the blend ratio
    (with probability ``hard_blend_p`` the ratio is 1).
    """
    import cv2

    m = np.asarray(mask, np.float32)
    h, w = m.shape
    ys, xs = np.nonzero(m > 0.5)
    if len(ys) == 0:
        return np.zeros_like(m)
    size = float(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1))
    # smooth random displacement field: coarse noise upsampled (an elastic warp of the hull)
    grid = 4
    amp = elastic * size
    dx = cv2.resize(rng.uniform(-amp, amp, (grid, grid)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(rng.uniform(-amp, amp, (grid, grid)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    m = cv2.remap(m, gx + dx, gy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    m = (m > 0.5).astype(np.uint8)
    r = int(round(rng.uniform(0, morph) * size))
    if r > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        m = cv2.erode(m, k) if rng.random() < 0.5 else cv2.dilate(m, k)
    if m.sum() == 0:  # eroded away: fall back to the hull itself
        m = (np.asarray(mask) > 0.5).astype(np.uint8)
    sigma = max(0.5, rng.uniform(*blur) * size)
    soft = cv2.GaussianBlur(m.astype(np.float32), (0, 0), sigma)
    soft /= max(float(soft.max()), 1e-6)
    soft[soft < 1e-3] = 0.0  # the blur tail: exactly zero far from the face
    r_blend = 1.0 if rng.random() < hard_blend_p else rng.uniform(*ratio)
    return np.clip(soft * r_blend, 0.0, 1.0).astype(np.float32)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x, y, w, h)`` of the nonzero region, or None."""
    ys, xs = np.nonzero(np.asarray(mask) > 0)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)

