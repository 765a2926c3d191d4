"""The built-in ``synthetic-rppg`` dataset: layout, determinism, a real pulse in the pixels, per-subject
conditions, caching."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from mmtrust.data import synthetic_rppg as sr
from mmtrust.data.face import HaarFaceDetector
from mmtrust.data.video import read_video

# a very small config for the tests that only need *a* dataset (determinism, cache, failures)
SMALL = {"n_subjects": 2, "duration_s": 3.0}


def _subjects(root: Path) -> list[Path]:
    return sorted(root.glob("subject*"), key=lambda p: int(p.name[len("subject"):]))


def _gt(sub: Path) -> np.ndarray:
    return np.loadtxt(sub / "ground_truth.txt")


def _fft_peak_bpm(x: np.ndarray, fs: float, lo: float = 0.7, hi: float = 3.0, pad: int = 1) -> tuple[float, float]:
    """(peak frequency in bpm inside [lo, hi] Hz, bin width in bpm)."""
    x = np.asarray(x, np.float64) - np.mean(x)
    n = len(x) * pad
    spec = np.abs(np.fft.rfft(x, n))
    f = np.fft.rfftfreq(n, 1.0 / fs)
    band = (f >= lo) & (f <= hi)
    return float(f[band][np.argmax(spec[band])] * 60.0), 60.0 * fs / len(x)


def _pos_like_hr(frames: np.ndarray, fs: float) -> float:
    """Mean RGB of the centre region -> temporal normalisation -> S1 + alpha S2 (POS plane) -> FFT peak."""
    s = frames.shape[1]
    c, r = s // 2, s // 8
    rgb = frames[:, c - r:c + r, c - r:c + r].reshape(len(frames), -1, 3).mean(1).astype(np.float64)
    cn = rgb / rgb.mean(0)
    proj = np.array([[0.0, 1.0, -1.0], [-2.0, 1.0, 1.0]]) @ cn.T
    h = proj[0] + proj[0].std() / proj[1].std() * proj[1]
    h = h - np.polyval(np.polyfit(np.arange(len(h)), h, 2), np.arange(len(h)))  # remove slow drift
    return _fft_peak_bpm(h * np.hanning(len(h)), fs, pad=8)[0]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    cfg = sr.SyntheticRPPGConfig.preset("tiny")
    return sr.build_synthetic_rppg(cfg, root=tmp_path_factory.mktemp("srppg") / "tiny", progress=False)


@pytest.fixture(scope="module")
def still_root(tmp_path_factory) -> Path:
    cfg = sr.make_config("tiny", domain="still")
    return sr.build_synthetic_rppg(cfg, root=tmp_path_factory.mktemp("srppg") / "still", progress=False)


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory) -> Path:
    cfg = sr.make_config("tiny", domain="clean")
    return sr.build_synthetic_rppg(cfg, root=tmp_path_factory.mktemp("srppg") / "clean", progress=False)


def _conditions(root: Path) -> list[dict]:
    return [json.loads((sub / "meta.json").read_text())["conditions"] for sub in _subjects(root)]


def test_presets_and_domains_are_valid() -> None:
    for name in sr.PRESETS:
        sr.SyntheticRPPGConfig.preset(name).validate()
    for dom in sr.DOMAINS:
        cfg = sr.make_config("tiny", dom)
        cfg.validate()
    assert sr.make_config("tiny", "low-fps").fps in (15.0, 25.0)
    with pytest.raises(ValueError, match="unknown synthetic-rppg domain"):
        sr.make_config("tiny", "nope")
    with pytest.raises(TypeError, match="accepted"):
        sr.make_config("tiny", colour="blue")
    with pytest.raises(ValueError, match="skin_tone"):
        sr.make_config("tiny", skin_tone=9)
    with pytest.raises(ValueError, match="variation"):
        sr.make_config("tiny", variation=1.5)
    with pytest.raises(ValueError, match="shading"):
        sr.make_config("tiny", shading=2.0)
    # the realistic presets spread the subjects' conditions; the controlled domains do not
    assert sr.make_config("default").variation == sr.make_config("quick").variation == 1.0
    for dom in ("clean", "still", "bright-still"):
        assert sr.make_config("quick", dom).variation == 0.0
    clean = sr.make_config("quick", "clean")
    assert clean.motion == 0.0 and clean.illumination_events == 0.0 and clean.illumination_drift <= 0.01
    quick = sr.make_config("quick")
    assert int(quick.n_subjects * 0.2) >= 5  # the test split (subject fractions 0.8-1.0) has >= 5 videos


def test_layout_is_ubfc_like(tiny_root: Path) -> None:
    cfg = sr.SyntheticRPPGConfig.preset("tiny")
    subs = _subjects(tiny_root)
    assert [p.name for p in subs] == [f"subject{i}" for i in range(1, cfg.n_subjects + 1)]
    done = json.loads((tiny_root / "DONE.json").read_text())
    assert done["generator_version"] == sr.GENERATOR_VERSION and done["config"]["n_subjects"] == cfg.n_subjects
    sources = set()
    for sub in subs:
        assert (sub / "vid.avi").is_file()
        gt = _gt(sub)
        assert gt.shape == (3, cfg.n_frames)
        ppg, hr, t = gt
        meta = json.loads((sub / "meta.json").read_text())
        assert abs(ppg.mean()) < 1e-6 and abs(ppg.std() - 1.0) < 1e-6
        assert np.all(hr == meta["hr_bpm"]) and cfg.hr_range_bpm[0] <= meta["hr_bpm"] <= cfg.hr_range_bpm[1]
        np.testing.assert_allclose(t, np.arange(cfg.n_frames) / cfg.fps)
        assert {"face_source", "seed", "domain", "fps"} <= set(meta)
        sources.add(meta["face_source"])
        clip = read_video(sub / "vid.avi")
        assert clip.frames.shape == (cfg.n_frames, cfg.frame_size, cfg.frame_size, 3)
        assert abs(clip.fps - cfg.fps) < 1e-6
    assert len(sources) == cfg.n_subjects  # every subject has its own face
    assert {"astronaut", "grace_hopper"} <= sources


def test_every_split_spans_the_hr_range(tiny_root: Path) -> None:
    """Version 4: the HR draw is stratified per split, so the test split is not confined to a narrow band.

    Pure config/draw check (no rendering) on several seeds of the quick preset, plus the built tiny set."""
    from mmtrust.data.rppg_datasets import DEFAULT_SPLITS

    quick = sr.make_config("quick")
    lo, hi = quick.hr_range_bpm
    blocks = sr.split_blocks(quick.n_subjects)
    assert [len(b) for b in blocks.values()] == [21, 7, 7] and blocks["test"] == range(29, 36)
    for name, b in blocks.items():  # the same cut as the loader's default splits
        begin, end = DEFAULT_SPLITS[name]
        assert (b.start - 1, b.stop - 1) == (int(begin * quick.n_subjects + 1e-9), int(end * quick.n_subjects + 1e-9))
    for seed in range(6):
        cfg = sr.make_config("quick", seed=seed)
        hrs = sr.subject_heart_rates(cfg)
        assert hrs == sr.subject_heart_rates(cfg) and len(hrs) == cfg.n_subjects
        assert all(lo <= h <= hi for h in hrs)
        for name, b in blocks.items():
            h = np.sort([hrs[i - 1] for i in b])
            assert h[-1] - h[0] >= 0.5 * (hi - lo), (seed, name, h)
            # one subject per stratum of width (hi - lo) / m
            np.testing.assert_array_equal(np.floor((h - lo) / (hi - lo) * len(b)).clip(max=len(b) - 1),
                                          np.arange(len(b)))
    assert sr.subject_heart_rates(sr.make_config("quick", seed=1)) != sr.subject_heart_rates(quick)
    # the built data carries exactly these HRs
    tiny = sr.SyntheticRPPGConfig.preset("tiny")
    built = [json.loads((sub / "meta.json").read_text())["hr_bpm"] for sub in _subjects(tiny_root)]
    assert built == sr.subject_heart_rates(tiny)


def test_label_fft_peak_is_true_hr(tiny_root: Path) -> None:
    for sub in _subjects(tiny_root):
        ppg, hr, _ = _gt(sub)
        peak, bin_bpm = _fft_peak_bpm(ppg, 30.0, lo=0.5, hi=4.0)
        assert abs(peak - hr[0]) <= bin_bpm, (sub.name, peak, hr[0])


def test_pulse_is_in_the_pixels(still_root: Path) -> None:
    errors = {}
    for sub in _subjects(still_root):
        meta = json.loads((sub / "meta.json").read_text())
        clip = read_video(sub / meta["video"])
        errors[sub.name] = abs(_pos_like_hr(clip.frames, clip.fps) - meta["hr_bpm"])
    assert max(errors.values()) <= 3.0, errors


def test_heart_rate_varies_but_label_peak_stays(tiny_root: Path) -> None:
    """HRV (version 3): the beat-to-beat interval varies, the padded spectral peak stays at the true HR."""
    cfg = sr.SyntheticRPPGConfig.preset("quick")
    for i, hr in enumerate((55.0, 62.5, 78.0, 96.0, 119.0)):
        cond = sr._draw_conditions(cfg, np.random.default_rng(i))
        assert 2.0 <= cond["rsa_bpm"] <= 6.0 and 0.18 <= cond["respiration_hz"] <= 0.35
        ppg = sr._ppg_hrv(cfg, hr, cond, 100 + i, cfg.n_frames)
        assert abs(ppg.mean()) < 1e-9 and abs(ppg.std() - 1.0) < 1e-9
        peak, _ = _fft_peak_bpm(ppg, cfg.fps, lo=0.5, hi=4.0, pad=8)
        assert abs(peak - hr) <= 1.5, (hr, peak)
        # systolic peaks: local maxima above the median, at least 0.6 beat apart
        up = np.flatnonzero((ppg[1:-1] > ppg[:-2]) & (ppg[1:-1] >= ppg[2:]) & (ppg[1:-1] > 0.5)) + 1
        keep = [up[0]]
        for j in up[1:]:
            if j - keep[-1] >= 0.6 * cfg.fps * 60.0 / hr:
                keep.append(j)
        ibi = np.diff(keep) / cfg.fps
        assert abs(60.0 / np.median(ibi) - hr) < 0.1 * hr and np.ptp(ibi[ibi < 1.5 * np.median(ibi)]) > 0.02, hr
    # hrv = 0 (the "constant-hr" domain): the clean constant-rate trace of version 2
    flat = sr.make_config("quick", "constant-hr")
    cond = sr._draw_conditions(flat, np.random.default_rng(0))
    assert cond["rsa_bpm"] == cond["lf_hrv_bpm"] == 0.0
    np.testing.assert_array_equal(sr._ppg_hrv(flat, 70.0, cond, 5, flat.n_frames),
                                  sr._ppg(flat.duration_s, flat.fps, 70.0, 5, flat.n_frames))


def test_rendered_pulse_is_dispersed() -> None:
    """Version 3: the face shows the label PPG averaged over arrival delays: weaker harmonics, same HR."""
    ppg = sr._ppg(20.0, 30.0, 65.0, 1, 600)
    assert sr._disperse(ppg, 30.0, 0.0) is ppg

    def h2_over_h1(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x * np.hanning(x.size), 8 * x.size))
        f = np.fft.rfftfreq(8 * x.size, 1 / 30.0) * 60.0
        return float(spec[np.abs(f - 130.0) < 3].max() / spec[np.abs(f - 65.0) < 3].max())

    face = sr._disperse(ppg, 30.0, sr.SyntheticRPPGConfig().pulse_dispersion_s)
    assert h2_over_h1(face) < 0.75 * h2_over_h1(ppg)
    assert abs(_fft_peak_bpm(face, 30.0, lo=0.5, hi=4.0, pad=8)[0] - 65.0) <= 1.0


def test_auto_exposure_and_sensor_noise(tmp_path: Path) -> None:
    """Version 3 camera: a dark face is exposed up towards mid-grey (noise after the gain, x sqrt(gain)),
    and the per-pixel noise is that of a sharper sensor binned down to the frame."""
    dark = dict(SMALL, skin_tone=6.0, variation=0.0)
    auto = sr.build_synthetic_rppg(sr.make_config("tiny", **dark), root=tmp_path / "auto", progress=False)
    fixed = sr.build_synthetic_rppg(sr.make_config("tiny", "v2-camera", **dark), root=tmp_path / "fixed",
                                    progress=False)
    cfg = sr.make_config("tiny", **dark)
    for sa, sf in zip(_subjects(auto), _subjects(fixed), strict=True):
        ca = json.loads((sa / "meta.json").read_text())["conditions"]
        cf = json.loads((sf / "meta.json").read_text())["conditions"]
        assert cf["exposure_gain"] == 1.0 and 1.2 < ca["exposure_gain"] <= 4.0
        assert cf["frame_noise_std"] == pytest.approx(cfg.camera_noise_std, rel=1e-3)  # per frame pixel
        box_w = json.loads((sa / "meta.json").read_text())["face_box_frame0"][2]
        expected = cfg.camera_noise_std * box_w / cfg.sensor_face_px * ca["exposure_gain"] ** 0.5
        assert ca["frame_noise_std"] == pytest.approx(expected, rel=0.25)  # Haar box ~ the canvas box
        fa, ff = read_video(sa / "vid.avi").frames[0], read_video(sf / "vid.avi").frames[0]
        box = json.loads((sa / "meta.json").read_text())["face_box_frame0"]
        # the exposed first frame meters at the target (up to the Haar box vs the expected face box)
        assert sr._auto_exposure(fa, box, cfg.exposure_target) == pytest.approx(1.0, abs=0.15)
        x, y, w, h = box
        face_a = fa[y + h // 4:y + 3 * h // 4, x + w // 4:x + 3 * w // 4].astype(float).mean()
        face_f = ff[y + h // 4:y + 3 * h // 4, x + w // 4:x + 3 * w // 4].astype(float).mean()
        assert face_a > 1.2 * face_f
    with pytest.raises(ValueError, match="exposure_target"):
        sr.make_config("tiny", exposure_target=1.5)


# condition -> config field it is drawn around
_SPREAD = {"pulse_amplitude": "pulse_amplitude", "motion": "motion", "camera_noise_std": "camera_noise_std",
           "brightness": "brightness", "illumination_drift": "illumination_drift", "specular": "specular",
           "illumination_events": "illumination_events", "shading": "shading"}


def test_conditions_vary_per_subject(tiny_root: Path) -> None:
    cfg = sr.SyntheticRPPGConfig.preset("tiny")
    assert cfg.variation == 1.0
    conds = _conditions(tiny_root)
    for key in (*_SPREAD, "light_azimuth_deg", "blinks_per_min", "talking_fraction"):
        values = [c[key] for c in conds]
        assert len(set(values)) == len(values), (key, values)  # every subject draws its own
    for c in conds:
        assert 0.3 * cfg.pulse_amplitude <= c["pulse_amplitude"] <= 3 * cfg.pulse_amplitude
        assert 0.0 < c["motion"] and c["head_motion_peak"]["yaw_deg"] > 0.0
        assert len(c["light_rgb"]) == 3 and len(c["screen_rgb"]) == 3
    # the pulse amplitude recorded at the top level is the subject's own
    metas = [json.loads((s / "meta.json").read_text()) for s in _subjects(tiny_root)]
    assert [m["pulse_amplitude"] for m in metas] == [c["pulse_amplitude"] for c in conds]


def test_conditions_identical_without_variation(still_root: Path, tmp_path: Path) -> None:
    cfg = sr.make_config("tiny", domain="still")
    for c in _conditions(still_root):
        for key, field in _SPREAD.items():
            assert c[key] == pytest.approx(getattr(cfg, field), rel=1e-4), key
        assert c["light_rgb"] == list(cfg.light_rgb)
        assert c["light_azimuth_deg"] == 30.0 and c["light_elevation_deg"] == 25.0
        assert all(v == 0.0 for v in c["head_motion_peak"].values())  # motion = 0: a still subject
    # variation = 0 with motion: still every subject alike (only the timing of events is random)
    moving = sr.build_synthetic_rppg(sr.make_config("tiny", **SMALL, variation=0.0), root=tmp_path / "m",
                                     progress=False)
    conds = _conditions(moving)
    drop = ("head_motion_peak", "light_peak_to_peak", "skin_tone_fitzpatrick", "exposure_gain", "frame_noise_std")
    assert len({json.dumps({k: v for k, v in c.items() if k not in drop}, sort_keys=True) for c in conds}) == 1
    assert conds[0]["motion"] == sr.make_config("tiny").motion
    assert all(c["head_motion_peak"]["yaw_deg"] > 0 for c in conds)


@pytest.mark.skipif(importlib.util.find_spec("mmtrust.data.rppg_datasets") is None,
                    reason="mmtrust.data.rppg_datasets (the UBFC-rPPG loader) is not available yet")
def test_pos_recovers_hr_on_clean_clips(clean_root: Path, tmp_path: Path) -> None:
    """POS / CHROM through the real evaluation path (Haar crop x1.5, 72 px) on every clean clip.

    A 10 s clip gives 3.5 bpm periodogram bins, so the check reads the peak from a finely padded FFT:
    what is tested is the signal, not the bin grid."""
    from mmtrust import create_method, load_dataset
    from mmtrust.methods.rppg.postprocess import HRConfig
    from mmtrust.tasks.rppg import RPPGTask

    ds = load_dataset("synthetic-rppg", root=str(clean_root), split="all", preset="tiny", domain="clean",
                      cache_dir=tmp_path / "prep", progress=False)
    assert len(ds) == sr.SyntheticRPPGConfig.preset("tiny").n_subjects
    for name in ("pos", "chrom"):
        metrics, per_video = RPPGTask().evaluate(create_method(name), ds, hr_config=HRConfig(fft_pad_to=8192))
        errors = {r.id: round(abs(r.hr_pred - r.hr_gt), 2) for r in per_video}
        assert max(errors.values()) <= 3.0, (name, errors)
        assert metrics["MAE"] <= 3.0


def test_haar_finds_face_on_first_frame(tiny_root: Path) -> None:
    det = HaarFaceDetector()
    size = sr.SyntheticRPPGConfig.preset("tiny").frame_size
    for sub in _subjects(tiny_root):
        first = read_video(sub / "vid.avi").frames[0]
        box = det.detect(first)
        assert box is not None, sub.name
        x, y, w, h = box
        assert 0.3 * size <= w <= 0.65 * size  # the x1.5 crop fits in the frame
        assert abs(x + w / 2 - size / 2) < 0.2 * size and abs(y + h / 2 - size / 2) < 0.2 * size


def test_deterministic(tmp_path: Path) -> None:
    cfg = sr.make_config("tiny", **SMALL)
    a = sr.build_synthetic_rppg(cfg, root=tmp_path / "a", progress=False)
    b = sr.build_synthetic_rppg(cfg, root=tmp_path / "b", progress=False)
    c = sr.build_synthetic_rppg(sr.make_config("tiny", **SMALL, seed=1), root=tmp_path / "c", progress=False)
    for sa, sb, sc in zip(_subjects(a), _subjects(b), _subjects(c), strict=True):
        assert (sa / "ground_truth.txt").read_bytes() == (sb / "ground_truth.txt").read_bytes()
        assert (sa / "meta.json").read_bytes() == (sb / "meta.json").read_bytes()
        assert (sa / "vid.avi").read_bytes() == (sb / "vid.avi").read_bytes()  # ffv1 is lossless
        assert (sa / "ground_truth.txt").read_bytes() != (sc / "ground_truth.txt").read_bytes()


def test_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMTRUST_CACHE", str(tmp_path / "cache"))
    cfg = sr.make_config("tiny", **SMALL)
    path = sr.build_synthetic_rppg(cfg, progress=False)
    assert path.is_relative_to(tmp_path / "cache" / "synthetic-rppg")
    assert path.name.startswith(f"v{sr.GENERATOR_VERSION}-")
    stamp = (path / "DONE.json").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("regenerated a cached dataset")

    monkeypatch.setattr(sr, "_render_subject", boom)
    assert sr.build_synthetic_rppg(cfg, progress=False) == path
    assert (path / "DONE.json").stat().st_mtime_ns == stamp
    # another config is another cache entry (and must render)
    with pytest.raises(AssertionError, match="regenerated"):
        sr.build_synthetic_rppg(sr.make_config("tiny", **SMALL, seed=5), progress=False)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # the failed one left nothing


def test_failed_build_leaves_nothing_and_keeps_good_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = sr._render_subject
    calls = {"n": 0}

    def fail_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("renderer died midway")
        return real(*a, **k)

    monkeypatch.setattr(sr, "_render_subject", fail_second)
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="midway"):
        sr.build_synthetic_rppg(sr.make_config("tiny", **SMALL), root=fresh, progress=False)
    assert not fresh.exists() and list(tmp_path.iterdir()) == []

    monkeypatch.setattr(sr, "_render_subject", real)
    good = sr.build_synthetic_rppg(sr.make_config("tiny", **SMALL), root=tmp_path / "good", progress=False)
    before = {p.relative_to(good): p.read_bytes() for p in good.rglob("*") if p.is_file()}
    calls["n"] = 0
    monkeypatch.setattr(sr, "_render_subject", fail_second)
    with pytest.raises(RuntimeError, match="midway"):
        sr.build_synthetic_rppg(sr.make_config("tiny", **SMALL, seed=7), root=good, progress=False)
    after = {p.relative_to(good): p.read_bytes() for p in good.rglob("*") if p.is_file()}
    assert after == before and sr.is_complete(good, sr.make_config("tiny", **SMALL))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good"]  # no temp folders left


def test_refuses_to_overwrite_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not a synthetic-rppg dataset"):
        sr.build_synthetic_rppg(sr.make_config("tiny", **SMALL), root=tmp_path, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "user data"


@pytest.mark.skipif(importlib.util.find_spec("mmtrust.data.rppg_datasets") is None,
                    reason="mmtrust.data.rppg_datasets (the UBFC-rPPG loader) is not available yet")
def test_registered_factory_returns_loader(tiny_root: Path, tmp_path: Path) -> None:
    from mmtrust.registry import get_dataset, list_datasets

    assert "synthetic-rppg" in list_datasets("rppg")
    info = get_dataset("synthetic-rppg")
    assert info.builtin and info.task == "rppg"
    ds = info.factory(root=tiny_root, split="all", preset="tiny", image_size=72, cache_dir=tmp_path / "prep",
                      progress=False)
    assert len(ds) == sr.SyntheticRPPGConfig.preset("tiny").n_subjects
    item = ds[0]
    meta = json.loads((tiny_root / f"subject{item.subject}" / "meta.json").read_text())
    assert item.frames.shape == (meta["n_frames"], 72, 72, 3) and item.frames.dtype == np.uint8
    assert item.ppg.shape == (meta["n_frames"],) and item.fs == 30.0
    assert item.meta["hr_bpm"] == meta["hr_bpm"] and item.meta["face_found"]
    test = info.factory(root=tiny_root, split="test", preset="tiny", cache_dir=tmp_path / "prep", progress=False)
    train = info.factory(root=tiny_root, split="train", preset="tiny", cache_dir=tmp_path / "prep", progress=False)
    assert len(test) >= 1 and not set(test.ids) & set(train.ids)
