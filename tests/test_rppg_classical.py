"""Classical rPPG methods (GREEN, POS, CHROM, ICA, LGI, PBV) and the shared heart-rate estimation."""

from __future__ import annotations

import time
import warnings
from functools import cache

import numpy as np
import pytest
import torch

import mmtrust.methods.rppg.unsupervised as U
from mmtrust import registry
from mmtrust.config import build_config
from mmtrust.methods.rppg.postprocess import (
    ESTIMATORS,
    HRConfig,
    bandpass,
    detrend,
    estimate_hr,
    power_spectrum,
    preprocess_pulse,
    windowed_hr,
)

FS = 30.0
NAMES = ("green", "pos", "chrom", "ica", "lgi", "pbv")
PBV_DIRECTION = np.array([0.33, 0.77, 0.53])  # blood-volume pulse direction in normalised RGB
SKIN_DC = np.array([180.0, 120.0, 100.0])


@cache
def _ppg(hr: int, duration: int = 30) -> np.ndarray:
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ppg = nk.ppg_simulate(
            duration=duration, sampling_rate=int(FS), heart_rate=hr, frequency_modulation=0, ibi_randomness=0,
            drift=0, motion_amplitude=0, powerline_amplitude=0, burst_number=0, random_state=0,
        )
    return (ppg - ppg.mean()) / ppg.std()


def make_rgb(hr: int, noise: float = 0.2, flicker: float = 0.0, seed: int = 0) -> np.ndarray:
    """(T, 3) mean-RGB trace: skin colour x illumination (slow drift [+ in-band flicker]) x pulse, + noise.

    The pulse modulates the colour along the blood-volume direction by 0.2 % (peak-to-peak a few
    tenths of a grey level, like a real face) and lowers reflectance (more blood absorbs more light).
    """
    ppg = _ppg(hr)
    t = np.arange(ppg.size) / FS
    illum = 1 + 0.03 * np.sin(2 * np.pi * 0.05 * t) + 0.03 * t / t[-1]  # (T,) slow drift, out of band
    illum = illum + flicker * np.sin(2 * np.pi * 1.37 * t + 0.3)  # (T,) in-band intensity flicker (82 bpm)
    rng = np.random.default_rng(seed)
    rgb = SKIN_DC * illum[:, None] * (1 - 0.002 * ppg[:, None] * PBV_DIRECTION)  # (T, 3)
    return rgb + rng.normal(0.0, noise, rgb.shape) * SKIN_DC / 100


def run_algorithm(name: str, rgb: np.ndarray) -> np.ndarray:
    """Run the registered model's algorithm on a (T, 3) trace (through the model, as users would)."""
    return _model(name).from_rgb(rgb, FS)


def _info(name: str) -> registry.MethodInfo:
    try:
        return registry.get_method(name)
    except Exception:  # other plugin modules may not exist yet; ours registered on import
        return registry._METHODS[name]


def _model(name: str, **overrides):
    info = _info(name)
    return info.model_cls(build_config(info.config_cls, info.presets, "tiny", overrides=overrides or None))


# ---------------------------------------------------------------------------------------------- HR
@pytest.mark.parametrize("hr", [60, 80, 110])
@pytest.mark.parametrize("name", ["pos", "chrom"])
def test_pos_chrom_recover_hr(name, hr):
    est = estimate_hr(run_algorithm(name, make_rgb(hr, noise=0.2)), FS)
    assert abs(est - hr) <= 3.0, f"{name}: {est:.2f} bpm for {hr} bpm"


@pytest.mark.parametrize("hr", [60, 80, 110])
@pytest.mark.parametrize("name", ["green", "ica", "lgi", "pbv"])
def test_other_methods_on_clean_trace(name, hr):
    est = estimate_hr(run_algorithm(name, make_rgb(hr, noise=0.05)), FS)
    assert abs(est - hr) <= 5.0, f"{name}: {est:.2f} bpm for {hr} bpm"


