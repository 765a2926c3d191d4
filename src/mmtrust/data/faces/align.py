"""Five-point similarity alignment and square crops with a margin.

* :func:`similarity_transform` is the least-squares similarity (rotation, uniform scale, translation)
  between two point sets (Umeyama, "Least-squares estimation of transformation parameters between two
  point patterns", IEEE TPAMI 13(4), 1991, without reflection).
* :data:`ARCFACE_TEMPLATE_112` is the canonical 5-point template of the 112x112 ArcFace / InsightFace crop
  (image-left eye, image-right eye, nose tip, image-left and image-right mouth corner).
* :func:`template_points` scales it to any output size and adds a margin: ``margin`` is the extra border
  on each side as a fraction of the template crop, so ``margin=0.25`` shows 1.5x the ArcFace field of view.
* :func:`align_face` warps an image so its landmarks land on the template (``cv2.warpAffine``, bilinear,
  replicated border), and maps every landmark set it is given with the same matrix.

Shapes: images uint8 ``(H, W, 3)``; points float ``(N, 2)`` ``(x, y)``; matrices float ``(2, 3)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ARCFACE_TEMPLATE_112", "similarity_transform", "template_points", "transform_points",
           "invert_affine", "align_face", "AlignedFace", "crop_with_margin", "square_box"]

ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The ``(2, 3)`` similarity matrix ``M`` minimising ``sum |M [src; 1] - dst|^2`` (no reflection)."""
    src = np.asarray(src, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    if len(src) != len(dst) or len(src) < 2:
        raise ValueError(f"need >= 2 corresponding points, got {len(src)} and {len(dst)}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("source points are all the same point")
    cov = d0.T @ s0 / len(src)  # (2, 2)
    u, sig, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1.0
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d) / var_s)
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine (or ``(3, 3)`` homography) to ``(N, 2)`` points."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    m = np.asarray(matrix, np.float64)
    hom = np.column_stack([pts, np.ones(len(pts))])  # (N, 3)
    if m.shape == (2, 3):
        return hom @ m.T
    out = hom @ m.T  # (N, 3)
    return out[:, :2] / out[:, 2:3]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    full = np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def template_points(size: int | tuple[int, int] = 112, margin: float = 0.0) -> np.ndarray:
    """The ArcFace template for a ``size`` crop (int or ``(w, h)``) with ``margin`` extra border per side."""
    w, h = (size, size) if np.isscalar(size) else size
    unit = ARCFACE_TEMPLATE_112 / 112.0
    return (unit + margin) / (1.0 + 2.0 * margin) * np.array([w, h], np.float64)


@dataclass
class AlignedFace:
    """An aligned crop: ``image`` uint8 ``(S, S, 3)``, ``matrix`` (2, 3) from the source image to the crop,
    ``landmarks5`` (5, 2) and ``landmarks`` (N, 2) or None, in crop coordinates."""

    image: np.ndarray
    matrix: np.ndarray
    landmarks5: np.ndarray
    landmarks: np.ndarray | None = None

    @property
    def residual(self) -> float:
        """RMS distance (px) between the mapped landmarks and the template they were fitted to."""
        return getattr(self, "_residual", float("nan"))


def align_face(image: np.ndarray, landmarks5: np.ndarray, size: int = 112, margin: float = 0.0,
               landmarks: np.ndarray | None = None, border: str = "replicate") -> AlignedFace:
    """Warp ``image`` so ``landmarks5`` fit :func:`template_points` ``(size, margin)`` best (similarity)."""
    import cv2

    dst = template_points(size, margin)
    m = similarity_transform(landmarks5, dst)
    flags = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT101}
    crop = cv2.warpAffine(np.ascontiguousarray(image), m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=flags[border])
    l5 = transform_points(landmarks5, m)
    out = AlignedFace(crop, m, l5, None if landmarks is None else transform_points(landmarks, m))
    out._residual = float(np.sqrt(((l5 - dst) ** 2).sum(1).mean()))  # type: ignore[attr-defined]
    return out


def square_box(box: np.ndarray | tuple[float, ...], margin: float = 0.3) -> np.ndarray:
    """A square ``(x, y, s, s)`` about the centre of ``box`` ``(x, y, w, h)``, side ``(1 + margin) max(w, h)``.

    ``margin=0.3`` is the x1.3 face crop of the deepfake literature (FF++ / DeepfakeBench preprocessing).
    """
    x, y, w, h = (float(v) for v in box)
    side = (1.0 + margin) * max(w, h)
    return np.array([x + w / 2 - side / 2, y + h / 2 - side / 2, side, side])


def crop_with_margin(image: np.ndarray, box: np.ndarray | tuple[float, ...], margin: float = 0.3,
                     size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Crop the square :func:`square_box` ``(box, margin)`` and resize it to ``size`` (``INTER_AREA`` when
    shrinking, cubic when enlarging). Parts outside the image are filled by replicating the border, so the
    face stays centred. Returns ``(crop uint8 (S, S, 3), matrix (2, 3) from the image to the crop)``."""
    import cv2

    sx, sy, side, _ = square_box(box, margin)
    x0, y0, n = int(round(sx)), int(round(sy)), max(1, int(round(side)))
    out = int(size or n)
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + n - w, y0 + n - h)
    src = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
    roi = src[y0 + pad:y0 + pad + n, x0 + pad:x0 + pad + n]
    k = out / n
    crop = roi.copy() if out == n else cv2.resize(roi, (out, out),
                                                   interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
    # cv2.resize maps pixel centres: x_out + 0.5 = k (x_roi + 0.5)
    m = np.array([[k, 0.0, k * (0.5 - x0) - 0.5], [0.0, k, k * (0.5 - y0) - 0.5]])
    return crop, m
