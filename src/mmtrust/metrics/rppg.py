"""Remote photoplethysmography (rPPG) metrics.

Heart-rate level (:func:`hr_metrics`) follows the definitions of rPPG-Toolbox
``evaluation/metrics.py``: one predicted and one ground-truth heart rate (bpm) per clip /
window; standard errors use the population std (``ddof=0``) as the toolbox does.

Signal level: :func:`snr_db` (spectral SNR of a predicted pulse around the ground-truth HR
and its first harmonic, de Haan & Jeanne 2013 style) and :func:`macc` (maximum absolute
cross-correlation over circular lags).

Inputs may be numpy arrays, lists or torch tensors; everything is computed in float64.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy.signal import periodogram
from scipy.stats import pearsonr

__all__ = ["hr_metrics", "macc", "snr_db"]


def _as_1d(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        arr = np.squeeze(arr)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D with shape (N,), got shape {np.shape(x)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; expected finite values")
    return arr


def hr_metrics(hr_pred: Any, hr_gt: Any) -> dict[str, float]:
    """Heart-rate errors between ``hr_pred`` and ``hr_gt`` (bpm, shape ``(N,)`` each).

    Returns MAE, MAE_SE = std(|d|)/sqrt(n), RMSE, RMSE_SE = sqrt(std(d**2)/sqrt(n)),
    MAPE = 100*mean(|d|/gt) (percent), MAPE_SE = 100*std(|d|/gt)/sqrt(n), Pearson r
    (scipy) and Pearson_SE = sqrt((1-r**2)/(n-2)), with d = pred - gt. Pearson is NaN with
    a ``RuntimeWarning`` saying why when n < 2 or either input is constant; Pearson_SE is
    NaN when n <= 2.
    """
    p, g = _as_1d(hr_pred, "hr_pred"), _as_1d(hr_gt, "hr_gt")
    if p.shape != g.shape:
        raise ValueError(f"hr_pred and hr_gt must have the same length, got {p.shape[0]} and {g.shape[0]}")
    n = p.shape[0]
    if n == 0:
        raise ValueError("hr_pred and hr_gt are empty; expected at least one heart rate")
    if np.any(g <= 0):
        raise ValueError("hr_gt must be positive heart rates in bpm (MAPE divides by it)")
    d = p - g
    ad, sq, rel = np.abs(d), d**2, np.abs(d) / g
    root_n = math.sqrt(n)
    out = {
        "MAE": float(ad.mean()),
        "MAE_SE": float(ad.std() / root_n),
        "RMSE": float(math.sqrt(sq.mean())),
        "RMSE_SE": float(math.sqrt(sq.std() / root_n)),
        "MAPE": float(100.0 * rel.mean()),
        "MAPE_SE": float(100.0 * rel.std() / root_n),
    }
    reason = None
    if n < 2:
        reason = f"Pearson r needs at least 2 heart rates, got {n}"
    elif np.ptp(p) == 0 or np.ptp(g) == 0:
        reason = "Pearson r is undefined because hr_pred or hr_gt is constant"
    if reason is not None:
        warnings.warn(reason + "; reporting NaN", RuntimeWarning, stacklevel=2)
        r = float("nan")
    else:
        r = float(pearsonr(p, g)[0])
    out["Pearson"] = r
    out["Pearson_SE"] = float(math.sqrt(max(1.0 - r**2, 0.0) / (n - 2))) if n > 2 and r == r else float("nan")
    return out


def snr_db(
    pulse: Any,
    hr_gt_bpm: float,
    fs: float,
    band: tuple[float, float] = (0.6, 3.3),
    tolerance_bpm: float = 6.0,
) -> float:
    """Spectral SNR (dB) of a predicted pulse ``(T,)`` sampled at ``fs`` Hz.

    The periodogram (mean removed, ``nfft`` = next power of two >= T) is split into
    signal = bins within ``tolerance_bpm`` of f0 = hr/60 Hz or of 2*f0 (not restricted to
    ``band``, as in rPPG-Toolbox), and noise = the other bins inside ``band`` (Hz).
    Returns ``10*log10(signal/noise)``, a power ratio, as the current rPPG-Toolbox does
    (``power2db``); PhysMamba's older fork applied ``20*log10`` to the same ratio, so its SNRs are
    twice ours. ``inf`` / ``-inf`` when noise / signal power is zero. The mean is removed before
    the periodogram (the toolbox does not; the difference measured on 100 random cases was
    below 0.07 dB).
    """
    x = _as_1d(pulse, "pulse")
    if x.shape[0] < 2:
        raise ValueError(f"pulse must have at least 2 samples, got {x.shape[0]}")
    if hr_gt_bpm <= 0 or fs <= 0:
        raise ValueError(f"hr_gt_bpm and fs must be positive, got {hr_gt_bpm} and {fs}")
    nfft = 1 << (x.shape[0] - 1).bit_length()
    f, pxx = periodogram(x, fs=fs, nfft=nfft, detrend="constant")
    f0, dev = hr_gt_bpm / 60.0, tolerance_bpm / 60.0
    sig = (np.abs(f - f0) <= dev) | (np.abs(f - 2 * f0) <= dev)
    noise = (f >= band[0]) & (f <= band[1]) & ~sig
    p_sig, p_noise = float(pxx[sig].sum()), float(pxx[noise].sum())
    if p_noise == 0:
        return float("inf") if p_sig > 0 else float("nan")
    if p_sig == 0:
        return float("-inf")
    return float(10.0 * math.log10(p_sig / p_noise))


def macc(pred: Any, gt: Any, max_lag: int | None = None) -> float:
    """Maximum absolute Pearson correlation between ``pred`` and ``gt`` over circular lags.

    ``pred``/``gt``: ``(T,)``; the longer one is truncated to the shorter (as rPPG-Toolbox
    does). Lags run over ``-max_lag..max_lag`` circular shifts of ``gt`` (default
    ``T // 2``, which covers every circular shift). Computed with an FFT; NaN if either
    signal is constant.
    """
    a, b = _as_1d(pred, "pred"), _as_1d(gt, "gt")
    n = min(a.shape[0], b.shape[0])
    if n < 2:
        raise ValueError(f"macc needs at least 2 samples, got {n}")
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    if denom == 0:
        return float("nan")
    # xc[k] = sum_t a[t] * b[t - k] = <a, roll(b, k)>
    xc = np.fft.irfft(np.fft.rfft(a) * np.conj(np.fft.rfft(b)), n=n)
    lag = n // 2 if max_lag is None else min(int(max_lag), n // 2)
    ks = np.arange(-lag, lag + 1) % n
    return float(np.max(np.abs(xc[ks])) / denom)
