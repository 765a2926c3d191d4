"""Classical (unsupervised) rPPG methods: GREEN, POS, CHROM, ICA, LGI and PBV.

Each method turns the per-frame spatial mean colour of a face crop into a pulse signal. The steps
follow the papers and, where the papers leave a choice open, rPPG-Toolbox
(https://github.com/ubicomplab/rPPG-Toolbox, ``unsupervised_methods/methods/``), which we use as the
peer implementation. The code here is written from the papers and from the spec notes
(``specs/rppg.md`` C.2); no toolbox code is copied.

Papers:
    GREEN  W. Verkruysse, L. O. Svaasand, J. S. Nelson, "Remote plethysmographic imaging using
           ambient light", Optics Express 16(26), 2008.
    POS    W. Wang, A. C. den Brinker, S. Stuijk, G. de Haan, "Algorithmic principles of remote
           PPG", IEEE TBME 64(7), 2017.
    CHROM  G. de Haan, V. Jeanne, "Robust pulse rate from chrominance-based rPPG", IEEE TBME
           60(10), 2013.
    ICA    M.-Z. Poh, D. J. McDuff, R. W. Picard, "Non-contact, automated cardiac pulse
           measurements using video imaging and blind source separation", Optics Express 18(10),
           2010.
    LGI    C. S. Pilz, S. Zaunseder, J. Krajewski, V. Blazek, "Local group invariance for heart
           rate estimation from face videos in the wild", CVPR Workshops, 2018.
    PBV    G. de Haan, A. van Leest, "Improved motion robustness of remote-PPG by using the blood
           volume pulse signature", Physiological Measurement 35(9), 2014.

Shape:
    Algorithms (numpy): ``rgb`` (T, 3) mean R, G, B per frame -> pulse (T,) (CHROM: (T',) with
    T' = (L/2)(n_windows + 1) <= T, see below).
    Registered models (torch): ``video`` (B, 3, T, H, W) raw RGB pixels -> (B, T) float32 pulse,
    on the input's device. The spatial mean is taken per frame, the algorithm runs on the CPU per
    batch item, and an output shorter than T (CHROM) is zero-padded at the end to T.

Example::

    >>> import torch, mmtrust.methods.rppg.unsupervised as U
    >>> model = U.POS(U.POSConfig())
    >>> pulse = model(torch.rand(2, 3, 300, 8, 8) * 255, fs=30.0)  # (2, 300)

Deviations (from the papers and from rPPG-Toolbox):
    * ICA uses scikit-learn's FastICA (3 sources, fixed ``random_state``) instead of JADE
      (rPPG-Toolbox) or Cardoso's JADE as in Poh 2010. The source is chosen by the highest
      normalised spectral peak *inside the pass band* (0.7-2.5 Hz); the toolbox searches the whole
      spectrum, Poh 2010 always took the second source.
    * POS keeps rPPG-Toolbox's window by default: for n = l .. T-1 it uses frames [n-l, n), which
      leaves out frame n, so the last window (the one ending on frame T-1) is never used. The
      paper's window ends on frame n inclusive; ``exclude_last=False`` gives it.
    * PBV mean-centres the normalised colour traces (C / mean - 1) so that Q = C C^T is the
      covariance matrix of the paper; rPPG-Toolbox uses C / mean without centring. The signature
      is estimated per video from the channel standard deviations as in the toolbox
      (``signature=None``), or fixed (the paper uses a measured signature, e.g. [0.33, 0.77, 0.53]).
    * CHROM's overlap-add output is (L/2)(n_windows + 1) samples; the models zero-pad it to T.
    * GREEN, LGI and PBV return unfiltered signals (as in the toolbox); the shared heart-rate
      estimation (:mod:`mmtrust.methods.rppg.postprocess`) detrends and band-passes every signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from mmtrust.methods.rppg.base import RPPGModel
from mmtrust.methods.rppg.postprocess import bandpass, detrend, next_pow2
from mmtrust.registry import Paper, register_method

__all__ = [
    "green", "pos", "chrom", "ica", "lgi", "pbv",
    "GreenConfig", "POSConfig", "CHROMConfig", "ICAConfig", "LGIConfig", "PBVConfig",
    "ClassicalRPPG", "GREEN", "POS", "CHROM", "ICA", "LGI", "PBV",
]

_TOOLBOX_URL = "https://github.com/ubicomplab/rPPG-Toolbox"
_LICENCE = "reimplemented from the paper; no code copied"


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _as_rgb(rgb, min_len: int = 2, what: str = "") -> np.ndarray:
    x = np.asarray(rgb, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"expected an RGB trace of shape (T, 3) (mean R, G, B per frame), got shape {x.shape}")
    if x.shape[0] < min_len:
        need = f" for {what}" if what else ""
        raise ValueError(f"expected at least {min_len} frames{need}, got T={x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("RGB trace contains NaN or infinite values")
    return x


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, with 0 where den == 0 (black frames, constant channels)."""
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast_shapes(np.shape(num), den.shape)), where=den != 0)


