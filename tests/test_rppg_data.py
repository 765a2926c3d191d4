"""rPPG data layer: video I/O, face crops, transforms and the UBFC-rPPG / PURE / MMPD loaders.

Tiny fake copies of each real layout are written to tmp_path: frames made from a real face photo
(skimage's astronaut, cropped around the face so Haar finds it at 64x64) and a PPG of known heart rate.
"""

from __future__ import annotations

import functools
import json
import os
import warnings

import cv2
import numpy as np
import pytest
import scipy.io

from mmtrust.data import transforms as T
from mmtrust.data.face import HaarFaceDetector, crop_face_video, enlarge_box
from mmtrust.data.rppg_datasets import MMPD, PURE, DatasetLayoutError, RPPGVideo, UBFCrPPG
from mmtrust.data.video import VideoReadError, read_video, write_video

FS = 30.0
N_FRAMES = 96
SIZE = 64


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTRUST_CACHE", str(tmp_path / "mmtrust-cache"))


@functools.lru_cache(maxsize=1)
def _face(size: int = SIZE) -> np.ndarray:
    from skimage import data

    img = data.astronaut()  # face at about (177, 66, 95, 95)
    return cv2.resize(img[33:193, 144:304], (size, size), interpolation=cv2.INTER_AREA)


def face_video(hr: float, n: int = N_FRAMES, fs: float = FS) -> tuple[np.ndarray, np.ndarray]:
    """Face frames whose brightness pulses at ``hr`` bpm, and the matching PPG (one sample per frame)."""
    ppg = np.sin(2 * np.pi * hr / 60.0 * np.arange(n) / fs)
    frames = np.clip(_face().astype(np.float32)[None] * (1 + 0.02 * ppg[:, None, None, None]), 0, 255)
    return frames.astype(np.uint8), ppg


def fft_hr(sig: np.ndarray, fs: float) -> tuple[float, float]:
    """Toolbox-style FFT HR: periodogram with nfft = next power of 2, argmax in 0.6-3.3 Hz. (hr, bin width)."""
    nfft = 1 << int(np.ceil(np.log2(len(sig))))
    power = np.abs(np.fft.rfft(sig - sig.mean(), nfft)) ** 2
    freqs = np.fft.rfftfreq(nfft, 1 / fs)
    band = (freqs >= 0.6) & (freqs <= 3.3)
    return float(freqs[band][np.argmax(power[band])] * 60), 60 * fs / nfft


UBFC_HR = {1: 54.0, 3: 78.0, 4: 102.0, 8: 126.0, 12: 150.0}


def make_ubfc(root, hrs=UBFC_HR, n=N_FRAMES, ppg_len=None, meta=True):
    for sid, hr in hrs.items():
        d = root / f"subject{sid}"
        frames, ppg = face_video(hr, n)
        write_video(d / "vid.avi", frames, FS, codec="ffv1")
        if ppg_len:
            ppg = np.sin(2 * np.pi * hr / 60.0 * np.linspace(0, (n - 1) / FS, ppg_len))
        np.savetxt(d / "ground_truth.txt", np.vstack([ppg, np.full_like(ppg, hr), np.arange(len(ppg)) / FS]))
        if meta:
            (d / "meta.json").write_text(json.dumps({"hr_bpm": hr}))
    return root


# ---- video I/O ------------------------------------------------------------------------------------
def test_write_read_roundtrip(tmp_path):
    frames, _ = face_video(72.0, n=20)
    clip = read_video(write_video(tmp_path / "a.avi", frames, 25.0, codec="ffv1"))
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (20, SIZE, SIZE, 3)
    assert np.array_equal(clip.frames, frames) and clip.fps == pytest.approx(25.0) and not clip.truncated
    assert np.array_equal(read_video(write_video(tmp_path / "a.mkv", frames, 30, codec="ffv1")).frames, frames)
    lossy = read_video(write_video(tmp_path / "a.mp4", frames, 30, codec="libx264", crf=18)).frames
    assert lossy.shape == frames.shape and np.abs(lossy.astype(int) - frames).mean() < 6
    assert read_video(write_video(tmp_path / "b.avi", frames, 30, codec="mjpeg")).frames.shape == frames.shape
    with pytest.raises(ValueError, match="crf"):
        write_video(tmp_path / "c.avi", frames, 30, codec="ffv1", crf=10)


def test_write_video_is_atomic(tmp_path):
    frames, _ = face_video(72.0, n=10)
    dest = write_video(tmp_path / "v.avi", frames, FS)
    before = dest.read_bytes()

    def failing():
        yield from frames[:5]
        raise RuntimeError("camera unplugged")

    with pytest.raises(RuntimeError, match="unplugged"):
        write_video(dest, failing(), FS)
    assert dest.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.avi"]  # no temporary file left behind


