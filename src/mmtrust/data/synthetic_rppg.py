"""``synthetic-rppg``: small, realistic rPPG videos generated offline from real face photos.

There is no real face video with a pulse that can be had offline (see the availability notes), so this
module *makes* one: it takes real still face photos that ship inside installed wheels, animates them
with a physically motivated skin-reflection model driven by a known PPG waveform, and writes the result
in the **UBFC-rPPG DATASET_2 layout**, so the very same loader (:class:`mmtrust.data.rppg_datasets.UBFCrPPG`)
reads built-in and real data::

    ROOT/DONE.json                      completion marker: generator version + config (written last)
    ROOT/subject<N>/vid.avi             the video (``vid.mp4`` when codec="libx264": see below)
    ROOT/subject<N>/ground_truth.txt    3 rows (np.savetxt): PPG per frame, HR (bpm) per frame, time (s)
    ROOT/subject<N>/meta.json           true HR, face source, domain parameters, seed

Faces
-----
* ``astronaut`` (scikit-image, Eileen Collins, NASA, public domain) and ``grace_hopper`` (matplotlib
  sample data, US Navy, public domain): a square window around the Haar face box is cut out and resized
  so that the face box is about 46 % of the frame, leaving margins for the x1.5 crop and for head motion.
* The 100 LFW face crops of ``skimage.data.lfw_subset()`` (25x25 grey): upscaled with
  ``cv2.INTER_CUBIC`` + a mild Gaussian blur, feathered onto a smooth background built from the crop's
  own border, and colourised with a skin tone (they are grey).
* Each subject gets one face; the two full-size photos are always used (when ``n_subjects >= 2``), the
  rest are LFW crops in an order shuffled by the seed, and the assignment of faces to subject numbers is
  shuffled too. Every rendered first frame is checked with the same Haar detector the loader uses
  (:class:`mmtrust.data.face.HaarFaceDetector`); a face that is not found is skipped for the next one in
  the pool (the pool cycles, mirrored, if it runs out).

Skin reflection model (Wang, den Brinker, Stuijk, de Haan, "Algorithmic principles of remote PPG",
IEEE TBME 64(7), 2017, eqs. 1-4 -- the model behind POS)
------------------------------------------------------------------------------------------------------
For every pixel of colour channel c at frame t::

    C_c(t) = I(t) * l_c * ( a_c * (1 + m * A * (pbv_c / pbv_G) * p(t) / ptp(p))    # diffuse + pulse
                           + S(t) * h )                                           # specular (light colour)
             + n_c(t)                                                             # camera noise

* ``a_c`` -- the diffuse albedo (DC skin colour) of the face photo, optionally re-toned (``skin_tone``).
* ``m`` -- a soft skin mask (YCrCb skin segmentation of the face region -- Cr in [133,173], Cb in
  [77,127], Chai & Ngan 1999 -- intersected with a face ellipse and smoothed; for grey LFW crops a face
  ellipse gated by luminance). The pulse exists only on skin.
* ``p(t)`` -- the ground-truth PPG, ``neurokit2.ppg_simulate`` with the **clean settings**
  (``frequency_modulation=0, ibi_randomness=0, drift=0, motion_amplitude=0, powerline_amplitude=0,
  burst_number=0``) so that its spectral peak *is* the true HR (with the default settings the peak is
  biased low), normalised to zero mean and unit std. This normalised trace is the PPG row of
  ``ground_truth.txt``.
* ``pbv = [0.33, 0.77, 0.53]`` -- the normalised blood-volume-pulse signature (relative pulsatile
  amplitude per RGB channel; de Haan & van Leest, "Improved motion robustness of remote-PPG by using the
  blood volume pulse signature", Physiol. Meas. 2014; Wang et al. 2017, sec. II). The pulse is
  multiplicative: its amplitude scales with each pixel's DC level, as in the model's ``u_p * p(t)`` term.
  ``A = pulse_amplitude`` is the peak-to-peak AC/DC of the green channel (~0.5-1.5 % in real rPPG),
  jittered x[0.8, 1.2] per subject. It is independent of skin tone (Beer-Lambert: epidermal melanin
  attenuates DC and AC alike), so darker skin gives a smaller *absolute* pulse, closer to the
  quantisation and noise floor and relatively weaker against specular light -- the mechanism behind the
  lower SNR on dark skin reported in the rPPG literature.
* ``I(t) = brightness * (1 + illumination_drift * d(t) + flicker * sin(2 pi f_flicker t))`` -- intensity
  of the light (``I_0 (1 + Psi(m(t)))`` in the paper): ``d(t)`` a slow band-limited drift (< 0.12 Hz) in
  [-1, 1]; the flicker defaults to 10 Hz (100 Hz mains aliased at 30 fps).
  ``l_c = light_rgb`` is the colour of the light.
* ``S(t) * h`` -- specular reflection: a highlight map ``h`` (forehead, nose and cheeks, on skin)
  times ``S(t) = specular * (1 + 0.5 * motion signal)`` -- it varies with head motion (``Phi(m(t), p(t))``
  in the paper; the small pulsatile part of the specular term is left out). It has the colour of the light.
* Head motion: every frame is ``cv2.warpAffine``-ed (rotation + scale about the face centre, plus a
  translation). Each of the four parameters is a sum of a slow drift (band-limited sinusoids < 0.12 Hz)
  and a sway (0.12-0.3 Hz, so that even its second harmonic stays below the 0.7 Hz HR band), scaled so
  that ``|translation| <= motion`` px, ``|rotation| <= motion`` degrees and ``|scale - 1| <= 1 % * motion``.
  The whole canvas moves (the background with the head): a simplification.
* ``n_c(t)`` -- Gaussian camera noise of ``camera_noise_std`` 8-bit levels; the frame is then rounded to
  uint8 and encoded: ``ffv1`` (lossless, default) or ``libx264`` with ``crf`` (lossy, as real datasets
  and streaming are). ``write_video`` does not put H.264 in AVI, so libx264 datasets hold ``vid.mp4``.
  H.264 removes the sub-level pulse quickly (cf. McDuff et al., "The impact of video compression on
  remote cardiac pulse measurement", CVPRW 2017): on the tiny preset a plain POS-like estimate still
  finds the HR in most clips at crf 8 (domain ``"compressed"``) and in almost none at the x264 default
  crf 23 (domain ``"heavy-compression"``).

The ground-truth HR row is constant at the subject's true HR (``meta.json["hr_bpm"]``), drawn uniformly
in ``hr_range_bpm``. Everything is determined by the config (seed included): the same config gives
byte-identical ``ground_truth.txt`` / ``meta.json`` and, with ``ffv1``, identical frames.

Caching: :func:`build_synthetic_rppg` writes into ``cache_dir("synthetic-rppg", "v<version>-<hash>")``
(or ``root``) through :func:`mmtrust.data.cache.atomic_dir`; a finished dataset carries ``DONE.json``
(version + config) and is reused as it is; a failed build leaves nothing behind and never touches an
existing good dataset. Bump :data:`GENERATOR_VERSION` whenever the output would change.

Presets (:meth:`SyntheticRPPGConfig.preset`): ``"default"`` (20 subjects x 20 s, 128 px), ``"quick"``
(the demo: 10 subjects x 20 s, 96 px), ``"tiny"`` (the tests: 5 subjects x 10 s, 80 px). Named domains
(:data:`DOMAINS`) are sets of overrides for domain-shift / domain-adaptation experiments.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmtrust.data.cache import atomic_dir, cache_dir, config_hash
from mmtrust.registry import register_dataset

__all__ = [
    "GENERATOR_VERSION",
    "PBV_SIGNATURE",
    "PRESETS",
    "DOMAINS",
    "SyntheticRPPGConfig",
    "make_config",
    "build_synthetic_rppg",
    "is_complete",
    "video_name",
    "synthetic_rppg",
]

#: bump whenever the generated data would change (it is part of the cache key)
GENERATOR_VERSION = 1

#: normalised blood-volume-pulse signature (relative pulsatile amplitude of R, G, B)
PBV_SIGNATURE = (0.33, 0.77, 0.53)

#: approximate mean sRGB skin colour per Fitzpatrick type (1-6), interpolated for fractional types
_FITZPATRICK_RGB = np.array([
    [238, 206, 186],
    [224, 180, 155],
    [198, 150, 118],
    [164, 114, 84],
    [120, 80, 56],
    [80, 52, 38],
], dtype=np.float64)

_FACE_BOX_FRACTION = 0.46  # Haar face box side / frame side on the canvas (x1.5 crop ~ 0.69 of the frame)
_LFW_PASTE_FRACTION = 0.48  # side of the upscaled LFW crop / frame side (its Haar box is ~0.96 of the crop)
_HQ_FACES = ("astronaut", "grace_hopper")
_DONE = "DONE.json"


@dataclass
class SyntheticRPPGConfig:
    """Settings of the generator (the defaults are the ``"default"`` preset)."""

    n_subjects: int = 20
    duration_s: float = 20.0
    fps: float = 30.0
    #: side of the square frame; the face box is ~46 % of it
    frame_size: int = 128
    hr_range_bpm: tuple[float, float] = (55.0, 120.0)
    #: None: the photo's own tone (grey LFW crops: a Fitzpatrick type in [1.5, 5] per subject);
    #: a number: Fitzpatrick type 1 (lightest) .. 6 (darkest) for every subject; "mixed": uniform in [1, 6]
    skin_tone: float | str | None = None
    #: peak-to-peak AC/DC of the green channel on skin (real rPPG: ~0.005-0.015)
    pulse_amplitude: float = 0.01
    #: head motion: peak translation (px) = peak rotation (deg) = 100 x peak relative scale change; 0 = still
    motion: float = 1.0
    #: global light level (1 = the photo's own exposure)
    brightness: float = 1.0
    #: peak relative slow intensity drift
    illumination_drift: float = 0.03
    #: relative amplitude of a sinusoidal flicker at ``flicker_hz`` (0 = none)
    flicker: float = 0.0
    flicker_hz: float = 10.0
    #: colour of the light (multiplies R, G, B)
    light_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    #: strength of the specular highlight (fraction of full scale at its peak)
    specular: float = 0.04
    #: std of the Gaussian camera noise in 8-bit levels
    camera_noise_std: float = 1.5
    #: "ffv1" (lossless, vid.avi) | "libx264" (lossy, vid.mp4) | "mjpeg" (lossy, vid.avi)
    codec: str = "ffv1"
    #: libx264 constant rate factor (None: encoder default 23)
    crf: int | None = None
    seed: int = 0

    @classmethod
    def preset(cls, name: str = "default", **overrides: Any) -> SyntheticRPPGConfig:
        """The named preset (``"default"``, ``"quick"``, ``"tiny"``) with ``overrides`` applied."""
        if name not in PRESETS:
            raise ValueError(f"unknown synthetic-rppg preset {name!r}; choose one of {sorted(PRESETS)}")
        return _apply(cls(), {**PRESETS[name], **overrides}, what="synthetic-rppg config")

    def with_domain(self, *domains: str) -> SyntheticRPPGConfig:
        """A copy with the overrides of the named :data:`DOMAINS` applied (in order)."""
        cfg = self
        for d in domains:
            if d not in DOMAINS:
                raise ValueError(f"unknown synthetic-rppg domain {d!r}; choose one of {sorted(DOMAINS)}")
            cfg = _apply(cfg, DOMAINS[d], what=f"domain {d!r}")
        return cfg

    def validate(self) -> None:
        if self.n_subjects < 1:
            raise ValueError(f"n_subjects must be >= 1, got {self.n_subjects}")
        if self.fps <= 0 or self.duration_s <= 0:
            raise ValueError(f"fps and duration_s must be positive, got {self.fps}, {self.duration_s}")
        if self.n_frames < 16:
            raise ValueError(f"duration_s * fps gives {self.n_frames} frames; at least 16 are needed")
        if self.frame_size < 72:
            raise ValueError(f"frame_size must be >= 72 (the Haar detector needs a face of >= 30 px), "
                             f"got {self.frame_size}")
        lo, hi = self.hr_range_bpm
        if not 30.0 <= lo <= hi <= 240.0:
            raise ValueError(f"hr_range_bpm must satisfy 30 <= low <= high <= 240, got {self.hr_range_bpm}")
        if hi / 60.0 >= self.fps / 2.0:
            raise ValueError(f"the highest HR ({hi} bpm) must lie below the Nyquist rate of {self.fps} fps")
        if isinstance(self.skin_tone, str):
            if self.skin_tone != "mixed":
                raise ValueError(f"skin_tone must be None, a Fitzpatrick type in [1, 6] or 'mixed', "
                                 f"got {self.skin_tone!r}")
        elif self.skin_tone is not None and not 1.0 <= float(self.skin_tone) <= 6.0:
            raise ValueError(f"skin_tone must lie in [1, 6] (Fitzpatrick type), got {self.skin_tone}")
        if self.codec not in ("ffv1", "libx264", "mjpeg"):
            raise ValueError(f"codec must be 'ffv1', 'libx264' or 'mjpeg', got {self.codec!r}")
        if self.crf is not None and self.codec != "libx264":
            raise ValueError("crf applies to codec='libx264' only")
        for name in ("pulse_amplitude", "motion", "brightness", "illumination_drift", "flicker", "specular",
                     "camera_noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if len(self.light_rgb) != 3 or min(self.light_rgb) < 0:
            raise ValueError(f"light_rgb must be 3 non-negative numbers, got {self.light_rgb}")

    @property
    def n_frames(self) -> int:
        return int(round(self.duration_s * self.fps))


#: named presets: overrides of :class:`SyntheticRPPGConfig`
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "quick": {"n_subjects": 10, "duration_s": 20.0, "frame_size": 96},
    "tiny": {"n_subjects": 5, "duration_s": 10.0, "frame_size": 80},
}

#: named domains (overrides applied on top of a preset), for domain-shift and adaptation experiments
DOMAINS: dict[str, dict[str, Any]] = {
    "bright-still": {"brightness": 1.1, "motion": 0.0, "illumination_drift": 0.01, "camera_noise_std": 1.0,
                     "specular": 0.02},
    "still": {"motion": 0.0},
    "dim-motion": {"brightness": 0.45, "motion": 4.0, "illumination_drift": 0.08, "camera_noise_std": 3.0},
    "dark-skin": {"skin_tone": 5.5},
    "light-skin": {"skin_tone": 1.5},
    "mixed-skin": {"skin_tone": "mixed"},
    "low-fps": {"fps": 15.0},
    "pal-fps": {"fps": 25.0},
    "compressed": {"codec": "libx264", "crf": 8},
    "heavy-compression": {"codec": "libx264", "crf": 23},
    "flicker": {"flicker": 0.03, "flicker_hz": 10.0},
    "warm-light": {"light_rgb": (1.0, 0.85, 0.65)},
}


def _apply(cfg: SyntheticRPPGConfig, overrides: dict[str, Any], what: str) -> SyntheticRPPGConfig:
    names = {f.name for f in dataclasses.fields(SyntheticRPPGConfig)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise TypeError(f"unknown {what} key(s) {bad}; accepted: {sorted(names)}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return dataclasses.replace(cfg, **fixed)


def make_config(preset: str = "quick", domain: str | list[str] | tuple[str, ...] | None = None,
                **overrides: Any) -> SyntheticRPPGConfig:
    """Preset, then the domain(s), then ``overrides``; validated."""
    cfg = SyntheticRPPGConfig.preset(preset)
    if domain:
        cfg = cfg.with_domain(*([domain] if isinstance(domain, str) else domain))
    cfg = _apply(cfg, overrides, what="synthetic-rppg config")
    cfg.validate()
    return cfg


def video_name(codec: str) -> str:
    """File name of the video inside ``subject<N>/`` for a codec (``vid.avi``; ``vid.mp4`` for libx264)."""
    return "vid.mp4" if codec == "libx264" else "vid.avi"


# --------------------------------------------------------------------------------------------- faces


@dataclass
class _Canvas:
    """One subject's face, precomputed once: float32 images in [0, 1] on the ``S x S`` frame."""

    albedo: np.ndarray  # (S, S, 3) diffuse colour
    skin: np.ndarray  # (S, S) soft skin mask
    highlight: np.ndarray  # (S, S) specular highlight map
    centre: tuple[float, float]  # face centre (x, y)
    box: tuple[float, float, float, float]  # expected face box (x, y, w, h)
    source: str
    tone: float | None  # Fitzpatrick type applied (None: the photo's own)


