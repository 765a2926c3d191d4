"""COHFACE loader on a tiny fake copy of its layout: ``<subject>/<session>/data.avi`` + ``data.hdf5``.

The frames are a real face photo (skimage's astronaut) whose brightness pulses at a known heart rate; the
HDF5 file holds a 256 Hz ``pulse`` with its ``time`` axis, and ``respiration``, as the real release does.
"""

from __future__ import annotations

import functools
import sys

import cv2
import numpy as np
import pytest

from mmtrust.data.rppg_datasets import COHFACE, DatasetLayoutError, RPPGVideo
from mmtrust.data.video import write_video
from test_rppg_data import fft_hr  # the test-side HR oracle, shared

h5py = pytest.importorskip("h5py")

FS = 20.0
PPG_FS = 256.0
N_FRAMES = 64
SIZE = 64
HRS = {("1", "0"): 60.0, ("1", "1"): 84.0, ("2", "0"): 108.0, ("10", "2"): 132.0}


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTRUST_CACHE", str(tmp_path / "mmtrust-cache"))


@functools.lru_cache(maxsize=1)
def _face() -> np.ndarray:
    from skimage import data

    return cv2.resize(data.astronaut()[33:193, 144:304], (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def make_session(d, hr: float, n: int = N_FRAMES, pulse_s: float | None = None, t0: float = 0.0,
                 video: str = "data.avi", time: bool = True) -> None:
    """One session folder: a pulsing face video at 20 fps and its HDF5 (pulse + time + respiration)."""
    d.mkdir(parents=True, exist_ok=True)
    pulse_frames = np.sin(2 * np.pi * hr / 60.0 * np.arange(n) / FS)
    frames = np.clip(_face().astype(np.float32)[None] * (1 + 0.02 * pulse_frames[:, None, None, None]), 0, 255)
    write_video(d / video, frames.astype(np.uint8), FS, codec="ffv1")
    t = t0 + np.arange(int((pulse_s or n / FS) * PPG_FS)) / PPG_FS
    with h5py.File(d / "data.hdf5", "w") as f:
        f["pulse"] = 2.0 + np.sin(2 * np.pi * hr / 60.0 * (t - t0))
        if time:
            f["time"] = t
        f["respiration"] = np.sin(2 * np.pi * 0.25 * t)


def make_cohface(root, hrs=HRS):
    for (subject, session), hr in hrs.items():
        make_session(root / subject / session, hr, video="data.mkv" if subject == "10" else "data.avi")
    return root


def test_cohface_loader_shapes_hr_and_splits(tmp_path):
    root = make_cohface(tmp_path / "cohface")
    ds = COHFACE(root, image_size=36, progress=False)
    assert ds.ids == ["1-0", "1-1", "2-0", "10-2"] and ds.subjects == ["1", "2", "10"]
    for v, ((subject, session), hr) in zip(ds, HRS.items(), strict=True):
        assert isinstance(v, RPPGVideo) and v.subject == subject and v.meta["session"] == int(session)
        assert v.frames.shape == (N_FRAMES, 36, 36, 3) and v.frames.dtype == np.uint8
        assert v.ppg.shape == (N_FRAMES,) and v.fs == pytest.approx(FS) and v.meta["face_found"]
        assert v.meta["ppg_fs"] == pytest.approx(PPG_FS) and v.meta["respiration"]
        got, bin_bpm = fft_hr(v.ppg, v.fs)
        assert abs(got - hr) <= bin_bpm
    assert COHFACE(root, split=(0.0, 0.34), progress=False).ids == ["1-0", "1-1"]  # by subject
    assert COHFACE(root, split="test", progress=False).subjects == ["10"]


def test_cohface_resamples_the_pulse_by_its_timestamps(tmp_path):
    # the pulse runs twice as long as the video and starts at t0 = 5 s: the frames take the first half,
    # at the frame times (stretching it to the frame count would halve the heart rate)
    root = tmp_path / "cohface"
    make_session(root / "3" / "0", 90.0, pulse_s=2 * N_FRAMES / FS, t0=5.0)
    v = COHFACE(root, progress=False)[0]
    expected = 2.0 + np.sin(2 * np.pi * 1.5 * np.arange(N_FRAMES) / FS)
    assert np.allclose(v.ppg, expected, atol=1e-3)  # linear interpolation of a 256 Hz sine
    assert v.meta["ppg_seconds"] == pytest.approx(2 * N_FRAMES / FS, abs=0.01)
    # without a time dataset the pulse is taken as uniform at 256 Hz
    make_session(root / "4" / "0", 90.0, pulse_s=2 * N_FRAMES / FS, time=False)
    w = COHFACE(root, progress=False)[1]
    assert w.id == "4-0" and np.allclose(w.ppg, expected, atol=1e-3)


def test_cohface_wrong_layout_shows_expected_tree(tmp_path):
    tree = "1/0/data.hdf5    (datasets: pulse (BVP, 256 Hz), time (s), respiration)"
    with pytest.raises(DatasetLayoutError, match="does not exist") as err:
        COHFACE(tmp_path / "nope", progress=False)
    assert "expected COHFACE layout under" in str(err.value) and tree in str(err.value)
    make_cohface(tmp_path / "release" / "RawData", {("1", "0"): 60.0})
    with pytest.raises(DatasetLayoutError, match="no numbered subject folders .did you mean .*RawData") as err:
        COHFACE(tmp_path / "release", progress=False)
    assert tree in str(err.value)
    root = tmp_path / "release" / "RawData"
    (root / "2").mkdir()
    with pytest.raises(DatasetLayoutError, match="subject 2 has no numbered session folders"):
        COHFACE(root, progress=False)
    (root / "2").rmdir()
    (root / "1" / "0" / "data.hdf5").unlink()
    with pytest.raises(DatasetLayoutError, match="1/0 has no data.hdf5") as err:
        COHFACE(root, progress=False)
    assert tree in str(err.value) and isinstance(err.value, ValueError)
    (root / "1" / "0" / "data.avi").unlink()
    with pytest.raises(DatasetLayoutError, match="1/0 has no data.avi / data.mkv"):
        COHFACE(root, progress=False)


def test_cohface_without_h5py_says_how_to_install(tmp_path, monkeypatch):
    root = make_cohface(tmp_path / "cohface", {("1", "0"): 60.0})
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(ImportError, match="pip install h5py"):
        COHFACE(root, progress=False)


def test_cohface_is_registered_and_needs_root(tmp_path):
    from mmtrust import load_dataset, registry

    info = registry._DATASETS["cohface"]
    assert info.task == "rppg" and not info.builtin and "data.hdf5" in info.extra["layout"]
    with pytest.raises(ValueError, match="pass root="):
        info.factory()
    root = make_cohface(tmp_path / "cohface", {("7", "1"): 72.0})
    ds = load_dataset("cohface", root=str(root), split="all", image_size=32, progress=False)
    assert isinstance(ds, COHFACE) and ds.ids == ["7-1"] and ds[0].frames.shape[1:] == (32, 32, 3)