def test_read_video_errors_name_the_file(tmp_path):
    frames, _ = face_video(72.0, n=40)
    good = write_video(tmp_path / "good.avi", frames, FS).read_bytes()
    (tmp_path / "trunc.avi").write_bytes(good[: len(good) // 2])
    with pytest.raises(VideoReadError, match="trunc.avi.*truncated"):
        read_video(tmp_path / "trunc.avi")
    part = read_video(tmp_path / "trunc.avi", allow_partial=True)
    assert part.truncated and 0 < len(part) < 40
    (tmp_path / "junk.mp4").write_bytes(os.urandom(5000))
    (tmp_path / "empty.avi").write_bytes(b"")
    for name in ("junk.mp4", "empty.avi", "missing.avi"):
        with pytest.raises(VideoReadError, match=name):
            read_video(tmp_path / name)
    assert issubclass(VideoReadError, OSError) and issubclass(VideoReadError, ValueError)


def test_read_frame_folder_sorted_by_name(tmp_path):
    for i in (0, 2, 10, 1):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((8, 8, 3), (i, 0, 100), np.uint8))  # BGR on disk
    clip = read_video(tmp_path, fps=12)
    assert clip.fps == 12 and clip.frames.shape == (4, 8, 8, 3)
    assert clip.frames[:, 0, 0, 2].tolist() == [0, 1, 2, 10] and (clip.frames[..., 0] == 100).all()  # RGB


# ---- face ---------------------------------------------------------------------------------------
def test_haar_finds_face_and_crops():
    frames, _ = face_video(72.0, n=12)
    box = HaarFaceDetector().detect(frames[0])
    assert box is not None and box[2] >= 30
    crops, info = crop_face_video(frames, size=32)
    assert crops.shape == (12, 32, 32, 3) and crops.dtype == np.uint8 and info["face_found"]
    crops2, info2 = crop_face_video(frames, size=32, dynamic=True, detection_stride=5)
    assert [s for s, _ in info2["boxes"]] == [0, 5, 10] and info2["boxes"][0] == info["boxes"][0]
    assert np.array_equal(crops[:5], crops2[:5])


def test_enlarge_box_is_square_and_clipped():
    assert enlarge_box((40, 40, 20, 20), 1.5, (100, 100, 3)) == (35, 35, 30, 30)
    assert enlarge_box((0, 0, 20, 10), 1.5, (100, 200, 3)) == (0, 0, 30, 30)  # shifted into the frame
    assert enlarge_box((80, 90, 20, 10), 1.5, (100, 100, 3)) == (70, 70, 30, 30)
    assert enlarge_box((10, 10, 80, 80), 1.5, (60, 100, 3))[2:] == (60, 60)  # shrunk to the frame


def test_no_face_falls_back_with_warning():
    frames = np.full((6, 40, 60, 3), 128, np.uint8)
    with pytest.warns(UserWarning, match="no face found in video 'clip7'"):
        crops, info = crop_face_video(frames, size=16, video_id="clip7")
    assert not info["face_found"] and crops.shape == (6, 16, 16, 3)
    assert info["boxes"][0][1] == (10, 0, 40, 40)  # centre square


# ---- transforms ---------------------------------------------------------------------------------
def test_transforms_match_hand_computation():
    x = np.array([1.0, 3.0, 2.0, 2.0]).reshape(4, 1, 1, 1)
    d = np.array([2 / 4, -1 / 5, 0.0])
    d = d / d.std()
    np.testing.assert_allclose(T.diff_normalize_video(x).ravel(), [*d, 0.0], rtol=1e-5)
    assert T.diff_normalize_video(x).dtype == np.float32
    assert not np.isnan(T.diff_normalize_video(np.zeros((3, 2, 2, 3)))).any()
    p = np.array([0.0, 1.0, 3.0, 2.0])
    dp = np.diff(p)
    np.testing.assert_allclose(T.diff_normalize_label(p), [*(dp / dp.std()), 0.0], rtol=1e-6)
    np.testing.assert_allclose(T.standardize_label(p), (p - p.mean()) / p.std(), rtol=1e-6)
    np.testing.assert_allclose(T.standardize_video(x).ravel(), ((x - x.mean()) / x.std()).ravel(), rtol=1e-6)
    c = T.chunk(np.arange(10), 3)
    assert c.shape == (3, 3) and c[-1].tolist() == [6, 7, 8]  # remainder (9) dropped
    assert T.chunk(np.zeros((7, 4, 4, 3)), 2).shape == (3, 2, 4, 4, 3)
    with pytest.raises(ValueError, match="only 5 frames"):
        T.chunk(np.zeros(5), 8)
    assert T.to_ncdhw(np.zeros((5, 4, 3, 2))).shape == (2, 5, 4, 3)
    assert T.to_ncdhw(np.zeros((2, 5, 4, 3, 3))).shape == (2, 3, 5, 4, 3)


# ---- UBFC-rPPG ----------------------------------------------------------------------------------
def test_ubfc_loader_shapes_hr_meta_and_splits(tmp_path):
    root = make_ubfc(tmp_path / "UBFC")
    ds = UBFCrPPG(root, image_size=36, progress=False)
    assert len(ds) == 5 and ds.ids == ["subject1", "subject3", "subject4", "subject8", "subject12"]
    v = ds[1]
    assert isinstance(v, RPPGVideo) and v.id == "subject3" and v.subject == "3"
    assert v.frames.shape == (N_FRAMES, 36, 36, 3) and v.frames.dtype == np.uint8
    assert v.ppg.shape == (N_FRAMES,) and v.ppg.dtype == np.float32 and v.fs == pytest.approx(FS)
    assert v.meta["face_found"] and v.meta["hr_bpm"] == 78.0 and v.meta["sensor_hr_mean"] == pytest.approx(78.0)
    for item in ds:
        hr, bin_bpm = fft_hr(item.ppg, item.fs)
        assert abs(hr - item.meta["hr_bpm"]) <= bin_bpm
    parts = {s: UBFCrPPG(root, split=s, image_size=36, progress=False).subjects for s in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [3, 1, 1]
    assert sorted(sum(parts.values(), []), key=int) == ds.subjects and len(set(sum(parts.values(), []))) == 5
    assert UBFCrPPG(root, split=(0.0, 0.4), image_size=36, progress=False).subjects == ["1", "3"]
    custom = UBFCrPPG(root, split="tiny", split_fractions={"tiny": (0.8, 1.0)}, image_size=36, progress=False)
    assert custom.subjects == ["12"]


def test_ubfc_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    root = make_ubfc(tmp_path / "UBFC", hrs={1: 60.0, 2: 90.0})
    cache = tmp_path / "cache"
    first = UBFCrPPG(root, cache_dir=cache, progress=False)
    assert sorted(p.name for p in cache.iterdir()) == ["subject1.npz", "subject2.npz"]

    def boom(self, item):
        raise AssertionError("read_raw must not run for a cached video")

    monkeypatch.setattr(UBFCrPPG, "read_raw", boom)
    again = UBFCrPPG(root, cache_dir=cache, progress=False)
    assert len(again) == 2 and np.array_equal(again[0].frames, first[0].frames) and not again.skipped
    gt = root / "subject2" / "ground_truth.txt"
    os.utime(gt, ns=(gt.stat().st_atime_ns, gt.stat().st_mtime_ns + 10**9))  # the source changed
    with pytest.warns(UserWarning, match="skipping video 'subject2'"):
        changed = UBFCrPPG(root, cache_dir=cache, progress=False)
    assert changed.ids == ["subject1"]


def test_ubfc_resamples_ppg_and_accepts_mp4(tmp_path):
    root = make_ubfc(tmp_path / "UBFC", hrs={5: 84.0}, ppg_len=2 * N_FRAMES, meta=False)
    frames, _ = face_video(84.0)
    (root / "subject5" / "vid.avi").unlink()
    write_video(root / "subject5" / "vid.mp4", frames, FS, codec="libx264", crf=10)
    v = UBFCrPPG(root, progress=False)[0]
    assert v.ppg.shape == (N_FRAMES,) and v.meta["ppg_resampled_from"] == 2 * N_FRAMES
    hr, bin_bpm = fft_hr(v.ppg, v.fs)
    assert abs(hr - 84.0) <= bin_bpm


def test_ubfc_wrong_layout_shows_expected_tree(tmp_path):
    tree = "subject1/ground_truth.txt   (3 lines: PPG, HR, timestamps)"
    with pytest.raises(DatasetLayoutError, match="does not exist") as err:
        UBFCrPPG(tmp_path / "nope", progress=False)
    assert "expected UBFC-rPPG DATASET_2 layout under" in str(err.value) and tree in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="no subject<N> folders") as err:
        UBFCrPPG(tmp_path / "empty", progress=False)
    assert tree in str(err.value)
    root = make_ubfc(tmp_path / "UBFC", hrs={1: 60.0})
    (root / "subject1" / "ground_truth.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="subject1 has no ground_truth.txt") as err:
        UBFCrPPG(root, progress=False)
    assert tree in str(err.value) and isinstance(err.value, ValueError)


def test_ubfc_corrupt_video_is_skipped(tmp_path):
    root = make_ubfc(tmp_path / "UBFC", hrs={1: 60.0, 2: 90.0, 3: 120.0})
    vid = root / "subject2" / "vid.avi"
    vid.write_bytes(vid.read_bytes()[: vid.stat().st_size // 2])
    with pytest.warns(UserWarning, match="skipping video 'subject2'"):
        ds = UBFCrPPG(root, progress=False)
    assert ds.ids == ["subject1", "subject3"] and len(ds) == 2
    assert ds.skipped[0][0] == "subject2" and "vid.avi" in ds.skipped[0][1]


# ---- PURE ---------------------------------------------------------------------------------------
PURE_HR = {"01-01": 60.0, "01-02": 84.0, "02-01": 108.0, "04-03": 132.0}


def make_pure(root, n=N_FRAMES):
    for name, hr in PURE_HR.items():
        frames, _ = face_video(hr, n)
        fdir = root / name / name
        fdir.mkdir(parents=True)
        t0 = 1_400_000_000_000_000_000
        stamps = [t0 + int(i * 1e9 / FS) for i in range(n)]
        for ts, f in zip(stamps, frames, strict=True):
            cv2.imwrite(str(fdir / f"Image{ts}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        t60 = np.arange(2 * n) / 60.0
        wave = 100 + 50 * np.sin(2 * np.pi * hr / 60.0 * t60)
        full = [{"Timestamp": t0 + int(t * 1e9), "Value": {"waveform": float(w), "pulseRate": hr, "o2saturation": 98}}
                for t, w in zip(t60, wave, strict=True)]
        (root / name / f"{name}.json").write_text(json.dumps({"/FullPackage": full,
                                                              "/Image": [{"Timestamp": s} for s in stamps]}))
    return root


def test_pure_loader(tmp_path):
    root = make_pure(tmp_path / "PURE")
    ds = PURE(root, progress=False)
    assert ds.ids == list(PURE_HR) and ds.subjects == ["1", "2", "4"]
    for v in ds:
        assert v.frames.shape == (N_FRAMES, 72, 72, 3) and v.ppg.shape == (N_FRAMES,) and v.fs == 30.0
        hr, bin_bpm = fft_hr(v.ppg, v.fs)
        assert abs(hr - PURE_HR[v.id]) <= bin_bpm and v.meta["face_found"]
        assert v.meta["ppg_resampled_from"] == 2 * N_FRAMES and v.meta["fps_from_timestamps"] == pytest.approx(30, 0.01)
    train, test = PURE(root, split="train", progress=False), PURE(root, split="test", progress=False)
    assert train.subjects == ["1"] and test.subjects == ["4"] and set(train.ids).isdisjoint(test.ids)
    (root / "02-01" / "02-01.json").unlink()
    with pytest.raises(DatasetLayoutError, match=r"01-01/01-01/Image<ns>\.png"):
        PURE(root, progress=False)


# ---- MMPD ---------------------------------------------------------------------------------------
def test_mmpd_loader(tmp_path):
    root = tmp_path / "MMPD"
    hrs = {(1, 0): 66.0, (1, 1): 96.0, (2, 0): 120.0}
    for (s, k), hr in hrs.items():
        frames, ppg = face_video(hr, 64)
        (root / f"subject{s}").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / f"subject{s}" / f"p{s}_{k}.mat", {
            "video": (frames / 255.0).astype(np.float32), "GT_ppg": ppg[None], "light": "LED-low",
            "motion": "Stationary", "exercise": "False", "skin_color": 3, "gender": "male", "glasser": "False",
            "hair_cover": "False", "makeup": "False"})
    ds = MMPD(root, image_size=40, progress=False)
    assert ds.ids == ["p1_0", "p1_1", "p2_0"] and [ds[i].subject for i in range(3)] == ["1", "1", "2"]
    for v, hr in zip(ds, hrs.values(), strict=True):
        assert v.frames.shape == (64, 40, 40, 3) and v.frames.dtype == np.uint8 and v.fs == 30.0
        assert abs(fft_hr(v.ppg, v.fs)[0] - hr) <= fft_hr(v.ppg, v.fs)[1]
        assert v.meta["light"] == "LED-low" and v.meta["skin_color"] == 3 and v.meta["face_found"]


def test_registered_factories_need_root():
    from mmtrust import registry

    for name, cls in (("ubfc-rppg", UBFCrPPG), ("pure", PURE), ("mmpd", MMPD)):
        info = registry._DATASETS[name]
        assert info.task == "rppg" and not info.builtin
        with pytest.raises(ValueError, match="pass root="):
            info.factory()
        assert cls.name == name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert registry._DATASETS["mmpd"].summary