@pytest.mark.parametrize("hr", [60, 110])
def test_pos_chrom_cancel_intensity_flicker_green_does_not(hr):
    # an in-band illumination flicker (82 bpm) scales all channels alike: POS and CHROM project it out
    rgb = make_rgb(hr, noise=0.05, flicker=0.003)
    for name in ("pos", "chrom", "lgi"):
        assert abs(estimate_hr(run_algorithm(name, rgb), FS) - hr) <= 3.0, name
    assert abs(estimate_hr(run_algorithm("green", rgb), FS) - 1.37 * 60) <= 3.0  # GREEN locks onto it


def test_pos_window_flag():
    rgb = make_rgb(80)
    toolbox, paper = U.pos(rgb, FS, exclude_last=True), U.pos(rgb, FS, exclude_last=False)
    assert toolbox.shape == paper.shape == (rgb.shape[0],)
    assert not np.allclose(toolbox, paper)
    assert abs(estimate_hr(paper, FS) - 80) <= 3.0


def test_chrom_output_length_and_padding():
    rgb = make_rgb(80)  # T = 900, L = 48, 36 windows -> 24 * 37 = 888 samples
    y = U.chrom(rgb, FS)
    assert y.shape == (888,)
    out = run_algorithm("chrom", rgb)
    assert out.shape == (900,) and np.all(out[888:] == 0) and np.allclose(out[:888], y)


def test_pbv_fixed_signature():
    rgb = make_rgb(80, noise=0.05, flicker=0.003)
    y = _model("pbv", signature=tuple(PBV_DIRECTION)).from_rgb(rgb, FS)
    assert abs(estimate_hr(y, FS) - 80) <= 3.0  # the known signature rejects the flicker


def test_ica_is_deterministic():
    rgb = make_rgb(80, noise=0.05)
    np.testing.assert_allclose(U.ica(rgb, FS), U.ica(rgb, FS))


# --------------------------------------------------------------------------------------- estimators
def _sinusoid(f_hz: float = 1.5, seconds: float = 20.0) -> np.ndarray:
    return np.sin(2 * np.pi * f_hz * np.arange(0, seconds, 1 / FS) + 0.4)


def test_estimators_agree_on_clean_sinusoid():
    x = _sinusoid(1.5)  # 90 bpm
    hrs = {e: estimate_hr(x, FS, config=HRConfig(estimator=e)) for e in ESTIMATORS}
    for e, hr in hrs.items():
        assert abs(hr - 90) <= 1.0, (e, hr)  # the periodogram bin is 30/1024 Hz = 1.76 bpm
    assert abs(estimate_hr(x, FS, config=HRConfig.physmamba()) - 90) <= 0.5
    assert abs(estimate_hr(x, FS, config=HRConfig.toolbox()) - 90) <= 1.0


def test_published_settings():
    tb, pm = HRConfig.toolbox(), HRConfig.physmamba()
    assert (tb.band, tb.estimator, tb.filter_order) == ((0.6, 3.3), "fft", 1)
    assert (pm.band, pm.estimator, pm.filter_order) == ((0.75, 2.5), "welch", 1)
    assert HRConfig.named("physmamba") == pm
    with pytest.raises(ValueError, match="estimator"):
        HRConfig(estimator="cwt")


def test_fft_pad_to_refines_the_grid():
    x = _sinusoid(1.23, seconds=10.0)  # 73.8 bpm; 300 samples -> bin 30/512 Hz = 3.5 bpm
    coarse = estimate_hr(x, FS)
    fine = estimate_hr(x, FS, config=HRConfig(fft_pad_to=8192))
    assert abs(fine - 73.8) < abs(coarse - 73.8) or abs(fine - 73.8) < 0.3


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_diff_flag_integrates_a_differentiated_signal(estimator):
    x = _sinusoid(1.2)
    cfg = HRConfig(estimator=estimator)
    assert estimate_hr(np.diff(x), FS, diff=True, config=cfg) == pytest.approx(estimate_hr(x, FS, config=cfg), abs=1.0)


def test_detrend_removes_linear_and_quadratic_trend():
    t = np.arange(0, 40, 1 / FS)
    pulse = np.sin(2 * np.pi * 1.2 * t)
    out = detrend(pulse + 5 + 0.3 * t + 0.02 * t**2, lam=100)
    inner = slice(60, -60)  # the smoothness prior leaves a short transient at the ends
    assert np.abs(out - pulse)[inner].max() < 0.05
    assert np.corrcoef(out, pulse)[0, 1] > 0.99