def _window_len(window_s: float, fs: float) -> int:
    if fs <= 0 or window_s <= 0:
        raise ValueError(f"expected fs > 0 and window_s > 0, got fs={fs}, window_s={window_s}")
    return int(math.ceil(window_s * fs))


# --------------------------------------------------------------------------------------------------
# algorithms (numpy)
# --------------------------------------------------------------------------------------------------
def green(rgb) -> np.ndarray:
    """GREEN (Verkruysse 2008): the mean green channel. Shape: (T, 3) -> (T,)."""
    return _as_rgb(rgb, min_len=1)[:, 1].copy()


def pos(
    rgb, fs: float, window_s: float = 1.6, exclude_last: bool = True, *,
    band: tuple[float, float] = (0.75, 3.0), filter_order: int = 1, detrend_lambda: float = 100.0,
) -> np.ndarray:
    """POS, plane orthogonal to skin (Wang et al. 2017). Shape: (T, 3) -> (T,).

    Sliding windows of ``l = ceil(window_s * fs)`` frames, hop 1: temporal normalisation by the window
    mean, projection ``S = [[0, 1, -1], [-2, 1, 1]] C``, alpha tuning ``h = S1 + std(S1)/std(S2) S2``,
    mean removal, overlap-add; then smoothness-priors detrend and a zero-phase Butterworth band-pass.
    ``exclude_last=True`` is rPPG-Toolbox's window (see the module docstring).
    """
    l_win = _window_len(window_s, fs)
    x = _as_rgb(rgb, min_len=l_win + int(exclude_last), what=f"a POS window of {window_s} s at {fs} Hz")
    t = x.shape[0]
    win = sliding_window_view(x, l_win, axis=0)  # (T-l+1, 3, l): window m covers frames m .. m+l-1
    if exclude_last:
        win = win[:-1]  # (T-l, 3, l): the toolbox never uses the window ending on the last frame
    cn = _safe_div(win, win.mean(axis=2, keepdims=True))  # (W, 3, l) temporally normalised
    s1 = cn[:, 1] - cn[:, 2]  # (W, l)   G - B
    s2 = -2.0 * cn[:, 0] + cn[:, 1] + cn[:, 2]  # (W, l)   -2R + G + B
    alpha = _safe_div(s1.std(axis=1), s2.std(axis=1))  # (W,)
    h = s1 + alpha[:, None] * s2  # (W, l)
    h -= h.mean(axis=1, keepdims=True)
    n_win = h.shape[0]
    out = np.zeros(t)
    for k in range(l_win):  # overlap-add, hop 1: loop over the window offset, not over T
        out[k:k + n_win] += h[:, k]
    out = detrend(out, detrend_lambda)
    return bandpass(out, fs, band, filter_order)


def chrom(
    rgb, fs: float, window_s: float = 1.6, *, band: tuple[float, float] = (0.7, 2.5), filter_order: int = 3,
) -> np.ndarray:
    """CHROM, chrominance-based rPPG (de Haan & Jeanne 2013). Shape: (T, 3) -> (T',), T' <= T.

    Windows of ``L = ceil(window_s * fs)`` frames rounded up to even, hop L/2. Per window: normalise by
    the window mean, ``X = 3R - 2G``, ``Y = 1.5R + G - 1.5B``, band-pass both (Butterworth, zero
    phase), ``S = Xf - (std Xf / std Yf) Yf``, Hann window, overlap-add. The output has
    ``(L/2)(n_windows + 1)`` samples with ``n_windows = floor((T - L/2) / (L/2))``.
    """
    l_win = _window_len(window_s, fs)
    l_win += l_win % 2
    half = l_win // 2
    x = _as_rgb(rgb, min_len=l_win, what=f"a CHROM window of {window_s} s at {fs} Hz")
    n_win = (x.shape[0] - half) // half
    starts = np.arange(n_win) * half
    win = sliding_window_view(x, l_win, axis=0)[starts]  # (n_win, 3, L)
    cn = _safe_div(win, win.mean(axis=2, keepdims=True))  # (n_win, 3, L)
    xs = 3.0 * cn[:, 0] - 2.0 * cn[:, 1]  # (n_win, L)
    ys = 1.5 * cn[:, 0] + cn[:, 1] - 1.5 * cn[:, 2]  # (n_win, L)
    xf = bandpass(xs, fs, band, filter_order, axis=1)
    yf = bandpass(ys, fs, band, filter_order, axis=1)
    alpha = _safe_div(xf.std(axis=1), yf.std(axis=1))  # (n_win,)
    sw = (xf - alpha[:, None] * yf) * np.hanning(l_win)  # (n_win, L)
    out = np.zeros((n_win + 1, half))  # blocks of L/2 samples
    out[:-1] += sw[:, :half]  # window i's first half lands on block i
    out[1:] += sw[:, half:]  # ... its second half on block i + 1
    return out.reshape(-1)  # ((n_win + 1) * L/2,)


