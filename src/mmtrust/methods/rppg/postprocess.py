"""From a pulse signal to a heart rate, the same way for every rPPG method.

Every rPPG method (classical or neural) hands its (T,) pulse signal to :func:`estimate_hr`, so the
numbers they report are computed identically. The steps follow rPPG-Toolbox's evaluation
(``evaluation/post_process.py``):

1. if the signal is a derivative (DiffNormalized output): cumulative sum;
2. smoothness-priors detrending (Tarvainen et al. 2002, lambda = 100);
3. zero-phase Butterworth band-pass (order 1, ``filtfilt``);
4. heart rate from the spectral peak inside the band (periodogram or Welch) or from peak intervals.

Two published settings are pinned as factories, because their numbers are not comparable:

* :meth:`HRConfig.toolbox` -- rPPG-Toolbox today: 0.6-3.3 Hz, periodogram with the next power of two.
* :meth:`HRConfig.physmamba` -- the PhysMamba fork of the toolbox: 0.75-2.5 Hz, Welch
  (``nperseg = min(T - 1, 256)``, ``nfft >= 1e5 / fs``).

Shape:
    signal: (T,) float, one video (or one window of it); fs in Hz.
    estimate_hr -> float bpm; windowed_hr -> (n_windows,) bpm.

Reference:
    M. P. Tarvainen, P. O. Ranta-aho, P. A. Karjalainen, "An advanced detrending method with
    application to HRV analysis", IEEE TBME 49(2), 2002.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps
from scipy import sparse
from scipy.sparse.linalg import spsolve

__all__ = [
    "HRConfig",
    "detrend",
    "bandpass",
    "next_pow2",
    "power_spectrum",
    "preprocess_pulse",
    "estimate_hr",
    "windowed_hr",
    "ESTIMATORS",
]

ESTIMATORS = ("fft", "welch", "peak")


def next_pow2(n: int) -> int:
    """Smallest power of two >= ``n`` (1 for ``n <= 1``)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def _as_signal(x, name: str = "signal") -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D signal of shape (T,), got shape {arr.shape}")
    return arr


def detrend(signal, lam: float = 100.0) -> np.ndarray:
    """Smoothness-priors detrending (Tarvainen et al. 2002).

    Returns ``z - (I + lam**2 D2^T D2)^-1 z`` where ``D2`` is the second-difference operator, i.e. the
    signal minus a smooth trend. ``lam = 100`` is what rPPG-Toolbox uses (its formula squares lambda
    too). The system is pentadiagonal and solved sparsely: O(T) memory and time, so 10^4-10^5 samples
    take milliseconds.

    Shape:
        signal: (T,) or (T, C) (each column detrended); returns the same shape, float64.
    """
    z = np.asarray(signal, dtype=np.float64)
    if z.ndim not in (1, 2):
        raise ValueError(f"detrend: expected shape (T,) or (T, C), got {z.shape}")
    t = z.shape[0]
    if t < 3:  # no second differences: the best smooth trend is the signal itself minus nothing
        return z - z.mean(axis=0, keepdims=True)
    ones = np.ones(t - 2)
    d2 = sparse.diags([ones, -2.0 * ones, ones], [0, 1, 2], shape=(t - 2, t), format="csc")  # (T-2, T)
    system = (sparse.identity(t, format="csc") + (lam**2) * (d2.T @ d2)).tocsc()  # (T, T), 5 bands
    trend = spsolve(system, z)
    return z - np.asarray(trend).reshape(z.shape)


def _check_band(band, fs: float) -> tuple[float, float]:
    lo, hi = (float(b) for b in band)
    nyq = 0.5 * float(fs)
    if not 0.0 < lo < hi < nyq:
        raise ValueError(
            f"band-pass: expected 0 < low < high < fs/2 = {nyq:g} Hz, got band=({lo:g}, {hi:g}) at fs={fs:g} Hz"
        )
    return lo, hi


def bandpass(signal, fs: float, band: tuple[float, float] = (0.6, 3.3), order: int = 1, axis: int = 0) -> np.ndarray:
    """Zero-phase Butterworth band-pass (``scipy.signal.filtfilt``).

    For signals shorter than filtfilt's default padding (``3 * (2 * order + 1)`` samples) the padding
    is shortened to ``T - 1`` instead of failing.

    Shape:
        signal: (T,) or any array with time on ``axis``; returns the same shape, float64.
    """
    x = np.asarray(signal, dtype=np.float64)
    lo, hi = _check_band(band, fs)
    n = x.shape[axis]
    if n < 2:
        raise ValueError(f"band-pass: expected at least 2 samples along axis {axis}, got {n}")
    b, a = sps.butter(int(order), [lo / (0.5 * fs), hi / (0.5 * fs)], btype="bandpass")
    padlen = min(3 * max(len(a), len(b)), n - 1)
    return sps.filtfilt(b, a, x, axis=axis, padlen=padlen)


