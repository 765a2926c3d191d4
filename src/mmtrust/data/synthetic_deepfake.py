"""``synthetic-deepfake``: a built-in face-forgery dataset made offline from real face photos.

Material: every real face photo that ships in the installed packages
(:func:`mmtrust.data.faces.material.load_face_photos`: 4 named people in full-size photos + 100 tiny LFW
crops, each a pseudo-identity). Each photo becomes a *canvas* (the face with a wide margin, ``canvas_size``
px; LFW crops upscaled, blurred and border-padded), located once by the face detector (``"auto"``:
RetinaFace, else Haar). Photos whose face is not found are skipped and listed in ``DONE.json``.

**Identities are disjoint between splits**: the four full-size identities are pinned (train: astronaut,
cameraman; val: franz-kafka; test: grace-hopper), the LFW pseudo-identities are shuffled by the seed and
cut 60/20/20. Swap donors come from the same split.

Per identity and per kind, ``per_identity`` samples are drawn, each from its own identity-preserving
augmentation of the canvas (:func:`~mmtrust.data.faces.material.augment_face`: pose, scale, light,
colour, blur, noise):

* ``real`` (label 0) -- the augmented face.
* ``sbi`` (label 1) -- self-blended image (:func:`~mmtrust.data.faces.forge.self_blend`, SBI recipe).
* ``swap`` (label 1) -- another identity of the same split swapped in
  (:func:`~mmtrust.data.faces.forge.face_swap`: similarity warp, Reinhard colour transfer, alpha or
  Poisson blending).
* ``generator`` (label 1) -- generator up-sampling / latent-decoder traces over the whole crop
  (:func:`~mmtrust.data.faces.forge.generator_artifacts`).

Every sample is then cropped like the deepfake benchmarks are preprocessed (square box x(1 +
``crop_margin``) around the face outline from the landmarks, resized to ``image_size``) and, with
probability ``jpeg_p``, JPEG re-encoded at a quality in ``jpeg_quality`` -- the same post-processing for
real and fake, so compression is no cue. The blending mask is saved for the blended kinds (the face
region for ``generator``, whose whole crop is synthetic; all-zero for real).

Variants: ``variant="image"`` (one PNG per sample) and ``variant="video"`` (``video_frames`` frames per
sample: the pose, light and colour move smoothly between two augmentation draws; the forgery uses the same
random draws on every frame plus small per-frame landmark jitter, so blend boundaries flicker slightly as
in real face-swap videos).

Layout::

    ROOT/DONE.json                                generator version, config, counts, skipped faces, provenance
    ROOT/samples.json                             one record per sample (split, kind, label, identity, ...)
    ROOT/images/<split>/<kind>/<id>.png           (video: ROOT/images/<split>/<kind>/<id>/000.png ...)
    ROOT/masks/<split>/<kind>/<id>.png            uint8 mask x255 (video: the mask of frame 0)

**Online training forgeries** (``synthetic-deepfake?online=1``, :class:`OnlineSyntheticDeepfake`): the train
split is re-rendered every epoch from its canvases with fresh random draws (augmentation, blend mask,
colour / sharpness / position transform, swap donor among the train identities, generator traces, JPEG),
as SBI self-blends on the fly; epoch 0 is the cached build. The val and test splits always come from the
cache, unchanged, and the cache itself is never rewritten.

Deterministic from the config (seed included); cached in ``cache_dir("synthetic-deepfake",
"v<version>-<hash>")`` through :func:`~mmtrust.data.cache.atomic_dir`; a progress bar shows the build.
Bump :data:`GENERATOR_VERSION` whenever the output would change.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmtrust.data.cache import atomic_dir, cache_dir, config_hash
from mmtrust.data.forgery_base import FAKE, REAL, ForgerySample, ForgeryVideo
from mmtrust.registry import register_dataset

__all__ = ["GENERATOR_VERSION", "KINDS", "PRESETS", "SyntheticDeepfakeConfig", "build_synthetic_deepfake",
           "SyntheticDeepfake", "OnlineSyntheticDeepfake", "synthetic_deepfake", "prepare_canvases", "Canvas"]

GENERATOR_VERSION = 1
KINDS = ("real", "sbi", "swap", "generator")
FORGERY_KINDS = KINDS[1:]
PINNED_SPLITS = {"eileen-collins": "train", "cameraman": "train", "franz-kafka": "val", "grace-hopper": "test"}
_DONE = "DONE.json"
_LFW_FACE_FRACTION = 128 / 224  # side of the upscaled LFW crop / canvas side
_FULL_CANVAS_MARGIN = 0.75  # canvas side = 1.75 x the detector's face box


@dataclass
class SyntheticDeepfakeConfig:
    """Settings of the generator (defaults = the ``"default"`` preset)."""

    image_size: int = 128
    canvas_size: int = 224
    #: samples per identity and per kind (real, sbi, swap, generator)
    per_identity: int = 4
    kinds: tuple[str, ...] = KINDS
    #: keep only the first N usable identities (the pinned full-size ones first); None = all
    max_identities: int | None = None
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    crop_margin: float = 0.3
    jpeg_p: float = 0.75
    jpeg_quality: tuple[int, int] = (70, 100)
    augment_strength: float = 1.0
    detector: str = "auto"
    include_lfw: bool = True
    #: colourise the grey LFW crops with a skin tone (Fitzpatrick type drawn per identity in [1.5, 5.5])
    #: and tint their background; real and fake samples of an identity share the same colourised canvas
    colourise_grey: bool = True
    variant: str = "image"
    video_frames: int = 8
    seed: int = 0

    def validate(self) -> None:
        bad = set(self.kinds) - set(KINDS)
        if bad or "real" not in self.kinds:
            raise ValueError(f"kinds must include 'real' and be among {KINDS}, got {self.kinds}")
        if self.variant not in ("image", "video"):
            raise ValueError(f"variant must be 'image' or 'video', got {self.variant!r}")
        if self.image_size < 16 or self.canvas_size < 64 or self.per_identity < 1:
            raise ValueError("image_size >= 16, canvas_size >= 64 and per_identity >= 1 are required")


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "quick": {"per_identity": 2, "image_size": 96, "canvas_size": 192},
    "tiny": {"per_identity": 1, "image_size": 64, "canvas_size": 128, "max_identities": 8, "video_frames": 4},
}


def make_config(preset: str = "quick", **overrides: Any) -> SyntheticDeepfakeConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(SyntheticDeepfakeConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise TypeError(f"unknown synthetic-deepfake setting(s) {sorted(unknown)}; known: {sorted(fields)}")
    kw = {**PRESETS[preset], **overrides}
    for k in ("kinds", "split_fractions", "jpeg_quality"):
        if k in kw:
            kw[k] = tuple(kw[k])
    cfg = SyntheticDeepfakeConfig(**kw)
    cfg.validate()
    return cfg


# ------------------------------------------------------------------------------------------ canvases
@dataclass
class Canvas:
    name: str
    identity: str
    image: np.ndarray  # uint8 (C, C, 3)
    landmarks5: np.ndarray  # (5, 2)
    estimated: bool
    provenance: dict[str, str]


def _colourise(grey_rgb: np.ndarray, lm5: np.ndarray, tone: float, rng: np.random.Generator) -> np.ndarray:
    """Give a grey face canvas skin colour (inside the landmark face region, scaled by the grey level)
    and a tinted background, as the synthetic-rppg generator does for its LFW subjects."""
    import cv2

    from mmtrust.data.faces.masks import face_mask
    from mmtrust.data.synthetic_rppg import _tone_rgb

    grey = grey_rgb[..., 0].astype(np.float32) / 255.0
    size = grey.shape[0]
    region = cv2.GaussianBlur(face_mask(grey.shape, lm5, extent=1.1), (0, 0), size / 40.0)
    gate = np.clip((grey - 0.15) / 0.15, 0.0, 1.0)  # dark hair, brows and eyes stay neutral
    skin = np.clip(region * (0.3 + 0.7 * gate), 0.0, 1.0)
    skin_mean = float((grey * skin).sum() / max(float(skin.sum()), 1e-6))
    tint = (_tone_rgb(tone) / max(skin_mean, 1e-3)).astype(np.float32)
    wall = (1.0 + rng.uniform(-0.12, 0.12, 3)).astype(np.float32)  # the background: a tinted wall
    w = skin[..., None]
    out = grey[..., None] * (w * tint + (1.0 - w) * wall)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def prepare_canvases(canvas_size: int, detector: Any, include_lfw: bool = True,
                     limit: int | None = None, colourise_seed: int | None = None) -> tuple[list[Canvas], list[str]]:
    """The shipped photos as face canvases (face centred, wide margin). Returns ``(canvases, skipped)``;
    ``limit`` stops after that many usable canvases (the full-size photos come first); with
    ``colourise_seed`` the grey LFW crops are colourised (:func:`_colourise`, tone drawn from the seed)."""
    import cv2

    from mmtrust.data.faces.align import crop_with_margin, transform_points
    from mmtrust.data.faces.material import load_face_photos

    out, skipped = [], []
    for photo in load_face_photos(include_lfw=include_lfw):
        if limit is not None and len(out) >= limit:
            break
        if photo.quality == "tiny":
            side = int(round(canvas_size * _LFW_FACE_FRACTION))
            big = cv2.resize(photo.image, (side, side), interpolation=cv2.INTER_CUBIC)
            big = cv2.GaussianBlur(big, (0, 0), side / 100.0)
            pad0 = (canvas_size - side) // 2
            img = cv2.copyMakeBorder(big, pad0, canvas_size - side - pad0, pad0, canvas_size - side - pad0,
                                     cv2.BORDER_REPLICATE)
            face = detector.detect_largest(img)
        else:
            face0 = detector.detect_largest(photo.image)
            face = None
            if face0 is not None:
                img, m = crop_with_margin(photo.image, face0.box, _FULL_CANVAS_MARGIN, canvas_size)
                face = dataclasses.replace(face0, landmarks5=transform_points(face0.landmarks5, m))
        if face is None or face.landmarks5 is None:
            skipped.append(photo.name)
            continue
        prov = photo.provenance()
        if photo.quality == "tiny" and colourise_seed is not None:
            rng = np.random.default_rng([colourise_seed, 0xC010, len(out)])
            tone = round(float(rng.uniform(1.5, 5.5)), 2)
            img = _colourise(img, face.landmarks5, tone, rng)
            prov = {**prov, "colourised_fitzpatrick": str(tone)}
        out.append(Canvas(photo.name, photo.identity, img, np.round(face.landmarks5, 2), face.estimated, prov))
    return out, skipped


# --------------------------------------------------------------------------------------------- build
def _resolve_detector(name: str) -> Any:
    from mmtrust.data.faces.detect import create_detector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_detector(name)


def _crop_box(lm5: np.ndarray) -> np.ndarray:
    from mmtrust.data.faces.masks import face_outline

    pts = face_outline(lm5)
    lo, hi = pts.min(0), pts.max(0)
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])


def _interp_params(p0: Any, p1: Any, t: float) -> Any:
    from mmtrust.data.faces.material import AugmentParams

    kw = {}
    for f in dataclasses.fields(AugmentParams):
        a, b = getattr(p0, f.name), getattr(p1, f.name)
        kw[f.name] = tuple((1 - t) * np.asarray(a) + t * np.asarray(b)) if isinstance(a, tuple) else (1 - t) * a + t * b
    return AugmentParams(**kw)


class _Maker:
    """Renders one sample (all its frames) of a kind; pure function of its seeds."""

    def __init__(self, config: SyntheticDeepfakeConfig, canvases: list[Canvas]) -> None:
        self.c = config
        self.canvases = canvases

    def frame(self, kind: str, cv: Canvas, donor: Canvas | None, p_t: Any, p_d: Any, forge_seed: list[int],
              jitter: np.ndarray, post: tuple[bool, int]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        import cv2

        from mmtrust.data.faces.align import crop_with_margin
        from mmtrust.data.faces.forge import face_swap, generator_artifacts, self_blend
        from mmtrust.data.faces.masks import face_mask
        from mmtrust.data.faces.material import augment_face, jpeg

        img, lm, _, _ = augment_face(cv.image, cv.landmarks5, params=p_t,
                                     rng=np.random.default_rng(forge_seed + [7]))
        lm_f = lm + jitter
        rng = np.random.default_rng(forge_seed)
        info: dict[str, Any] = {}
        mask = np.zeros(img.shape[:2], np.float32)
        if kind == "sbi":
            img, mask, info = self_blend(img, lm_f, rng)
        elif kind == "swap":
            assert donor is not None
            d_img, d_lm, _, _ = augment_face(donor.image, donor.landmarks5, params=p_d,
                                             rng=np.random.default_rng(forge_seed + [8]))
            img, mask, info = face_swap(img, lm_f, d_img, d_lm, rng)
        crop, m = crop_with_margin(img, _crop_box(lm), self.c.crop_margin, self.c.image_size)
        size = self.c.image_size
        if kind == "generator":
            crop, info = generator_artifacts(crop, rng)
            mask_c = face_mask(crop.shape, lm_f @ m[:, :2].T + m[:, 2])
        else:
            mask_c = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if post[0]:
            crop = jpeg(crop, post[1])
        return crop, mask_c, info


def _draw_sample(config: SyntheticDeepfakeConfig, seed: list[int], kind: str, mates: list[int],
                 canvases: list[Canvas], n_frames: int) -> tuple[Any, Any, Canvas | None, Any, tuple[bool, int], list[int]]:
    """The random draws of one sample from its ``seed``: ``(augment params of the first and last frame,
    swap donor (from ``mates``, the other identities of the split) or None, donor augment params,
    (jpeg?, quality), forge seed)``. The build and the online re-rendering share it."""
    from mmtrust.data.faces.material import AugmentParams

    rng = np.random.default_rng(seed)
    p0 = AugmentParams.draw(rng, config.augment_strength)
    p1 = AugmentParams.draw(rng, 0.35 * config.augment_strength) if n_frames > 1 else p0
    p1 = dataclasses.replace(p1, blur=p0.blur, noise=p0.noise)
    donor = canvases[int(rng.choice(mates))] if kind == "swap" else None
    d0 = AugmentParams.draw(rng, 0.5 * config.augment_strength) if donor is not None else None
    post = (bool(rng.random() < config.jpeg_p), int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1)))
    forge_seed = [*seed, int(rng.integers(2**31))]
    return p0, p1, donor, d0, post, forge_seed


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _default_root(config: SyntheticDeepfakeConfig, detector_name: str) -> Path:
    key = {**json.loads(json.dumps(asdict(config))), "detector": detector_name}
    return cache_dir("synthetic-deepfake") / f"v{GENERATOR_VERSION}-{config_hash(key)}"


def is_complete(root: str | Path, config: SyntheticDeepfakeConfig | None = None) -> bool:
    root = Path(root)
    try:
        done = json.loads((root / _DONE).read_text())
    except (OSError, ValueError):
        return False
    if done.get("generator") != "synthetic-deepfake" or done.get("generator_version") != GENERATOR_VERSION:
        return False
    if config is not None and done.get("config") != json.loads(json.dumps(asdict(config))):
        return False
    return (root / "samples.json").is_file()


def build_synthetic_deepfake(config: SyntheticDeepfakeConfig | None = None, root: str | Path | None = None,
                             progress: bool = True) -> Path:
    """Generate the dataset (or reuse a finished one) and return its folder."""
    import time

    import cv2
    from tqdm.auto import tqdm

    from mmtrust.data.faces.material import identity_splits

    config = config or SyntheticDeepfakeConfig()
    config.validate()
    detector = _resolve_detector(config.detector)
    target = Path(root) if root is not None else _default_root(config, detector.name)
    if is_complete(target, config):
        return target
    if target.exists() and any(target.iterdir()) and not (target / _DONE).is_file():
        raise FileExistsError(f"{target} exists and is not a synthetic-deepfake dataset; refusing to overwrite it")
    t0 = time.perf_counter()
    canvases, skipped = prepare_canvases(config.canvas_size, detector, config.include_lfw, config.max_identities,
                                         colourise_seed=config.seed if config.colourise_grey else None)
    idents = [c.identity for c in canvases]
    fr = dict(zip(("train", "val", "test"), config.split_fractions, strict=True))
    split_of = identity_splits(idents, fr, seed=config.seed, pinned=PINNED_SPLITS)
    by_split: dict[str, list[int]] = {}
    for i, c in enumerate(canvases):
        by_split.setdefault(split_of[c.identity], []).append(i)
    maker = _Maker(config, canvases)
    n_frames = config.video_frames if config.variant == "video" else 1
    total = len(canvases) * len(config.kinds) * config.per_identity
    records: list[dict[str, Any]] = []
    counts: dict[str, dict[str, int]] = {}
    with atomic_dir(target) as tmp, tqdm(total=total, unit="sample", disable=not progress,
                                         desc=f"synthetic-deepfake ({len(canvases)} identities)", leave=False) as bar:
        for ci, cv in enumerate(canvases):
            split = split_of[cv.identity]
            mates = [j for j in by_split[split] if j != ci]
            for ki, kind in enumerate(config.kinds):
                if kind == "swap" and not mates:
                    bar.update(config.per_identity)
                    continue
                for k in range(config.per_identity):
                    seed = [config.seed, ci, ki, k]
                    p0, p1, donor, d0, post, forge_seed = _draw_sample(config, seed, kind, mates, canvases, n_frames)
                    iod = float(np.linalg.norm(cv.landmarks5[1] - cv.landmarks5[0]))
                    sid = f"{split}-{kind}-{cv.name}-{k}"
                    rel = Path("images", split, kind, sid)
                    frames_info = []
                    for t in range(n_frames):
                        pt = _interp_params(p0, p1, t / max(1, n_frames - 1)) if n_frames > 1 else p0
                        jit = (np.random.default_rng([*forge_seed, t]).normal(0, 0.01 * iod, (5, 2))
                               if n_frames > 1 else np.zeros((5, 2)))
                        img, mask, info = maker.frame(kind, cv, donor, pt, d0, forge_seed, jit, post)
                        out = tmp / (f"{rel}.png" if n_frames == 1 else f"{rel}/{t:03d}.png")
                        out.parent.mkdir(parents=True, exist_ok=True)
                        cv2.imwrite(str(out), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                        if t == 0 and kind != "real":
                            mpath = tmp / "masks" / split / kind / f"{sid}.png"
                            mpath.parent.mkdir(parents=True, exist_ok=True)
                            cv2.imwrite(str(mpath), np.clip(np.round(mask * 255), 0, 255).astype(np.uint8))
                        frames_info.append(info)
                    records.append({
                        "id": sid, "split": split, "kind": kind, "label": REAL if kind == "real" else FAKE,
                        "identity": cv.identity, "photo": cv.name,
                        "donor_identity": donor.identity if donor is not None else None,
                        "path": f"{rel}.png" if n_frames == 1 else str(rel),
                        "mask": None if kind == "real" else f"masks/{split}/{kind}/{sid}.png",
                        "jpeg_quality": post[1] if post[0] else None, "augment": p0.as_dict(),
                        "forgery": frames_info[0], "n_frames": n_frames,
                    })
                    counts.setdefault(split, {}).setdefault(kind, 0)
                    counts[split][kind] += 1
                    bar.update(1)
        (tmp / "samples.json").write_text(json.dumps(records, default=_json_default) + "\n")
        done = {"generator": "synthetic-deepfake", "generator_version": GENERATOR_VERSION,
                "config": json.loads(json.dumps(asdict(config))), "detector": detector.name,
                "counts": counts, "identities": {s: sorted(canvases[i].identity for i in v) for s, v in by_split.items()},
                "skipped_faces": skipped, "provenance": [c.provenance for c in canvases],
                "build_seconds": round(time.perf_counter() - t0, 2)}
        (tmp / _DONE).write_text(json.dumps(done, indent=2, sort_keys=True, default=_json_default) + "\n")
    return target


# -------------------------------------------------------------------------------------------- reader
class SyntheticDeepfake:
    """Reads a built synthetic-deepfake folder. Items: :class:`ForgerySample` (image variant) or
    :class:`ForgeryVideo` (video variant). ``kinds`` keeps ``real`` plus the listed forgery kinds
    (cross-forgery protocols: train on ``("sbi",)``, test on ``("swap",)``)."""

    def __init__(self, root: str | Path, split: str = "all", kinds: tuple[str, ...] | list[str] | None = None,
                 with_masks: bool = True) -> None:
        self.root = Path(root)
        if not is_complete(self.root):
            raise FileNotFoundError(f"{self.root} is not a finished synthetic-deepfake dataset (no valid {_DONE})")
        self.info = json.loads((self.root / _DONE).read_text())
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"unknown split {split!r}; known: train, val, test, all")
        keep = set(kinds or KINDS) | {"real"}
        unknown = keep - set(KINDS)
        if unknown:
            raise ValueError(f"unknown forgery kind(s) {sorted(unknown)}; known: {', '.join(KINDS)}")
        recs = json.loads((self.root / "samples.json").read_text())
        self.records = [r for r in recs if (split == "all" or r["split"] == split) and r["kind"] in keep]
        self.split, self.with_masks = split, with_masks
        self.variant = self.info["config"]["variant"]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r["label"] for r in self.records], np.int64)

    @property
    def identities(self) -> set[str]:
        return {r["identity"] for r in self.records}

    def _read(self, rel: str) -> np.ndarray:
        import cv2

        img = cv2.imread(str(self.root / rel), cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"cannot read {self.root / rel}")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def __getitem__(self, index: int) -> ForgerySample | ForgeryVideo:
        import cv2

        r = self.records[index]
        meta = {k: r[k] for k in ("split", "photo", "donor_identity", "jpeg_quality", "forgery", "augment")}
        if self.variant == "video":
            files = sorted((self.root / r["path"]).glob("*.png"))
            frames = np.stack([self._read(str(f.relative_to(self.root))) for f in files])
            return ForgeryVideo(r["id"], frames, r["label"], r["kind"], np.arange(len(frames)),
                                {**meta, "identity": r["identity"]})
        mask = None
        if self.with_masks:
            size = self.info["config"]["image_size"]
            mask = (np.zeros((size, size), np.float32) if r["mask"] is None else
                    cv2.imread(str(self.root / r["mask"]), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0)
        return ForgerySample(r["id"], self._read(r["path"]), r["label"], r["kind"], r["id"], r["identity"], mask, meta)

    def __repr__(self) -> str:
        return (f"SyntheticDeepfake(root={str(self.root)!r}, split={self.split!r}, samples={len(self)}, "
                f"identities={len(self.identities)}, variant={self.variant!r})")


_ONLINE_TAG = 0x0417  # seeds of online re-renders: [seed, _ONLINE_TAG, epoch, canvas, kind, k] (never a build seed)


class OnlineSyntheticDeepfake(SyntheticDeepfake):
    """The **train** split of a built synthetic-deepfake folder whose samples are re-rendered every epoch.

    :meth:`render_epoch` ``(epoch)`` returns the split's samples for that epoch: epoch 0 is the cached
    build; epoch ``e >= 1`` draws every sample afresh (SBI-style online forgeries, as the SBI paper blends
    on the fly): new identity-preserving augmentation of the canvas (pose, scale, light, colour, blur,
    noise), new blend mask / colour / sharpness / position transform, new swap donor, new generator traces
    and JPEG draw. Real samples are re-drawn too, so a real crop is never more familiar than a fake one.
    Records, ids, labels, kinds and order stay those of the cached split; only the pixels change. Swap
    donors are drawn from the **train** identities only; nothing of the val / test identities is touched.
    Renders are deterministic in ``(config seed, epoch)``. Image variant only.
    """

    def __init__(self, root: str | Path, kinds: tuple[str, ...] | list[str] | None = None) -> None:
        super().__init__(root, split="train", kinds=kinds, with_masks=True)
        if self.variant != "image":
            raise ValueError("online re-rendering supports variant='image' only")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in self.info["config"].items()}
        self.config = SyntheticDeepfakeConfig(**kw)
        detector = _resolve_detector(self.config.detector)
        if detector.name != self.info.get("detector"):
            raise RuntimeError(f"{self.root} was built with the {self.info.get('detector')} detector but "
                               f"{detector.name} is what loads now: its canvases cannot be re-made")
        c = self.config
        self.canvases, _ = prepare_canvases(c.canvas_size, detector, c.include_lfw, c.max_identities,
                                            colourise_seed=c.seed if c.colourise_grey else None)
        self.train_identities = set(self.info["identities"]["train"])
        self._index = {cv.name: i for i, cv in enumerate(self.canvases)}
        self._train_canvases = [j for j, cv in enumerate(self.canvases) if cv.identity in self.train_identities]
        missing = {r["photo"] for r in self.records} - set(self._index)
        if missing or {cv.identity for cv in self.canvases if cv.identity in self.train_identities} != self.train_identities:
            raise RuntimeError(f"the canvases re-made for {self.root} do not match its train identities "
                               f"(missing photos: {sorted(missing)[:5]})")
        self._maker = _Maker(c, self.canvases)

    def _seed(self, record: dict[str, Any], epoch: int | None) -> list[int]:
        """The seed of a record's render: the build's for ``epoch=None``, an online one otherwise."""
        ci = self._index[record["photo"]]
        ki = list(self.config.kinds).index(record["kind"])
        k = int(record["id"].rsplit("-", 1)[1])
        base = [self.config.seed, ci, ki, k]
        return base if epoch is None else [self.config.seed, _ONLINE_TAG, int(epoch), ci, ki, k]

    def render(self, index: int, epoch: int | None) -> ForgerySample:
        """Render record ``index`` afresh for ``epoch`` (``None``: with its build seed, i.e. the cached sample)."""
        r = self.records[index]
        ci = self._index[r["photo"]]
        cv = self.canvases[ci]
        mates = [j for j in self._train_canvases if j != ci]
        p0, _, donor, d0, post, forge_seed = _draw_sample(self.config, self._seed(r, epoch), r["kind"], mates,
                                                          self.canvases, 1)
        img, mask, info = self._maker.frame(r["kind"], cv, donor, p0, d0, forge_seed, np.zeros((5, 2)), post)
        meta = {"split": "train", "photo": cv.name, "donor_identity": donor.identity if donor is not None else None,
                "jpeg_quality": post[1] if post[0] else None, "forgery": info, "augment": p0.as_dict(),
                "epoch": epoch}
        return ForgerySample(r["id"], img, r["label"], r["kind"], r["id"], r["identity"],
                             mask if r["kind"] != "real" else np.zeros_like(mask), meta)

    def render_epoch(self, epoch: int) -> list[ForgerySample]:
        """Every sample of the split for ``epoch`` (0: the cached build; >= 1: fresh renders)."""
        if epoch <= 0:
            return [self[i] for i in range(len(self))]
        return [self.render(i, epoch) for i in range(len(self))]

    def __repr__(self) -> str:
        return super().__repr__().replace("SyntheticDeepfake(", "OnlineSyntheticDeepfake(", 1)


@register_dataset(
    "synthetic-deepfake", task="forgery", builtin=True, splits=("train", "val", "test", "all"),
    summary="Built-in face forgeries (SBI self-blends, identity swaps, generator artifacts) made offline "
            "from the real face photos that ship in installed wheels; identity-disjoint splits",
    presets=tuple(PRESETS), kinds=KINDS,
)
def synthetic_deepfake(root: str | Path | None = None, split: str = "all", preset: str = "quick",
                       kinds: tuple[str, ...] | None = None, progress: bool = True, online: bool = False,
                       **overrides: Any) -> SyntheticDeepfake:
    """Build (or reuse) the synthetic forgery data and return the requested split.

    ``overrides`` are :class:`SyntheticDeepfakeConfig` fields (``variant="video"``, ``per_identity=2``, ...);
    ``kinds`` filters the forgery kinds read (real is always kept). ``online=True`` (``?online=1``) returns
    the train split as an :class:`OnlineSyntheticDeepfake` (re-rendered every epoch by the forgery task);
    it changes nothing for the other splits, which are always read from the cache as built.
    """
    config = make_config(preset, **overrides)
    path = build_synthetic_deepfake(config, root=root or None, progress=progress)
    if online and split == "train":
        return OnlineSyntheticDeepfake(path, kinds=kinds)
    return SyntheticDeepfake(path, split=split, kinds=kinds)