def _band_peak_ratio(source: np.ndarray, fs: float, band: tuple[float, float]) -> float:
    """Largest in-band power of ``source``'s periodogram, normalised by its total power."""
    spec = np.abs(np.fft.rfft(source, n=next_pow2(source.size))) ** 2
    freqs = np.fft.rfftfreq(next_pow2(source.size), d=1.0 / fs)
    spec[0] = 0.0  # ignore DC
    total = spec.sum()
    mask = (freqs >= band[0]) & (freqs <= band[1])
    if total <= 0 or not mask.any():
        return 0.0
    return float(spec[mask].max() / total)


def ica(
    rgb, fs: float, *, band: tuple[float, float] = (0.7, 2.5), filter_order: int = 3,
    detrend_lambda: float = 100.0, random_state: int = 0, max_iter: int = 1000,
) -> np.ndarray:
    """ICA (Poh et al. 2010) with FastICA. Shape: (T, 3) -> (T,).

    Detrend and z-score each channel, unmix three sources, keep the one whose normalised power
    spectrum has the highest peak inside ``band``, band-pass it (Butterworth order 3).
    """
    from sklearn.decomposition import FastICA

    x = _as_rgb(rgb, min_len=8, what="ICA")
    x = detrend(x, detrend_lambda)  # (T, 3)
    x = _safe_div(x - x.mean(axis=0), x.std(axis=0))  # (T, 3) z-scored
    sources = FastICA(
        n_components=3, whiten="unit-variance", random_state=random_state, max_iter=max_iter
    ).fit_transform(x)  # (T, 3)
    scores = [_band_peak_ratio(sources[:, c], fs, band) for c in range(3)]
    return bandpass(sources[:, int(np.argmax(scores))], fs, band, filter_order)


def lgi(rgb) -> np.ndarray:
    """LGI, local group invariance (Pilz et al. 2018). Shape: (T, 3) -> (T,).

    Projects the RGB trace onto the orthogonal complement of its first left singular vector (the
    dominant, mostly skin-tone and intensity, direction) and keeps the green row.
    """
    x = _as_rgb(rgb, min_len=2).T  # (3, T)
    u, _, _ = np.linalg.svd(x, full_matrices=False)  # u: (3, 3)
    s = u[:, :1]  # (3, 1)
    proj = np.eye(3) - s @ s.T  # (3, 3)
    return (proj @ x)[1]  # (T,)


def pbv(rgb, signature: tuple[float, float, float] | None = None) -> np.ndarray:
    """PBV, blood-volume-pulse signature (de Haan & van Leest 2014). Shape: (T, 3) -> (T,).

    ``W = Q^-1 Pbv`` with ``Q = Cn Cn^T`` (Cn: mean-normalised, centred traces), pulse
    ``S = W^T Cn / (Pbv^T W)``. ``signature=None`` estimates Pbv from the channel standard deviations
    (rPPG-Toolbox); otherwise it is normalised to unit length and used as given.
    """
    x = _as_rgb(rgb, min_len=4, what="PBV")
    cn = _safe_div(x, x.mean(axis=0)) - 1.0  # (T, 3)
    sig = cn.std(axis=0) if signature is None else np.asarray(signature, dtype=np.float64).reshape(3)
    norm = np.linalg.norm(sig)
    if norm == 0:
        return np.zeros(x.shape[0])
    sig = sig / norm  # (3,)
    q = cn.T @ cn  # (3, 3)
    w = np.linalg.lstsq(q, sig, rcond=None)[0]  # (3,), least squares handles a singular Q
    den = float(sig @ w)
    return cn @ w / den if den != 0 else cn @ w  # (T,)


