"""Differentiable heart-rate spectra and 1-D Wasserstein distances between them (the FWD loss of SFDA-rPPG).

* :func:`band_psd` -- the power spectrum of a pulse signal on a heart-rate grid (default 40-179 bpm in
  1-bpm steps, 140 bins, 0.667-2.983 Hz), normalised to sum 1 so that it is a probability distribution
  over heart rates. ``method="dft"`` evaluates the Hann-windowed DFT at exactly the grid frequencies (the
  PhysFormer-style ``complex_absolute`` of the same group's code, rPPG-Toolbox
  ``PhysFormerLossComputer.py``); ``method="rfft"`` takes a zero-padded ``torch.fft.rfft`` and
  interpolates it linearly onto the grid. ``fs`` may differ per sample: a temporally resampled clip is
  mapped back to the original time axis by evaluating it at ``fs / speed`` (see :func:`band_psd`).
* :func:`wasserstein_1d` -- distances between two such distributions on the same uniform grid:
  ``"w1"`` = ``dx * sum_k |F_p(k) - F_q(k)|`` with ``F`` the cumulative sums (exactly
  ``scipy.stats.wasserstein_distance`` for point masses on the grid), ``"w2"`` (exact, through the
  quantile functions of the two discrete distributions) and ``"cramer"`` (``sqrt(dx * sum (F_p - F_q)^2)``;
  ``scipy.stats.energy_distance`` is ``sqrt(2)`` times it). All are O(K log K) at most and differentiable
  in ``p`` and ``q`` (almost everywhere).
* :func:`rescale_frequency` -- moves a spectrum observed on a clip played ``factor`` times faster back to
  the original frequency axis by interpolation (the approximate alternative to evaluating the DFT at
  ``fs / factor``).
* :func:`fwd_loss` -- the batch mean of :func:`wasserstein_1d` between two batches of spectra.
* :func:`spectral_sparsity` -- the share of in-band power farther than ``width`` bins from the peak (SiNC's
  sparsity loss, Speth et al., CVPR 2023): 0 for a pure tone on the grid, near 1 for white noise.

Shape:
    signals (B, T) (or (T,)); spectra (B, K) with K = len(:func:`bpm_grid`); distances (B,).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["bpm_grid", "band_psd", "wasserstein_1d", "fwd_loss", "rescale_frequency", "spectral_sparsity",
           "DISTANCES"]

#: the accepted ``distance`` names of :func:`wasserstein_1d`
DISTANCES = ("w1", "w2", "cramer")


def bpm_grid(band_bpm: tuple[float, float] = (40.0, 180.0), step_bpm: float = 1.0, *,
             dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """Heart-rate grid in bpm, ``[lo, lo + step, ...] < hi`` (default 40..179: 140 bins)."""
    lo, hi = float(band_bpm[0]), float(band_bpm[1])
    if not 0.0 < lo < hi or step_bpm <= 0:
        raise ValueError(f"band_bpm must satisfy 0 < low < high and step_bpm > 0, got {band_bpm}, {step_bpm}")
    n = int(math.ceil((hi - lo) / step_bpm - 1e-9))
    return lo + step_bpm * torch.arange(n, dtype=dtype, device=device)  # (K,)


def _as_rate(fs: float | Tensor, b: int, like: Tensor) -> Tensor:
    rate = torch.as_tensor(fs, dtype=like.dtype, device=like.device).reshape(-1)
    if rate.numel() == 1:
        rate = rate.expand(b)
    if rate.numel() != b:
        raise ValueError(f"fs must be a number or one rate per sample ({b}), got {rate.numel()} values")
    if (rate <= 0).any():
        raise ValueError("fs must be positive")
    return rate  # (B,)


def band_psd(x: Tensor, fs: float | Tensor, band_bpm: tuple[float, float] = (40.0, 180.0), step_bpm: float = 1.0,
             *, method: str = "dft", window: bool = True, normalize: bool = True, n_fft: int | None = None,
             eps: float = 1e-12) -> Tensor:
    """Power of ``x`` at the heart rates of :func:`bpm_grid`, normalised to sum 1 over the band.

    Args:
        x: (B, T) or (T,) signals sampled at ``fs`` Hz (the mean is removed first).
        fs: frame rate, a number or a (B,) tensor. A clip resampled to play ``r`` times faster (frame k of
            the clip is time ``k r / fs`` of the original) is mapped back to the original heart rates by
            passing ``fs / r``: its spectrum is then read at the frequencies the original clip has.
        method: ``"dft"`` (exact DFT at the grid frequencies) or ``"rfft"`` (zero-padded FFT, ``n_fft``
            default the next power of two >= 8 T, linearly interpolated onto the grid).
        window: multiply by a (periodic) Hann window first.
    Returns:
        (B, K) (or (K,)) non-negative spectra; rows sum to 1 with ``normalize``.
    """
    squeeze = x.dim() == 1
    if squeeze:
        x = x[None]
    if x.dim() != 2:
        raise ValueError(f"band_psd expects signals (B, T) or (T,), got shape {tuple(x.shape)}")
    b, t = x.shape
    x = x - x.mean(dim=1, keepdim=True)  # (B, T)
    if window:
        x = x * torch.hann_window(t, periodic=True, dtype=x.dtype, device=x.device)
    rate = _as_rate(fs, b, x)  # (B,)
    hz = bpm_grid(band_bpm, step_bpm, dtype=x.dtype, device=x.device) / 60.0  # (K,)
    if method == "dft":
        n = torch.arange(t, dtype=x.dtype, device=x.device)
        phase = 2 * math.pi * (hz[None, :, None] / rate[:, None, None]) * n  # (B, K, T)
        re = (x[:, None, :] * torch.cos(phase)).sum(-1)  # (B, K)
        im = (x[:, None, :] * torch.sin(phase)).sum(-1)  # (B, K)
        power = re * re + im * im  # (B, K)
    elif method == "rfft":
        n_fft = n_fft or 1 << max(int(math.ceil(math.log2(8 * t))), 1)
        if n_fft < t:
            raise ValueError(f"n_fft ({n_fft}) must be >= the signal length ({t})")
        spec = torch.fft.rfft(x, n=n_fft, dim=1)  # (B, n_fft/2 + 1)
        full = spec.real ** 2 + spec.imag ** 2  # (B, F)
        pos = hz[None, :] * n_fft / rate[:, None]  # (B, K) fractional bin index
        if (pos > full.shape[1] - 1).any():
            raise ValueError(f"the band reaches above the Nyquist frequency of fs={rate.min().item():g} Hz")
        lo = pos.floor().long().clamp(max=full.shape[1] - 2)  # (B, K)
        frac = pos - lo.to(pos.dtype)
        power = torch.gather(full, 1, lo) * (1 - frac) + torch.gather(full, 1, lo + 1) * frac  # (B, K)
    else:
        raise ValueError(f"unknown PSD method {method!r}; expected 'dft' or 'rfft'")
    if normalize:
        power = power / (power.sum(dim=1, keepdim=True) + eps)
    return power[0] if squeeze else power


def rescale_frequency(p: Tensor, freqs: Tensor, factor: float | Tensor, normalize: bool = True) -> Tensor:
    """Spectrum of a clip played ``factor`` times faster, moved back to the original frequency axis.

    ``out(f) = p(f * factor)`` read by linear interpolation on the uniform grid ``freqs`` (zero outside it),
    renormalised to sum 1. ``factor`` is a number or one per row. Shape: p (B, K) or (K,); freqs (K,).
    """
    squeeze = p.dim() == 1
    if squeeze:
        p = p[None]
    b, k = p.shape
    fac = torch.as_tensor(factor, dtype=p.dtype, device=p.device).reshape(-1)
    fac = fac.expand(b) if fac.numel() == 1 else fac
    step = freqs[1] - freqs[0]
    pos = (freqs[None, :] * fac[:, None] - freqs[0]) / step  # (B, K) fractional index into p
    inside = (pos >= 0) & (pos <= k - 1)
    lo = pos.floor().long().clamp(0, k - 2)
    frac = (pos - lo.to(p.dtype)).clamp(0, 1)
    out = (torch.gather(p, 1, lo) * (1 - frac) + torch.gather(p, 1, lo + 1) * frac) * inside  # (B, K)
    if normalize:
        out = out / (out.sum(dim=1, keepdim=True) + 1e-12)
    return out[0] if squeeze else out


def wasserstein_1d(p: Tensor, q: Tensor, dx: float = 1.0, distance: str = "w1") -> Tensor:
    """Distance between distributions ``p``, ``q`` (..., K) on the same uniform grid of spacing ``dx``.

    ``"w1"``: ``dx * sum |cumsum p - cumsum q|``. ``"w2"``: ``(integral_0^1 |Q_p(u) - Q_q(u)|^2 du)^(1/2)`` with
    ``Q`` the quantile functions of the point masses at the grid positions (exact: the levels of both CDFs
    are merged). ``"cramer"``: ``sqrt(dx * sum (cumsum p - cumsum q)^2)``. Both inputs should sum to 1 along
    the last axis (they are not renormalised here). Returns (...,).
    """
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    fp, fq = p.cumsum(-1), q.cumsum(-1)  # (..., K)
    if distance == "w1":
        return dx * (fp - fq).abs().sum(-1)
    if distance == "cramer":
        return torch.sqrt(dx * ((fp - fq) ** 2).sum(-1) + 1e-12)
    if distance != "w2":
        raise ValueError(f"unknown distance {distance!r}; expected one of {DISTANCES}")
    k = p.shape[-1]
    lead = p.shape[:-1]
    fp2, fq2 = fp.reshape(-1, k), fq.reshape(-1, k)  # (N, K)
    top = torch.maximum(fp2[:, -1:], fq2[:, -1:])
    levels, _ = torch.sort(torch.cat([fp2, fq2, torch.zeros_like(top)], dim=1), dim=1)  # (N, 2K + 1)
    levels = torch.minimum(levels, top)
    du = levels[:, 1:] - levels[:, :-1]  # (N, 2K)
    mid = (0.5 * (levels[:, 1:] + levels[:, :-1])).detach()  # (N, 2K): which grid point each level hits
    ip = torch.searchsorted(fp2.detach().contiguous(), mid.contiguous()).clamp(max=k - 1)  # (N, 2K)
    iq = torch.searchsorted(fq2.detach().contiguous(), mid.contiguous()).clamp(max=k - 1)
    gap = dx * (ip - iq).to(p.dtype)  # (N, 2K) distance between the two quantiles
    w2 = torch.sqrt((du * gap * gap).sum(-1) + 1e-12)  # (N,)
    return w2.reshape(lead)


def fwd_loss(p: Tensor, q: Tensor, dx: float = 1.0, distance: str = "w1") -> Tensor:
    """Frequency-domain Wasserstein distance, averaged over the batch: ``mean(wasserstein_1d(p, q))``."""
    return wasserstein_1d(p, q, dx=dx, distance=distance).mean()


def spectral_sparsity(p: Tensor, width: int = 6) -> Tensor:
    """Share of the power of spectra ``p`` (..., K) (non-negative, any scale) more than ``width`` bins from
    each spectrum's peak bin -- SiNC's sparsity loss (Speth et al., "Non-Contrastive Unsupervised Learning of
    Physiological Signals from Video", CVPR 2023; their band width is 6 bpm = 6 bins of the 1-bpm grid).

    Returns (...,) in [0, 1]: 0 when all power lies within ``width`` bins of the peak, about
    ``1 - (2 width + 1) / K`` for a flat spectrum. The peak's position is not differentiated (a fixed mask
    per call); the share is differentiable in ``p``.
    """
    if width < 0:
        raise ValueError(f"width must be >= 0, got {width}")
    k = p.shape[-1]
    peak = p.detach().argmax(dim=-1, keepdim=True)  # (..., 1)
    idx = torch.arange(k, device=p.device)
    near = ((idx - peak).abs() <= width).to(p.dtype)  # (..., K)
    total = p.sum(dim=-1) + 1e-12
    return 1.0 - (p * near).sum(dim=-1) / total
