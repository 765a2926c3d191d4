"""Forgery recipes on face images: self-blending (SBI), cross-identity swap, generator artifacts.

All functions take uint8 RGB ``(H, W, 3)`` images and float ``(5, 2)`` landmarks and return uint8 images.

* :func:`self_blend` -- Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022
  (arXiv 2204.08376; code github.com/mapooon/SelfBlendedImages), re-implemented from the paper: a copy of
  the face is altered (colour: RGB / hue-saturation-value / brightness-contrast shifts; frequency:
  down-up sampling; sharpness: sharpen or blur) and slightly moved and rescaled, then blended into the
  original through a deformed landmark-hull mask (:func:`mmtrust.data.faces.masks.deform_mask`). Pixels
  where the mask is 0 are **exactly** the source pixels.
* :func:`face_swap` -- a donor face (another identity) is warped onto the target by the 5-point
  similarity, its colours matched to the target inside the mask (Reinhard et al. 2001, mean/std in
  CIE L*a*b*), and blended with a soft deformed hull mask (alpha) or by Poisson editing
  (``cv2.seamlessClone``, Perez et al. 2003).
* :func:`generator_artifacts` -- the traces GAN and diffusion decoders leave in the spectrum (Durall et
  al., CVPR 2020; Frank et al., ICML 2020; Corvi et al., ICASSP 2023): ``"upsampling"`` re-synthesises the
  image through x2 transposed-convolution stages whose four phases have unequal weights (checkerboard,
  peaks at N/2, N/4), ``"decoder"`` passes it through a x8 latent bottleneck and adds a period-8 texture
  (peaks at multiples of N/8, as latent-diffusion VAEs leave).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmtrust.data.faces.align import similarity_transform
from mmtrust.data.faces.masks import deform_mask, face_mask

__all__ = ["self_blend", "face_swap", "generator_artifacts", "color_transfer", "sbi_target_transform"]


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def sbi_target_transform(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """The source-target augmentation of SBI: colour + (frequency or sharpness) change. uint8 in and out."""
    import cv2

    info: dict[str, Any] = {}
    img = image.astype(np.float32)
    kind = rng.choice(["rgb", "hsv", "bc"])
    info["colour"] = str(kind)
    if kind == "rgb":
        img = img + rng.uniform(-20, 20, 3).astype(np.float32)
    elif kind == "hsv":
        hsv = cv2.cvtColor(_u8(img), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-5, 5)) % 180
        hsv[..., 1:] += rng.uniform(-25, 25, 2).astype(np.float32)
        img = cv2.cvtColor(_u8(hsv), cv2.COLOR_HSV2RGB).astype(np.float32)
    else:
        img = (img - 128.0) * rng.uniform(0.85, 1.15) + 128.0 + rng.uniform(-20, 20)
    kind2 = rng.choice(["downup", "sharpen", "blur"])
    info["texture"] = str(kind2)
    h, w = img.shape[:2]
    if kind2 == "downup":
        f = rng.uniform(0.3, 0.6)
        small = cv2.resize(img, (max(2, round(w * f)), max(2, round(h * f))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    elif kind2 == "sharpen":
        blur = cv2.GaussianBlur(img, (0, 0), 1.0)
        img = img + rng.uniform(0.5, 1.5) * (img - blur)
    else:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.5))
    return _u8(img), info


def self_blend(image: np.ndarray, landmarks5: np.ndarray, rng: np.random.Generator,
               landmarks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A self-blended image: ``(fake uint8 (H, W, 3), mask float32 (H, W) in [0, 1], info)``.

    ``fake == image`` exactly wherever ``mask == 0``.
    """
    import cv2

    h, w = image.shape[:2]
    target, info = sbi_target_transform(image, rng)
    # small random translation + scale of the altered copy (SBI's geometric source-target change)
    c = np.asarray(landmarks5, np.float64).mean(0)
    s = rng.uniform(0.95, 1.05)
    t = rng.uniform(-0.03, 0.03, 2) * np.array([w, h])
    m = np.array([[s, 0, (1 - s) * c[0] + t[0]], [0, s, (1 - s) * c[1] + t[1]]])
    target = cv2.warpAffine(target, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    # hull of slightly perturbed landmarks (SBI perturbs the landmarks before the hull), then deformed
    jitter = rng.normal(0, 0.02, (5, 2)) * np.linalg.norm(landmarks5[1] - landmarks5[0])
    hull = face_mask(image.shape, landmarks5 + jitter, landmarks, extent=rng.uniform(0.85, 1.05))
    mask = deform_mask(hull, rng)
    src = image.astype(np.float32)
    fake = src + mask[..., None] * (target.astype(np.float32) - src)
    fake = _u8(fake)
    fake[mask == 0] = image[mask == 0]
    info.update({"scale": round(float(s), 4), "shift_px": np.round(t, 2).tolist(), "mask_max": round(float(mask.max()), 3)})
    return fake, mask, info


def color_transfer(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer: match ``source``'s L*a*b* mean/std inside ``mask`` to ``target``'s."""
    import cv2

    sel = mask > 0.5
    if sel.sum() < 10:
        return source
    s_lab = cv2.cvtColor(source, cv2.COLOR_RGB2LAB).astype(np.float32)
    t_lab = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    ms, ss = s_lab[sel].mean(0), s_lab[sel].std(0) + 1e-3
    mt, st = t_lab[sel].mean(0), t_lab[sel].std(0) + 1e-3
    out = (s_lab - ms) * (st / ss) + mt
    return cv2.cvtColor(_u8(out), cv2.COLOR_LAB2RGB)


def face_swap(target: np.ndarray, target_lm5: np.ndarray, donor: np.ndarray, donor_lm5: np.ndarray,
              rng: np.random.Generator, poisson_p: float = 0.3) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Put ``donor``'s face onto ``target``: ``(fake uint8, mask float32 (H, W) in [0, 1], info)``."""
    import cv2

    h, w = target.shape[:2]
    m = similarity_transform(donor_lm5, target_lm5)
    warped = cv2.warpAffine(donor, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    hull = face_mask(target.shape, target_lm5, extent=rng.uniform(0.85, 1.0))
    warped = color_transfer(warped, target, hull)
    info: dict[str, Any] = {"donor_scale": round(float(np.hypot(*m[:, 0])), 4)}
    if rng.random() < poisson_p:
        ys, xs = np.nonzero(hull)
        centre = (int(round((xs.min() + xs.max()) / 2)), int(round((ys.min() + ys.max()) / 2)))
        try:
            fake = cv2.seamlessClone(warped, target, (hull * 255).astype(np.uint8), centre, cv2.NORMAL_CLONE)
            mask = hull
            info["blend"] = "poisson"
            return fake, mask.astype(np.float32), info
        except cv2.error:  # pragma: no cover - the hull touches the border: fall back to alpha blending
            pass
    mask = deform_mask(hull, rng, hard_blend_p=0.6, ratio=(0.8, 1.0))
    tgt = target.astype(np.float32)
    fake = _u8(tgt + mask[..., None] * (warped.astype(np.float32) - tgt))
    fake[mask == 0] = target[mask == 0]
    info["blend"] = "alpha"
    return fake, mask, info


def _upsample_x2(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Transposed convolution, stride 2: zero insertion then a 4x4 kernel (phases sum to the phase gains)."""
    import cv2

    h, w = img.shape[:2]
    z = np.zeros((2 * h, 2 * w, img.shape[2]), np.float32)
    z[::2, ::2] = img
    return cv2.filter2D(z, -1, kernel, borderType=cv2.BORDER_REFLECT101)


def generator_artifacts(image: np.ndarray, rng: np.random.Generator,
                        kind: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Re-synthesise ``image`` as a generator would: ``(fake uint8, info)``; ``kind`` upsampling|decoder."""
    import cv2

    kind = kind or str(rng.choice(["upsampling", "decoder"]))
    h, w = image.shape[:2]
    img = image.astype(np.float32)
    info: dict[str, Any] = {"kind": kind}
    if kind == "upsampling":
        stages = int(rng.integers(1, 3))  # x2 or x4
        f = 2 ** stages
        x = cv2.resize(img, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
        for _ in range(stages):
            base = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32)  # bilinear-like 4x4
            base /= base[::2, ::2].sum()  # each phase of a stride-2 kernel sums to 1 ...
            gains = 1.0 + rng.uniform(-0.06, 0.06, (2, 2))  # ... times an unequal gain: checkerboard
            k = base * np.kron(np.ones((2, 2)), gains).astype(np.float32)
            x = _upsample_x2(x, k)
        x = cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR) if x.shape[:2] != (h, w) else x
        # keep some of the real detail (generators are sharp), the checkerboard stays
        a = rng.uniform(0.5, 0.85)
        out = a * x + (1 - a) * img
        info.update({"factor": f, "mix": round(float(a), 3)})
    elif kind == "decoder":
        f = 8
        lat = cv2.resize(img, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
        up = cv2.resize(lat, (w, h), interpolation=cv2.INTER_CUBIC)
        a = rng.uniform(0.3, 0.6)
        out = a * up + (1 - a) * img
        tile = rng.normal(0, 1, (f, f, 1)).astype(np.float32)
        tile -= tile.mean()
        amp = rng.uniform(1.5, 3.5)
        pattern = np.tile(tile, (h // f + 1, w // f + 1, 1))[:h, :w] * amp * (0.5 + img.mean(-1, keepdims=True) / 255.0)
        out = out + pattern
        info.update({"factor": f, "mix": round(float(a), 3), "texture_amp": round(float(amp), 3)})
    else:
        raise ValueError(f"unknown generator-artifact kind {kind!r}; known: upsampling, decoder")
    return _u8(out), info