# --------------------------------------------------------------------------------------------------
# registered models (torch)
# --------------------------------------------------------------------------------------------------
class ClassicalRPPG(RPPGModel):
    """Shared forward of the classical methods; subclasses define ``algorithm(rgb, fs)``.

    Shape:
        video: (B, 3, T, H, W) raw RGB pixels -> (B, T) float32 pulse (shorter outputs zero-padded).
    """

    input_type = "raw"
    output_type = "raw"
    chunk_length = None
    #: the method's config dataclass; ``cfg=None`` builds its defaults (the paper configuration)
    config_cls: type | None = None

    def __init__(self, cfg=None) -> None:
        if cfg is None and self.config_cls is not None:
            cfg = self.config_cls()
        super().__init__(cfg)

    def algorithm(self, rgb: np.ndarray, fs: float) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def from_rgb(self, rgb, fs: float = 30.0) -> np.ndarray:
        """Run the algorithm on mean-RGB traces. Shape: (T, 3) -> (T,) or (B, T, 3) -> (B, T)."""
        arr = rgb.detach().cpu().double().numpy() if torch.is_tensor(rgb) else np.asarray(rgb, dtype=np.float64)
        if arr.ndim == 2:
            return self.from_rgb(arr[None], fs)[0]
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"expected mean-RGB traces of shape (B, T, 3) or (T, 3), got shape {arr.shape}")
        t = arr.shape[1]
        out = np.zeros((arr.shape[0], t))  # (B, T)
        for i, trace in enumerate(arr):
            y = np.asarray(self.algorithm(trace, float(fs)), dtype=np.float64)[:t]  # (<= T,)
            out[i, : y.size] = y
        return out

    def forward(self, video: torch.Tensor, fs: float = 30.0) -> torch.Tensor:
        if not torch.is_tensor(video):
            video = torch.as_tensor(video)
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(
                f"{type(self).__name__}: expected a video of shape (B, 3, T, H, W) with 3 RGB channels, "
                f"got shape {tuple(video.shape)}"
            )
        rgb = video.detach().to(torch.float64).mean(dim=(3, 4)).permute(0, 2, 1)  # (B, T, 3)
        pulse = self.from_rgb(rgb, fs)  # (B, T)
        return torch.from_numpy(pulse.astype(np.float32)).to(video.device)

    def extra_repr(self) -> str:
        return repr(self.cfg)


def _paper(title: str, venue: str, year: int, verified: tuple[str, ...], inferred: tuple[str, ...]) -> Paper:
    return Paper(title=title, venue=venue, year=year, arxiv=None, code_url=_TOOLBOX_URL, licence=_LICENCE,
                 verified=verified, inferred=inferred)


@dataclass
class GreenConfig:
    """GREEN has no parameters."""


@register_method(
    "green", config=GreenConfig, family="rppg", task="rppg", presets={"tiny": {}}, trainable=False,
    default_data="synthetic-rppg",
    paper=_paper(
        "Remote plethysmographic imaging using ambient light", "Optics Express", 2008,
        verified=("the pulse is the spatial mean of the green channel (rPPG-Toolbox GREEN)",),
        inferred=("no filtering inside the method; the shared HR estimation detrends and band-passes",),
    ),
)
class GREEN(ClassicalRPPG):
    """GREEN (Verkruysse et al. 2008): mean green channel."""

    config_cls = GreenConfig

    def algorithm(self, rgb, fs):
        return green(rgb)


@dataclass
class POSConfig:
    window_s: float = 1.6
    exclude_last: bool = True  # rPPG-Toolbox's window; False = the paper's window (ends on frame n)
    band: tuple[float, float] = (0.75, 3.0)
    filter_order: int = 1
    detrend_lambda: float = 100.0


@register_method(
    "pos", config=POSConfig, family="rppg", task="rppg", presets={"tiny": {}}, trainable=False,
    default_data="synthetic-rppg",
    paper=_paper(
        "Algorithmic principles of remote PPG", "IEEE TBME", 2017,
        verified=(
            "window ceil(1.6 s * fs) (48 frames at 30 fps), hop 1, overlap-add (rPPG-Toolbox POS_WANG)",
            "projection [[0, 1, -1], [-2, 1, 1]] and alpha = std(S1)/std(S2)",
            "detrend lambda = 100, Butterworth order 1, 0.75-3.0 Hz, filtfilt",
            "toolbox window leaves out frame n (exclude_last=True)",
        ),
        inferred=("division by a zero window mean or zero std gives 0 instead of NaN",),
    ),
)
class POS(ClassicalRPPG):
    """POS (Wang et al. 2017): plane orthogonal to skin."""

    config_cls = POSConfig

    def algorithm(self, rgb, fs):
        c = self.cfg
        return pos(rgb, fs, c.window_s, c.exclude_last, band=tuple(c.band), filter_order=c.filter_order,
                   detrend_lambda=c.detrend_lambda)