_POOL_CACHE: dict[str, Any] = {}


def _haar_box(img_rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    from mmtrust.data.face import HaarFaceDetector

    det = _POOL_CACHE.get("detector")
    if det is None:
        det = _POOL_CACHE["detector"] = HaarFaceDetector()
    return det.detect(img_rgb)


def _photo(name: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A full-size RGB face photo (uint8) and its Haar face box."""
    key = f"photo:{name}"
    if key not in _POOL_CACHE:
        import cv2

        if name == "astronaut":
            from skimage import data as skdata

            img = np.ascontiguousarray(skdata.astronaut()[..., :3])
        else:
            from matplotlib import cbook

            path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
            img = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        box = _haar_box(img)
        if box is None:  # pragma: no cover - both photos are found by the stock cascade
            raise RuntimeError(f"no face found in the {name} photo")
        _POOL_CACHE[key] = (img, box)
    return _POOL_CACHE[key]


def _lfw() -> np.ndarray:
    if "lfw" not in _POOL_CACHE:
        from skimage import data as skdata

        _POOL_CACHE["lfw"] = np.asarray(skdata.lfw_subset()[:100], dtype=np.float32)  # the 100 faces
    return _POOL_CACHE["lfw"]


def _ellipse(size: int, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return ((((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2) <= 1.0).astype(np.float32)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), max(float(sigma), 0.3))


def _tone_rgb(tone: float) -> np.ndarray:
    """Mean skin colour (float RGB in [0, 1]) of a (fractional) Fitzpatrick type."""
    t = float(np.clip(tone, 1.0, 6.0)) - 1.0
    i = min(int(t), 4)
    return ((1 - (t - i)) * _FITZPATRICK_RGB[i] + (t - i) * _FITZPATRICK_RGB[i + 1]) / 255.0


def _highlight_map(size: int, box: tuple[float, float, float, float], skin: np.ndarray) -> np.ndarray:
    """Specular highlights where a frontal face is most convex: forehead, nose tip, cheekbones."""
    x, y, w, h = box
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    blobs = [  # (centre x, centre y, sigma) as fractions of the face box
        (0.50, 0.22, 0.12), (0.50, 0.58, 0.07), (0.30, 0.55, 0.07), (0.70, 0.55, 0.07),
    ]
    out = np.zeros((size, size), np.float32)
    for bx, by, bs in blobs:
        cx, cy, s = x + bx * w, y + by * h, bs * w
        out = np.maximum(out, np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s)))
    return out * skin


def _photo_canvas(name: str, size: int, tone: float | None) -> _Canvas:
    import cv2

    img, (bx, by, bw, bh) = _photo(name)
    H, W = img.shape[:2]
    side = min(int(round(max(bw, bh) / _FACE_BOX_FRACTION)), H, W)
    cx, cy = bx + bw / 2.0, by + bh / 2.0
    x0 = int(min(max(round(cx - side / 2.0), 0), W - side))
    y0 = int(min(max(round(cy - side / 2.0), 0), H - side))
    crop = img[y0:y0 + side, x0:x0 + side]
    k = size / side
    rgb8 = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    box = ((bx - x0) * k, (by - y0) * k, bw * k, bh * k)
    fx, fy = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0
    ycc = cv2.cvtColor(rgb8, cv2.COLOR_RGB2YCrCb)
    seg = ((ycc[..., 1] >= 133) & (ycc[..., 1] <= 173) & (ycc[..., 2] >= 77) & (ycc[..., 2] <= 127)
           & (ycc[..., 0] >= 40)).astype(np.uint8)
    seg = cv2.morphologyEx(seg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    k = 2 * max(1, size // 64) + 1  # fill wrinkles, specular spots and other small holes in the skin
    seg = cv2.morphologyEx(seg, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8)).astype(np.float32)
    region = _ellipse(size, fx, fy + 0.1 * box[3], 0.5 * box[2], 0.62 * box[3])
    skin = np.clip(_blur(seg * region, size / 128.0), 0.0, 1.0)
    albedo = rgb8.astype(np.float32) / 255.0
    if tone is not None:
        albedo = _retone(albedo, skin, tone)
    return _Canvas(albedo, skin, _highlight_map(size, box, skin), (fx, fy), box, name, tone)


def _retone(albedo: np.ndarray, skin: np.ndarray, tone: float) -> np.ndarray:
    """Scale the skin colour (per channel, blended by the soft mask) to the mean of a Fitzpatrick type."""
    w = skin[..., None]
    mean = (albedo * w).sum((0, 1)) / max(float(w.sum()), 1e-6)
    ratio = (_tone_rgb(tone) / np.maximum(mean, 1e-3)).astype(np.float32)
    return np.clip(albedo * (1.0 + w * (ratio - 1.0)), 0.0, 1.0)


def _lfw_canvas(index: int, size: int, tone: float, mirror: bool) -> _Canvas:
    import cv2

    face = _lfw()[index]
    if mirror:
        face = np.ascontiguousarray(face[:, ::-1])
    side = int(round(_LFW_PASTE_FRACTION * size))
    o = (size - side) // 2
    up = _blur(cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC), 0.3 * side / 25.0)
    # background: a plain wall at the level of the crop's border with a soft vertical gradient;
    # the face is feathered onto it
    border = np.concatenate([face[0], face[-1], face[:, 0], face[:, -1]])
    level = float(np.clip(np.median(border), 0.3, 0.8))
    ramp = np.linspace(1.08, 0.92, size, dtype=np.float32)[:, None]
    bg = np.broadcast_to(level * ramp, (size, size)).astype(np.float32)
    alpha = np.zeros((size, size), np.float32)
    inset = max(1, side // 16)
    alpha[o + inset:o + side - inset, o + inset:o + side - inset] = 1.0
    alpha = _blur(alpha, side / 24.0)
    grey = bg.copy()
    grey[o:o + side, o:o + side] = up
    grey = np.clip(alpha * grey + (1.0 - alpha) * bg, 0.0, 1.0)
    # LFW crops are tight: the Haar box is ~0.96 of the pasted crop, centred on it
    box = (o + 0.02 * side, o + 0.02 * side, 0.96 * side, 0.96 * side)
    fx, fy = o + side / 2.0, o + side / 2.0
    gate = np.clip((grey - 0.18) / 0.15, 0.0, 1.0)  # no pulse on dark hair, brows, eyes, nostrils
    face_region = _ellipse(size, fx, fy + 0.06 * side, 0.40 * side, 0.50 * side)
    skin = np.clip(_blur(face_region * gate, size / 96.0), 0.0, 1.0)
    # colourise: skin pixels take the tone's colour (scaled by their grey level), the rest stay neutral;
    # inside the face (eyes, lips) a partial tint keeps the colour coherent
    skin_mean = float((grey * skin).sum() / max(float(skin.sum()), 1e-6))
    tint = (_tone_rgb(tone) / max(skin_mean, 1e-3)).astype(np.float32)
    neutral = np.array([0.98, 1.0, 1.03], np.float32)
    w = np.maximum(skin, 0.7 * _blur(face_region, size / 40.0))[..., None]
    albedo = np.clip(grey[..., None] * (w * tint + (1.0 - w) * neutral), 0.0, 1.0).astype(np.float32)
    name = f"lfw:{index}" + (":mirror" if mirror else "")
    return _Canvas(albedo, skin.astype(np.float32), _highlight_map(size, box, skin), (fx, fy), box, name, tone)


def _face_order(n_needed: int, rng: np.random.Generator) -> list[tuple[str, bool]]:
    """Candidate faces in the order they are tried: both full photos first, then shuffled LFW crops,
    then (if the pool runs out) the same again mirrored."""
    lfw = [f"lfw:{i}" for i in rng.permutation(100)]
    base = list(_HQ_FACES) + lfw
    order: list[tuple[str, bool]] = []
    mirror = False
    while len(order) < n_needed + len(base):
        order += [(name, mirror) for name in base]
        mirror = not mirror
    return order


# ------------------------------------------------------------------------------------------- signals


def _ppg(duration_s: float, fps: float, hr_bpm: float, seed: int, n: int) -> np.ndarray:
    """Clean neurokit2 PPG (spectral peak = HR), zero mean, unit std, ``n`` samples at ``fps``."""
    import neurokit2 as nk

    sr = int(round(fps))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ppg = nk.ppg_simulate(duration=int(math.ceil(duration_s)) + 2, sampling_rate=sr, heart_rate=hr_bpm,
                              frequency_modulation=0, ibi_randomness=0, drift=0, motion_amplitude=0,
                              powerline_amplitude=0, burst_number=0, random_state=seed)
    ppg = np.asarray(ppg, np.float64)
    if sr != fps:  # non-integer frame rate: resample onto the frame times
        t_src = np.arange(ppg.size) / sr
        ppg = np.interp(np.arange(n) / fps, t_src, ppg)
    ppg = ppg[:n]
    return (ppg - ppg.mean()) / (ppg.std() + 1e-12)


def _band_signal(t: np.ndarray, rng: np.random.Generator, f_lo: float, f_hi: float, k: int) -> np.ndarray:
    """A smooth random signal: ``k`` sinusoids with frequencies in [f_lo, f_hi] Hz, peak-normalised to 1."""
    f = rng.uniform(f_lo, f_hi, k)
    ph = rng.uniform(0, 2 * np.pi, k)
    a = rng.uniform(0.5, 1.0, k)
    s = (a[:, None] * np.sin(2 * np.pi * f[:, None] * t[None, :] + ph[:, None])).sum(0)
    return s / (np.abs(s).max() + 1e-12)


@dataclass
class _Signals:
    """Per-frame drivers of one subject."""

    ppg: np.ndarray  # (T,) normalised PPG (the label)
    pulse_rgb: np.ndarray  # (T, 3) relative pulsatile modulation per channel
    light: np.ndarray  # (T,) I(t)
    spec: np.ndarray  # (T,) S(t)
    affine: np.ndarray  # (T, 2, 3) warp matrices


def _signals(cfg: SyntheticRPPGConfig, canvas: _Canvas, hr: float, amp: float, ppg_seed: int,
             rng: np.random.Generator) -> _Signals:
    import cv2

    n = cfg.n_frames
    t = np.arange(n) / cfg.fps
    ppg = _ppg(cfg.duration_s, cfg.fps, hr, ppg_seed, n)
    pbv = np.asarray(PBV_SIGNATURE)
    pulse_rgb = amp * (pbv / pbv[1])[None, :] * (ppg / np.ptp(ppg))[:, None]
    drift = _band_signal(t, rng, 0.005, 0.12, 4)
    light = cfg.brightness * (1.0 + cfg.illumination_drift * drift
                              + cfg.flicker * np.sin(2 * np.pi * cfg.flicker_hz * t + rng.uniform(0, 2 * np.pi)))
    motion = np.zeros((4, n))
    for i in range(4):  # tx, ty, rotation, log-scale: drift + sway, peak-normalised
        motion[i] = 0.6 * _band_signal(t, rng, 0.005, 0.12, 3) + 0.4 * _band_signal(t, rng, 0.12, 0.3, 1)
    motion *= cfg.motion
    spec = cfg.specular * (1.0 + 0.5 * np.clip(0.5 * (motion[2] + motion[0]) / max(cfg.motion, 1e-9), -1, 1))
    affine = np.empty((n, 2, 3))
    for k in range(n):
        m = cv2.getRotationMatrix2D(canvas.centre, float(motion[2, k]), float(1.0 + 0.01 * motion[3, k]))
        m[:, 2] += motion[:2, k]
        affine[k] = m
    return _Signals(ppg, pulse_rgb.astype(np.float32), light.astype(np.float32), spec.astype(np.float32),
                    affine)


# ------------------------------------------------------------------------------------------ renderer


class _Renderer:
    """Renders the frames of one subject; frame ``t`` depends only on (subject seed, t)."""

    def __init__(self, cfg: SyntheticRPPGConfig, canvas: _Canvas, sig: _Signals, noise_seed: int) -> None:
        self.cfg, self.canvas, self.sig, self.noise_seed = cfg, canvas, sig, noise_seed
        self.size = cfg.frame_size
        self._skin3 = canvas.skin[..., None]
        self._light = np.asarray(cfg.light_rgb, np.float32) * 255.0
        self._hl3 = np.repeat(canvas.highlight[..., None], 3, axis=2)

    def frame(self, t: int) -> np.ndarray:
        import cv2

        c, s = self.canvas, self.sig
        lin = c.albedo * (1.0 + self._skin3 * s.pulse_rgb[t])
        lin += s.spec[t] * self._hl3
        lin = cv2.warpAffine(lin, s.affine[t], (self.size, self.size), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT_101)
        lin *= self._light * s.light[t]
        if self.cfg.camera_noise_std > 0:
            rng = np.random.default_rng([self.noise_seed, t])
            lin += rng.standard_normal(lin.shape, dtype=np.float32) * np.float32(self.cfg.camera_noise_std)
        return np.clip(np.rint(lin), 0, 255).astype(np.uint8)


def _render_subject(renderer: _Renderer, n_frames: int, pbar: Any = None) -> np.ndarray:
    """All frames of one subject, uint8 ``(T, S, S, 3)`` RGB."""
    out = np.empty((n_frames, renderer.size, renderer.size, 3), np.uint8)
    step = 0
    for t in range(n_frames):
        out[t] = renderer.frame(t)
        step += 1
        if pbar is not None and (step == 32 or t == n_frames - 1):
            pbar.update(step)
            step = 0
    return out


# ------------------------------------------------------------------------------------------- builder


def _canvas_for(name: str, mirror: bool, size: int, tone: float | None) -> _Canvas:
    if name in _HQ_FACES:
        canvas = _photo_canvas(name, size, tone)
        if mirror:
            canvas = _Canvas(canvas.albedo[:, ::-1].copy(), canvas.skin[:, ::-1].copy(),
                             canvas.highlight[:, ::-1].copy(), (size - canvas.centre[0], canvas.centre[1]),
                             (size - canvas.box[0] - canvas.box[2], *canvas.box[1:]), name + ":mirror", tone)
        return canvas
    return _lfw_canvas(int(name.split(":")[1]), size, tone, mirror)


def _subject_tone(cfg: SyntheticRPPGConfig, rng: np.random.Generator, grey: bool) -> float | None:
    draw = float(rng.uniform(1.0, 6.0))  # always drawn, so the stream does not depend on the setting
    if cfg.skin_tone == "mixed":
        return round(draw, 2)
    if cfg.skin_tone is not None:
        return float(cfg.skin_tone)
    return round(1.5 + (draw - 1.0) * 0.7, 2) if grey else None


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def is_complete(root: str | Path, config: SyntheticRPPGConfig | None = None) -> bool:
    """Whether ``root`` holds a finished synthetic-rppg dataset (of ``config`` and this generator version)."""
    root = Path(root)
    try:
        done = json.loads((root / _DONE).read_text())
    except (OSError, ValueError):
        return False
    if done.get("generator") != "synthetic-rppg" or done.get("generator_version") != GENERATOR_VERSION:
        return False
    if config is not None and done.get("config") != json.loads(json.dumps(asdict(config))):
        return False
    vid = video_name(done.get("config", {}).get("codec", "ffv1"))
    return all((root / s / vid).is_file() and (root / s / "ground_truth.txt").is_file()
               and (root / s / "meta.json").is_file() for s in done.get("subjects", []))


def _default_root(config: SyntheticRPPGConfig) -> Path:
    return cache_dir("synthetic-rppg") / f"v{GENERATOR_VERSION}-{config_hash(asdict(config))}"


def build_synthetic_rppg(config: SyntheticRPPGConfig | None = None, root: str | Path | None = None,
                         progress: bool = True) -> Path:
    """Generate the dataset (or reuse a finished one) and return its folder.

    ``root`` defaults to ``cache_dir("synthetic-rppg", f"v{GENERATOR_VERSION}-{config_hash}")``. A
    ``root`` that exists, is not empty and is not a synthetic-rppg dataset is refused (never overwritten).
    """
    from tqdm.auto import tqdm

    from mmtrust.data.video import write_video

    config = config or SyntheticRPPGConfig()
    config.validate()
    target = Path(root) if root is not None else _default_root(config)
    if is_complete(target, config):
        return target
    if target.exists() and any(target.iterdir()) and not (target / _DONE).is_file():
        raise FileExistsError(f"{target} exists and is not a synthetic-rppg dataset; refusing to overwrite it "
                              "(choose an empty or new folder)")
    cfg_dict = json.loads(json.dumps(asdict(config)))
    n, size, n_frames = config.n_subjects, config.frame_size, config.n_frames
    ss = np.random.SeedSequence([config.seed, 0x5EED])
    master = np.random.default_rng(ss.spawn(1)[0])
    order = _face_order(n, master)
    slots = master.permutation(n)  # face k goes to subject number slots[k] + 1
    subject_seeds = [int(s.generate_state(1)[0]) for s in ss.spawn(n + 1)[1:]]
    vid = video_name(config.codec)
    names: list[str] = []
    with atomic_dir(target) as tmp, tqdm(total=n * n_frames, unit="frame", disable=not progress,
                                         desc=f"synthetic-rppg ({n} subjects)", leave=False) as pbar:
        cursor = 0
        for k in range(n):
            number = int(slots[k]) + 1
            sseed = subject_seeds[number - 1]
            rng = np.random.default_rng(sseed)
            hr = round(float(rng.uniform(*config.hr_range_bpm)), 2)
            amp = config.pulse_amplitude * float(rng.uniform(0.8, 1.2))
            while True:  # first face of the pool (in order) that the Haar detector finds on frame 0
                name, mirror = order[cursor]
                cursor += 1
                tone = _subject_tone(config, np.random.default_rng([sseed, 1]), grey=name.startswith("lfw"))
                canvas = _canvas_for(name, mirror, size, tone)
                sig = _signals(config, canvas, hr, amp, sseed % (2**31), np.random.default_rng([sseed, 2]))
                renderer = _Renderer(config, canvas, sig, sseed)
                box0 = _haar_box(renderer.frame(0))
                if box0 is not None:
                    break
                if cursor >= len(order):  # pragma: no cover - the pool holds ~98 detectable faces
                    raise RuntimeError("no face of the pool is detectable at this frame size")
            frames = _render_subject(renderer, n_frames, pbar)
            sub = f"subject{number}"
            (tmp / sub).mkdir()
            write_video(tmp / sub / vid, frames, config.fps, codec=config.codec, crf=config.crf)
            times = np.arange(n_frames) / config.fps
            np.savetxt(tmp / sub / "ground_truth.txt", np.vstack([sig.ppg, np.full(n_frames, hr), times]))
            meta = {
                "dataset": "synthetic-rppg",
                "generator_version": GENERATOR_VERSION,
                "subject": sub,
                "hr_bpm": hr,
                "face_source": canvas.source,
                "skin_tone_fitzpatrick": tone,
                "pulse_amplitude": round(amp, 6),
                "pbv_signature": list(PBV_SIGNATURE),
                "face_box_frame0": list(box0),
                "skin_fraction": round(float(canvas.skin.mean()), 4),
                "fps": config.fps,
                "n_frames": n_frames,
                "frame_size": size,
                "video": vid,
                "codec": config.codec,
                "crf": config.crf,
                "domain": {k: cfg_dict[k] for k in ("motion", "brightness", "illumination_drift", "flicker",
                                                   "flicker_hz", "light_rgb", "specular", "camera_noise_std",
                                                   "skin_tone")},
                "seed": config.seed,
                "subject_seed": sseed,
            }
            (tmp / sub / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True,
                                                            default=_json_default) + "\n")
            names.append(sub)
        done = {"generator": "synthetic-rppg", "generator_version": GENERATOR_VERSION, "config": cfg_dict,
                "subjects": sorted(names, key=lambda s: int(s[len("subject"):]))}
        (tmp / _DONE).write_text(json.dumps(done, indent=2, sort_keys=True) + "\n")
    return target


# ---------------------------------------------------------------------------------------- registered

_LOADER_KEYS = ("box_coef", "dynamic_detection", "detection_stride", "split_fractions", "cache_dir")


@register_dataset(
    "synthetic-rppg", task="rppg", builtin=True, splits=("train", "val", "test", "all"),
    summary="Built-in rPPG videos made offline from real face photos + a Wang-2017 skin model with a "
            "known neurokit2 PPG (UBFC-rPPG layout)",
    presets=tuple(PRESETS), domains=tuple(DOMAINS),
)
def synthetic_rppg(root: str | Path | None = None, split: str = "all", preset: str = "quick",
                   domain: str | list[str] | None = None, image_size: int = 72, progress: bool = True,
                   **overrides: Any) -> Any:
    """Build (or reuse) the synthetic rPPG videos and return them as a :class:`UBFCrPPG` dataset.

    ``overrides`` are :class:`SyntheticRPPGConfig` fields (``n_subjects=4``, ``motion=0``, ...) or loader
    options (``box_coef``, ``dynamic_detection``, ``detection_stride``, ``split_fractions``, ``cache_dir``).
    """
    from mmtrust.data.rppg_datasets import UBFCrPPG

    loader_kw = {k: overrides.pop(k) for k in _LOADER_KEYS if k in overrides}
    config = make_config(preset, domain, **overrides)
    path = build_synthetic_rppg(config, root=root or None, progress=progress)  # "" (from "name:") = cache
    return UBFCrPPG(path, split=split, image_size=image_size, progress=progress, **loader_kw)