def test_detrend_is_sparse_fast_and_columnwise():
    x = np.random.default_rng(0).normal(size=(10_000, 2)).cumsum(axis=0)
    start = time.perf_counter()
    out = detrend(x)
    assert time.perf_counter() - start < 5.0  # sparse: ~10 ms; a dense 10k x 10k solve takes far longer
    np.testing.assert_allclose(out[:, 1], detrend(x[:, 1]), atol=1e-8)


def test_bandpass_short_signal_and_bad_band():
    assert bandpass(np.random.default_rng(0).normal(size=5), FS).shape == (5,)
    with pytest.raises(ValueError, match="fs/2"):
        bandpass(np.zeros(100), 5.0, band=(0.6, 3.3))


def test_windowed_hr_skips_short_tail():
    x = np.sin(2 * np.pi * 1.5 * np.arange(60 * 30 + 5) / FS)  # 60 s + 5 samples
    hrs = windowed_hr(x, FS, window_s=10)
    assert hrs.shape == (6,)
    assert np.all(np.abs(hrs - 90) <= 3.6)  # 300-sample windows: bin 3.5 bpm
    assert windowed_hr(x, FS, window_s=10, min_samples=1).shape == (7,)


def test_power_spectrum_and_preprocess():
    x = _sinusoid(2.0)
    freqs, power = power_spectrum(x, FS)
    assert freqs.shape == power.shape == (1024 // 2 + 1,)
    assert abs(freqs[np.argmax(power)] - 2.0) < 30 / 1024
    assert preprocess_pulse(x, FS).shape == x.shape


# ----------------------------------------------------------------------------------- models, registry
def _video(rgb: np.ndarray, batch: int = 2, side: int = 8) -> torch.Tensor:
    """(B, 3, T, H, W) video whose per-frame spatial mean is ``rgb`` (T, 3) plus pixel noise."""
    g = torch.Generator().manual_seed(0)
    base = torch.as_tensor(rgb.T, dtype=torch.float32)[None, :, :, None, None]  # (1, 3, T, 1, 1)
    noise = torch.randn(batch, 3, rgb.shape[0], side, side, generator=g)
    return base + noise - noise.mean(dim=(3, 4), keepdim=True)  # (B, 3, T, H, W)


@pytest.mark.parametrize("name", NAMES)
def test_registered_model_forward(name):
    info = _info(name)
    assert info.family == "rppg" and info.task == "rppg" and not info.trainable
    assert {"tiny", "paper"} <= set(info.presets)
    assert info.paper.code_url == "https://github.com/ubicomplab/rPPG-Toolbox" and info.paper.year
    model = _model(name)
    assert model.input_type == "raw" and model.output_type == "raw" and model.chunk_length is None
    rgb = make_rgb(80, noise=0.05)
    video = _video(rgb)
    out = model(video, fs=FS)
    assert out.shape == (2, rgb.shape[0]) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert abs(estimate_hr(out[0].numpy(), FS) - 80) <= 5.0


def test_config_overrides_reach_the_algorithm():
    rgb = make_rgb(80)
    a = _model("pos").from_rgb(rgb, FS)
    b = _model("pos", exclude_last=False).from_rgb(rgb, FS)
    np.testing.assert_allclose(b, U.pos(rgb, FS, exclude_last=False))
    assert not np.allclose(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_channels_raise(name):
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        _model(name)(torch.zeros(2, 4, 100, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        _model(name)(torch.zeros(3, 100, 8, 8))
    with pytest.raises(ValueError, match=r"\(T, 3\)"):
        _model(name).algorithm(np.zeros((100, 4)), FS)


@pytest.mark.parametrize(("name", "frames"), [("pos", 49), ("chrom", 48)])
def test_too_short_for_window_raises(name, frames):
    video = torch.rand(1, 3, frames - 1, 4, 4) * 255
    with pytest.raises(ValueError, match=f"at least {frames} frames"):
        _model(name)(video, fs=FS)
    assert _model(name)(torch.rand(1, 3, frames + 30, 4, 4) * 255, fs=FS).shape == (1, frames + 30)