@dataclass
class HRConfig:
    """How a heart rate is read from a pulse signal (see the module docstring).

    ``estimator``: ``"fft"`` (periodogram, nfft = next power of two of T, or ``fft_pad_to`` if
    larger), ``"welch"`` (Welch, ``nperseg = min(T - 1, 256)``, ``nfft = max(next_pow2(T), 1e5 / fs)``)
    or ``"peak"`` (``scipy.signal.find_peaks``; 60 / mean peak interval).
    """

    band: tuple[float, float] = (0.6, 3.3)
    filter_order: int = 1
    estimator: str = "fft"
    detrend_lambda: float = 100.0
    fft_pad_to: int | None = None

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"HRConfig.estimator: expected one of {ESTIMATORS}, got {self.estimator!r}")
        if len(tuple(self.band)) != 2 or not 0 < float(self.band[0]) < float(self.band[1]):
            raise ValueError(f"HRConfig.band: expected (low_hz, high_hz) with 0 < low < high, got {self.band!r}")

    @classmethod
    def toolbox(cls) -> HRConfig:
        """rPPG-Toolbox (current): 0.6-3.3 Hz, order-1 Butterworth, periodogram peak."""
        return cls(band=(0.6, 3.3), filter_order=1, estimator="fft", detrend_lambda=100.0)

    @classmethod
    def physmamba(cls) -> HRConfig:
        """PhysMamba's fork of the toolbox: 0.75-2.5 Hz (45-150 bpm), order-1 Butterworth, Welch peak."""
        return cls(band=(0.75, 2.5), filter_order=1, estimator="welch", detrend_lambda=100.0)

    @classmethod
    def named(cls, name: str) -> HRConfig:
        """``"toolbox"`` or ``"physmamba"``."""
        factories = {"toolbox": cls.toolbox, "physmamba": cls.physmamba}
        if name not in factories:
            raise ValueError(f"unknown HR setting {name!r}; expected one of {sorted(factories)}")
        return factories[name]()

    def replace(self, **changes) -> HRConfig:
        return dataclasses.replace(self, **changes)


def preprocess_pulse(signal, fs: float, diff: bool = False, config: HRConfig | None = None) -> np.ndarray:
    """cumsum (if ``diff``) -> detrend -> band-pass; the signal :func:`estimate_hr` reads (for plots too).

    Shape:
        signal: (T,); returns (T,) float64.
    """
    cfg = config or HRConfig()
    x = _as_signal(signal)
    if x.size < 2:
        raise ValueError(f"expected a pulse signal of at least 2 samples, got {x.size}")
    if diff:
        x = np.cumsum(x)
    x = detrend(x, cfg.detrend_lambda)
    return bandpass(x, fs, cfg.band, cfg.filter_order)


def power_spectrum(signal, fs: float, nfft: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Periodogram (no detrending, boxcar window), ``nfft`` = next power of two of T by default.

    Shape:
        signal: (T,); returns (freqs_hz (F,), power (F,)) with F = nfft // 2 + 1.
    """
    x = _as_signal(signal)
    n = max(int(nfft) if nfft else next_pow2(x.size), x.size)
    return sps.periodogram(x, fs=fs, nfft=n, detrend=False)


def _peak_in_band(freqs: np.ndarray, power: np.ndarray, band: tuple[float, float]) -> float:
    mask = (freqs >= band[0]) & (freqs <= band[1])
    if not mask.any():
        return float("nan")
    return float(freqs[mask][np.argmax(power[mask])] * 60.0)


def _hr_fft(x: np.ndarray, fs: float, cfg: HRConfig) -> float:
    nfft = next_pow2(x.size)
    if cfg.fft_pad_to:
        nfft = max(nfft, int(cfg.fft_pad_to))
    freqs, power = power_spectrum(x, fs, nfft)
    return _peak_in_band(freqs, power, cfg.band)


def _hr_welch(x: np.ndarray, fs: float, cfg: HRConfig) -> float:
    nperseg = max(1, min(x.size - 1, 256))
    nfft = max(next_pow2(x.size), int(1e5 / fs), nperseg)
    if cfg.fft_pad_to:
        nfft = max(nfft, int(cfg.fft_pad_to))
    freqs, power = sps.welch(x, fs=fs, nperseg=nperseg, nfft=nfft)
    return _peak_in_band(freqs, power, cfg.band)


def _hr_peak(x: np.ndarray, fs: float, cfg: HRConfig) -> float:
    peaks, _ = sps.find_peaks(x)
    if peaks.size < 2:  # no interval to measure
        return float("nan")
    return float(60.0 / (np.mean(np.diff(peaks)) / fs))


_ESTIMATOR_FNS = {"fft": _hr_fft, "welch": _hr_welch, "peak": _hr_peak}


def estimate_hr(signal, fs: float, *, diff: bool = False, config: HRConfig | None = None) -> float:
    """Heart rate in beats per minute of one pulse signal.

    ``diff=True`` for derivative-like signals (DiffNormalized model outputs and labels): they are
    integrated first. Returns ``nan`` when the ``"peak"`` estimator finds fewer than two peaks.
    """
    cfg = config or HRConfig()
    if cfg.estimator not in _ESTIMATOR_FNS:
        raise ValueError(f"HRConfig.estimator: expected one of {ESTIMATORS}, got {cfg.estimator!r}")
    x = preprocess_pulse(signal, fs, diff=diff, config=cfg)
    return _ESTIMATOR_FNS[cfg.estimator](x, float(fs), cfg)


def windowed_hr(
    signal, fs: float, window_s: float = 10.0, *, diff: bool = False, config: HRConfig | None = None,
    min_samples: int = 9,
) -> np.ndarray:
    """Heart rate per non-overlapping window, as rPPG-Toolbox's ``USE_SMALLER_WINDOW``.

    Windows are ``int(window_s * fs)`` samples from the start; a trailing window shorter than
    ``min_samples`` (9, as in the toolbox) is skipped. Each window is processed on its own (cumsum,
    detrend, band-pass, estimator).

    Shape:
        signal: (T,); returns (n_windows,) bpm.
    """
    x = _as_signal(signal)
    size = int(window_s * fs)
    if size < 1:
        raise ValueError(f"windowed_hr: window_s * fs must be at least 1 sample, got {window_s} s at {fs} Hz")
    out = [
        estimate_hr(x[start:start + size], fs, diff=diff, config=config)
        for start in range(0, x.size, size)
        if x[start:start + size].size >= min_samples
    ]
    return np.asarray(out, dtype=np.float64)