@dataclass
class CHROMConfig:
    window_s: float = 1.6
    band: tuple[float, float] = (0.7, 2.5)
    filter_order: int = 3


@register_method(
    "chrom", config=CHROMConfig, family="rppg", task="rppg", presets={"tiny": {}}, trainable=False,
    default_data="synthetic-rppg",
    paper=_paper(
        "Robust pulse rate from chrominance-based rPPG", "IEEE TBME", 2013,
        verified=(
            "window ceil(1.6 s * fs) rounded up to even, hop L/2 (rPPG-Toolbox CHROME_DEHAAN)",
            "X = 3R - 2G, Y = 1.5R + G - 1.5B; Butterworth order 3, 0.7-2.5 Hz per window",
            "alpha = std(Xf)/std(Yf), Hann window, overlap-add; output (L/2)(n_windows + 1) samples",
        ),
        inferred=("the shorter output is zero-padded to T by the model",),
    ),
)
class CHROM(ClassicalRPPG):
    """CHROM (de Haan & Jeanne 2013): chrominance-based rPPG."""

    config_cls = CHROMConfig

    def algorithm(self, rgb, fs):
        c = self.cfg
        return chrom(rgb, fs, c.window_s, band=tuple(c.band), filter_order=c.filter_order)


@dataclass
class ICAConfig:
    band: tuple[float, float] = (0.7, 2.5)
    filter_order: int = 3
    detrend_lambda: float = 100.0
    random_state: int = 0
    max_iter: int = 1000


@register_method(
    "ica", config=ICAConfig, family="rppg", task="rppg", presets={"tiny": {}}, trainable=False,
    default_data="synthetic-rppg",
    paper=_paper(
        "Non-contact, automated cardiac pulse measurements using video imaging and blind source separation",
        "Optics Express", 2010,
        verified=(
            "detrend (lambda = 100), z-score, 3 sources, pick the highest normalised spectral peak, "
            "Butterworth order 3, 0.7-2.5 Hz (rPPG-Toolbox ICA_POH)",
        ),
        inferred=(
            "FastICA (scikit-learn, fixed random_state) instead of JADE",
            "peak searched inside the pass band rather than over the whole spectrum",
        ),
    ),
)
class ICA(ClassicalRPPG):
    """ICA (Poh et al. 2010): blind source separation of the RGB traces."""

    config_cls = ICAConfig

    def algorithm(self, rgb, fs):
        c = self.cfg
        return ica(rgb, fs, band=tuple(c.band), filter_order=c.filter_order, detrend_lambda=c.detrend_lambda,
                   random_state=c.random_state, max_iter=c.max_iter)


@dataclass
class LGIConfig:
    """LGI has no parameters."""


@register_method(
    "lgi", config=LGIConfig, family="rppg", task="rppg", presets={"tiny": {}}, trainable=False,
    default_data="synthetic-rppg",
    paper=_paper(
        "Local group invariance for heart rate estimation from face videos in the wild", "CVPR Workshops", 2018,
        verified=("project out the first SVD component of the RGB trace, keep the G row (rPPG-Toolbox LGI)",),
        inferred=("one projection over the whole video (no sliding window)",),
    ),
)
class LGI(ClassicalRPPG):
    """LGI (Pilz et al. 2018): local group invariance."""

    config_cls = LGIConfig

    def algorithm(self, rgb, fs):
        return lgi(rgb)


@dataclass
class PBVConfig:
    signature: tuple[float, float, float] | None = None  # None: estimated per video (rPPG-Toolbox)


@register_method(
    "pbv", config=PBVConfig, family="rppg", task="rppg", presets={"tiny": {}}, trainable=False,
    default_data="synthetic-rppg",
    paper=_paper(
        "Improved motion robustness of remote-PPG by using the blood volume pulse signature",
        "Physiological Measurement", 2014,
        verified=("W = Q^-1 Pbv, pulse = W^T Cn / (Pbv^T W), signature from channel std (rPPG-Toolbox PBV)",),
        inferred=("traces are mean-centred after normalisation (the toolbox does not centre)",),
    ),
)
class PBV(ClassicalRPPG):
    """PBV (de Haan & van Leest 2014): blood-volume-pulse signature."""

    config_cls = PBVConfig

    def algorithm(self, rgb, fs):
        sig = self.cfg.signature
        return pbv(rgb, None if sig is None else tuple(sig))
