"""rPPG benchmark datasets: UBFC-rPPG, PURE, MMPD and COHFACE, read from their original on-disk layouts.

Each video is read once, its face cropped and resized (:func:`mmtrust.data.face.crop_face_video`: Haar on
the first frame, box x1.5, ``INTER_AREA``), and stored as one ``<id>.npz`` in the cache. Items are
:class:`RPPGVideo`: ``frames`` uint8 ``(T, S, S, 3)`` RGB face crops, ``ppg`` float32 ``(T,)`` aligned to
the frames, ``fs`` in Hz and a JSON-able ``meta`` dict. Normalisation and chunking are left to
:mod:`mmtrust.data.transforms`, as in rPPG-Toolbox (whole video first, then chunks).

Toolbox facts followed (spec A.6, C.5):

* Splits are **by subject**: the sorted subject list is cut at fraction ranges ``[begin, end)``
  (``int(begin * n)`` .. ``int(end * n)``), so the default train/val/test ranges are disjoint and cover all.
* UBFC-rPPG DATASET_2: ``subject<N>/vid.avi`` + ``ground_truth.txt`` (line 1 PPG, line 2 HR, line 3
  timestamps), one PPG sample per frame. DATASET_1 (``gtdump.xmp``) is not supported, like the toolbox.
* PURE: ``ii-jj/ii-jj/Image<ns>.png`` + ``ii-jj/ii-jj.json``; the 60 Hz ``/FullPackage`` waveform is
  linearly resampled to the frame count (ignoring timestamps); fs = 30; subject = ``int(name[:2])``.
* MMPD: ``subject<n>/p<n>_<k>.mat`` with ``video`` and ``GT_ppg`` (resampled to the frame count) plus the
  metadata keys ``light, motion, exercise, skin_color, gender, glasser, hair_cover, makeup``.
  fs = 30 is **UNVERIFIED** (the toolbox config uses 30; the dataset's own rate could not be checked).
* COHFACE (Heusch, Anjos, Marcel, "A reproducible study on remote heart rate measurement", arXiv
  1709.00962, 2017; used by SFDA-rPPG): ``<subject>/<session 0..3>/data.avi`` (20 fps, 640x480; some
  releases ``data.mkv``) + ``data.hdf5`` with ``pulse`` (BVP, 256 Hz), ``respiration`` and ``time`` (s).
  The pulse is interpolated at the frame times ``k / fps`` on its own ``time`` axis (the toolbox's
  COHFACE loader instead stretches it to the frame count); subject = the subject folder's name.

The cache folder is ``cache_dir("rppg", <name>, config_hash(root, settings, version))`` unless
``cache_dir=`` is given. Each ``.npz`` also stores a key made of the settings and the size and mtime of
its source files, so a changed source file (or a shared ``cache_dir`` with other settings) is preprocessed
again instead of being served stale.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from mmtrust.data.cache import atomic_path, config_hash
from mmtrust.data.cache import cache_dir as _default_cache_dir
from mmtrust.data.face import HaarFaceDetector, crop_face_video
from mmtrust.data.video import read_video
from mmtrust.registry import register_dataset

__all__ = ["RPPGVideo", "VideoItem", "RPPGVideoDataset", "DatasetLayoutError", "UBFCrPPG", "PURE", "MMPD",
           "COHFACE", "DEFAULT_SPLITS", "resample_to_length"]

CACHE_VERSION = 1
DEFAULT_SPLITS: dict[str, tuple[float, float]] = {
    "train": (0.0, 0.6), "val": (0.6, 0.8), "test": (0.8, 1.0), "all": (0.0, 1.0)}
MMPD_META_KEYS = ("light", "motion", "exercise", "skin_color", "gender", "glasser", "hair_cover", "makeup")


class DatasetLayoutError(ValueError):
    """The dataset folder does not have the expected layout; the message shows the expected tree."""


@dataclass
class RPPGVideo:
    """One preprocessed video: ``frames`` uint8 ``(T, S, S, 3)`` RGB face crops, ``ppg`` float32 ``(T,)``."""

    id: str
    subject: str
    frames: np.ndarray
    ppg: np.ndarray
    fs: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        return len(self) / self.fs


class VideoItem(NamedTuple):
    """What :meth:`RPPGVideoDataset.discover` finds: an id, a subject and the source files by role."""

    id: str
    subject: str
    source: dict[str, Path]


def _natural_key(name: str) -> list[object]:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", str(name))]


def resample_to_length(signal: np.ndarray, length: int) -> np.ndarray:
    """Linearly resample a 1-D signal to ``length`` samples over the same span (``np.interp``, as the toolbox)."""
    signal = np.asarray(signal, dtype=np.float64).ravel()
    if len(signal) == length:
        return signal
    if len(signal) < 2:
        raise ValueError(f"cannot resample a signal of {len(signal)} samples to {length}")
    return np.interp(np.linspace(0, len(signal) - 1, length), np.arange(len(signal)), signal)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


class RPPGVideoDataset:
    """Base class: discovery, subject-wise splits, one-time preprocessing into a cache, and loading.

    Subclasses set ``name`` (registry and cache name), ``title`` and ``layout`` (the expected tree, shown
    in :class:`DatasetLayoutError`) and implement :meth:`discover` and :meth:`read_raw`.

    ``split`` is a key of ``split_fractions`` (defaults :data:`DEFAULT_SPLITS`, merged with the given ones)
    or a ``(begin, end)`` fraction tuple. Videos that cannot be read are skipped with a warning and listed
    in ``.skipped`` as ``(id, reason)``.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    layout: ClassVar[str] = ""

    def __init__(self, root: str | Path, split: str | tuple[float, float] = "all", image_size: int = 72,
                 box_coef: float = 1.5, dynamic_detection: bool = False,
                 split_fractions: dict[str, tuple[float, float]] | None = None,
                 cache_dir: str | Path | None = None, progress: bool = True,
                 detection_stride: int | None = None) -> None:
        if root is None:
            raise ValueError(f"{self.title} needs root=<dataset folder>.\n{self._expected(Path('<root>'))}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise self.layout_error("the root folder does not exist" if not self.root.exists()
                                    else "the root is not a folder")
        items = sorted(self.discover(self.root), key=lambda it: _natural_key(it.id))
        if not items:
            raise self.layout_error("no videos found")
        self.split_fractions = {**DEFAULT_SPLITS, **(split_fractions or {})}
        self.split = split
        begin, end = self._fractions(split)
        all_subjects = sorted({it.subject for it in items}, key=_natural_key)
        n = len(all_subjects)
        self.subjects: list[str] = all_subjects[math.floor(begin * n + 1e-9):math.floor(end * n + 1e-9)]
        chosen = set(self.subjects)
        self.items: list[VideoItem] = [it for it in items if it.subject in chosen]
        if not self.items:
            warnings.warn(f"{self.title}: split {split!r} selects no subject out of {n}", stacklevel=2)
        self.image_size, self.box_coef = int(image_size), float(box_coef)
        self.dynamic_detection, self.detection_stride = bool(dynamic_detection), detection_stride
        self.settings = {"dataset": self.name, "image_size": self.image_size, "box_coef": self.box_coef,
                         "dynamic": self.dynamic_detection, "stride": detection_stride,
                         "detector": "haar frontalface_default 1.1/3/30",
                         "version": CACHE_VERSION}
        self.cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache_dir(
            "rppg", self.name, config_hash({"root": str(self.root.resolve()), **self.settings}))
        self.progress = progress
        self.skipped: list[tuple[str, str]] = []
        self._ready: list[VideoItem] = []
        self.prepare()

    # ---- per-dataset hooks -------------------------------------------------------------------------
    def discover(self, root: Path) -> list[VideoItem]:
        """Find the videos under ``root``; raise :class:`DatasetLayoutError` for a wrong layout."""
        raise NotImplementedError

    def read_raw(self, item: VideoItem) -> tuple[Any, ...]:
        """``(frames uint8 (T,H,W,3) RGB, ppg (T,), fs)`` or the same plus a ``meta`` dict."""
        raise NotImplementedError

    # ---- helpers ------------------------------------------------------------------------------------
    def _expected(self, root: Path) -> str:
        return f"expected {self.title} layout under {root}:\n{self.layout.rstrip()}"

    def layout_error(self, problem: str) -> DatasetLayoutError:
        return DatasetLayoutError(f"{self.title}: {problem} in {self.root}\n{self._expected(self.root)}")

    def _fractions(self, split: str | tuple[float, float]) -> tuple[float, float]:
        if isinstance(split, str):
            if split not in self.split_fractions:
                raise ValueError(f"unknown split {split!r}; known: {', '.join(self.split_fractions)} "
                                 "or a (begin, end) fraction tuple")
            split = self.split_fractions[split]
        begin, end = (float(v) for v in split)
        if not 0.0 <= begin <= end <= 1.0:
            raise ValueError(f"split fractions must satisfy 0 <= begin <= end <= 1, got ({begin}, {end})")
        return begin, end

    def _cache_file(self, item: VideoItem) -> Path:
        return self.cache_dir / (re.sub(r"[^\w.-]", "_", item.id) + ".npz")

    def _key(self, item: VideoItem) -> str:
        stats = {}
        for role, p in sorted(item.source.items()):
            st = p.stat() if p.exists() else None
            stats[role] = [str(p), st.st_size, st.st_mtime_ns] if st else [str(p), None, None]
        return config_hash({"settings": self.settings, "source": stats}, n=24)

    def _is_cached(self, item: VideoItem) -> bool:
        try:
            with np.load(self._cache_file(item)) as z:
                return str(z["key"]) == self._key(item)
        except Exception:  # noqa: BLE001 - missing or unreadable cache file: preprocess again
            return False

    def prepare(self) -> None:
        """Preprocess every selected video that is not cached yet (called by ``__init__``)."""
        todo = [it for it in self.items if not self._is_cached(it)]
        bad: dict[str, str] = {}
        if todo:
            from tqdm.auto import tqdm

            detector = HaarFaceDetector()
            for item in tqdm(todo, desc=f"{self.title}: preprocessing", unit="video", disable=not self.progress):
                try:
                    self._preprocess(item, detector)
                except Exception as err:  # noqa: BLE001 - one bad video must not stop the dataset
                    reason = f"{type(err).__name__}: {err}"
                    warnings.warn(f"{self.title}: skipping video {item.id!r}: {reason}", stacklevel=2)
                    bad[item.id] = reason
        self.skipped = list(bad.items())
        self._ready = [it for it in self.items if it.id not in bad]

    def _preprocess(self, item: VideoItem, detector: HaarFaceDetector | None = None) -> None:
        raw = self.read_raw(item)
        frames, ppg, fs = raw[:3]
        extra = dict(raw[3]) if len(raw) > 3 else {}
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
            raise ValueError(f"read_raw returned frames {frames.dtype} {frames.shape}, need uint8 (T, H, W, 3)")
        ppg = np.asarray(ppg, dtype=np.float64).ravel()
        if len(ppg) != len(frames):
            extra.setdefault("ppg_resampled_from", len(ppg))
            ppg = resample_to_length(ppg, len(frames))
        crops, info = crop_face_video(frames, self.image_size, self.box_coef, dynamic=self.dynamic_detection,
                                      detector=detector, detection_stride=self.detection_stride,
                                      video_id=item.id)
        meta = {"source": str(next(iter(item.source.values()))), "face_found": info["face_found"],
                "face_box": list(info["boxes"][0][1]), "raw_size": [int(frames.shape[2]), int(frames.shape[1])],
                "n_frames": len(frames), **extra}
        with atomic_path(self._cache_file(item)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, frames=crops, ppg=ppg.astype(np.float32), fs=np.float64(fs), id=np.str_(item.id),
                     subject=np.str_(item.subject), meta=np.str_(json.dumps(meta, default=_jsonable)),
                     key=np.str_(self._key(item)))

    # ---- access ------------------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return [it.id for it in self._ready]

    def __len__(self) -> int:
        return len(self._ready)

    def __getitem__(self, index: int) -> RPPGVideo:
        item = self._ready[index]
        path = self._cache_file(item)
        if not path.exists():  # cache cleared since construction
            self._preprocess(item)
        with np.load(path) as z:
            return RPPGVideo(id=str(z["id"]), subject=str(z["subject"]), frames=z["frames"], ppg=z["ppg"],
                             fs=float(z["fs"]), meta=json.loads(str(z["meta"])))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, videos={len(self)}, "
                f"subjects={len(self.subjects)}, skipped={len(self.skipped)})")


# ---------------------------------------------------------------------------------------------------
class UBFCrPPG(RPPGVideoDataset):
    """UBFC-rPPG DATASET_2: ``subject<N>/vid.avi`` + ``ground_truth.txt`` (optional ``meta.json``)."""

    name = "ubfc-rppg"
    title = "UBFC-rPPG DATASET_2"
    layout = ("  subject1/vid.avi            (or vid.mp4 / vid.mkv)\n"
              "  subject1/ground_truth.txt   (3 lines: PPG, HR, timestamps)\n"
              "  subject1/meta.json          (optional: extra per-video metadata)\n"
              "  subject3/...\n")
    video_names = ("vid.avi", "vid.mp4", "vid.mkv")

    def discover(self, root: Path) -> list[VideoItem]:
        dirs = [d for d in root.iterdir() if d.is_dir() and re.fullmatch(r"subject(\d+)", d.name)]
        if not dirs:
            raise self.layout_error("no subject<N> folders")
        items = []
        for d in dirs:
            video = next((d / n for n in self.video_names if (d / n).is_file()), None)
            gt = d / "ground_truth.txt"
            if (d / "gtdump.xmp").exists() and not gt.exists():
                raise self.layout_error(f"{d.name} holds gtdump.xmp: that is UBFC DATASET_1, which is not supported")
            if video is None:
                raise self.layout_error(f"{d.name} has no {' / '.join(self.video_names)}")
            if not gt.is_file():
                raise self.layout_error(f"{d.name} has no ground_truth.txt")
            src = {"video": video, "ground_truth": gt}
            if (d / "meta.json").is_file():
                src["meta"] = d / "meta.json"
            items.append(VideoItem(d.name, d.name[len("subject"):], src))
        return items

    def read_raw(self, item: VideoItem) -> tuple[Any, ...]:
        clip = read_video(item.source["video"])
        lines = [ln.split() for ln in item.source["ground_truth"].read_text().splitlines() if ln.strip()]
        if not lines:
            raise ValueError(f"{item.source['ground_truth']}: empty ground-truth file")
        ppg = np.asarray(lines[0], dtype=np.float64)
        meta: dict[str, Any] = {"video_fps": clip.fps}
        if len(lines) > 1:
            meta["sensor_hr_mean"] = float(np.mean(np.asarray(lines[1], dtype=np.float64)))
        if "meta" in item.source:
            meta.update(json.loads(item.source["meta"].read_text()))
        return clip.frames, ppg, clip.fps, meta


class PURE(RPPGVideoDataset):
    """PURE: ``ii-jj/ii-jj/Image<ns>.png`` frames + ``ii-jj/ii-jj.json`` (60 Hz pulse oximeter)."""

    name = "pure"
    title = "PURE"
    layout = ("  01-01/01-01.json             (\"/FullPackage\": 60 Hz {\"Value\": {\"waveform\", ...}},"
              " \"/Image\": frame timestamps)\n"
              "  01-01/01-01/Image<ns>.png    (30 fps PNG frames, sorted by name)\n"
              "  01-02/...\n")
    fs = 30.0
    ppg_fs = 60.0

    def discover(self, root: Path) -> list[VideoItem]:
        dirs = [d for d in root.iterdir() if d.is_dir() and re.fullmatch(r"\d{2}-\d{2}", d.name)]
        if not dirs:
            raise self.layout_error("no ii-jj session folders")
        items = []
        for d in dirs:
            frames, js = d / d.name, d / f"{d.name}.json"
            if not frames.is_dir():
                raise self.layout_error(f"{d.name} has no frame folder {d.name}/{d.name}/")
            if not js.is_file():
                raise self.layout_error(f"{d.name} has no ground-truth file {d.name}/{d.name}.json")
            items.append(VideoItem(d.name, str(int(d.name[:2])), {"frames": frames, "ground_truth": js}))
        return items

    def read_raw(self, item: VideoItem) -> tuple[Any, ...]:
        clip = read_video(item.source["frames"], fps=self.fs)
        data = json.loads(item.source["ground_truth"].read_text())
        packages = data["/FullPackage"]
        ppg = np.asarray([p["Value"]["waveform"] for p in packages], dtype=np.float64)
        meta: dict[str, Any] = {"ppg_fs": self.ppg_fs}
        rates = [p["Value"].get("pulseRate") for p in packages if p["Value"].get("pulseRate") is not None]
        if rates:
            meta["sensor_hr_mean"] = float(np.mean(rates))
        stamps = [im["Timestamp"] for im in data.get("/Image", [])]
        if len(stamps) > 1:
            meta["fps_from_timestamps"] = float((len(stamps) - 1) / ((stamps[-1] - stamps[0]) * 1e-9))
            if len(stamps) != len(clip):
                meta["n_image_timestamps"] = len(stamps)
        return clip.frames, ppg, self.fs, meta


def _load_mat(path: Path) -> dict[str, Any]:
    """``scipy.io.loadmat``; MATLAB v7.3 (HDF5) files through ``h5py`` when it is installed."""
    import scipy.io

    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError as err:  # v7.3
        try:
            import h5py
        except ImportError:
            raise OSError(f"{path} is a MATLAB v7.3 (HDF5) file; reading it needs h5py "
                          "(pip install h5py)") from err
        out: dict[str, Any] = {}
        with h5py.File(path, "r") as f:  # not covered by tests: h5py is not a dependency
            for key, ds in f.items():
                if not isinstance(ds, h5py.Dataset):
                    continue
                arr = np.asarray(ds[()])
                if ds.attrs.get("MATLAB_class") in (b"char", "char"):
                    out[key] = "".join(map(chr, arr.ravel()))
                else:
                    out[key] = arr.T  # MATLAB stores column-major: reverse the axes
        return out


def _mat_scalar(v: Any) -> Any:
    arr = np.asarray(v)
    if arr.dtype.kind in "US":
        return " ".join(str(s).strip() for s in arr.ravel())
    if arr.dtype == object:
        return " ".join(str(_mat_scalar(s)) for s in arr.ravel())
    return arr.item() if arr.size == 1 else arr.tolist()


class MMPD(RPPGVideoDataset):
    """MMPD: ``subject<n>/p<n>_<k>.mat`` with ``video``, ``GT_ppg`` and recording conditions."""

    name = "mmpd"
    title = "MMPD"
    layout = ("  subject1/p1_0.mat   (keys: video (T,H,W,3) float in [0,1] or uint8, GT_ppg,\n"
              "                      light, motion, exercise, skin_color, gender, glasser, hair_cover, makeup)\n"
              "  subject1/p1_1.mat\n"
              "  subject2/...\n")
    fs = 30.0  # UNVERIFIED: the toolbox config value; the dataset's own frame rate could not be checked

    def discover(self, root: Path) -> list[VideoItem]:
        dirs = [d for d in root.iterdir() if d.is_dir() and re.fullmatch(r"subject(\d+)", d.name)]
        if not dirs:
            raise self.layout_error("no subject<n> folders")
        items = []
        for d in dirs:
            mats = [m for m in d.glob("*.mat") if re.fullmatch(r"p\d+_\d+\.mat", m.name)]
            if not mats:
                raise self.layout_error(f"{d.name} holds no p<n>_<k>.mat files")
            items += [VideoItem(m.stem, d.name[len("subject"):], {"mat": m}) for m in mats]
        return items

    def read_raw(self, item: VideoItem) -> tuple[Any, ...]:
        mat = _load_mat(item.source["mat"])
        for key in ("video", "GT_ppg"):
            if key not in mat:
                raise KeyError(f"{item.source['mat']} has no {key!r} variable")
        video = np.asarray(mat["video"])
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"{item.source['mat']}: video has shape {video.shape}, expected (T, H, W, 3)")
        if video.dtype != np.uint8:  # float in [0, 1]: convert frame by frame to bound the memory
            scale = 255.0 if float(video.max(initial=0.0)) <= 1.0 else 1.0
            frames = np.empty(video.shape, np.uint8)
            for t in range(len(video)):
                frames[t] = np.clip(np.round(video[t] * scale), 0, 255)
            video = frames
        meta = {k: _mat_scalar(mat[k]) for k in MMPD_META_KEYS if k in mat}
        meta["fs_unverified"] = True
        return video, np.asarray(mat["GT_ppg"], dtype=np.float64).ravel(), self.fs, meta


def _import_h5py(what: str) -> Any:
    try:
        import h5py
    except ImportError as err:
        raise ImportError(f"{what} needs h5py to read its .hdf5 files: pip install h5py "
                          '(or pip install "mmtrust[singlecell]", which includes it)') from err
    return h5py


class COHFACE(RPPGVideoDataset):
    """COHFACE: ``<subject>/<session>/data.avi`` (20 fps) + ``data.hdf5`` (``pulse`` at 256 Hz, ``time``).

    The pulse is resampled to the video frames by its timestamps: ``np.interp(k / fps, time, pulse)``
    (the frame clock starts with the pulse clock, as in the dataset's own reference code). Without a
    ``time`` dataset the pulse is taken as uniformly sampled at :attr:`ppg_fs` (256 Hz)."""

    name = "cohface"
    title = "COHFACE"
    layout = ("  1/0/data.avi     (20 fps, 640x480; or data.mkv)\n"
              "  1/0/data.hdf5    (datasets: pulse (BVP, 256 Hz), time (s), respiration)\n"
              "  1/1/...          (sessions 0..3 per subject)\n"
              "  2/0/...\n"
              "  (root is the folder that holds the numbered subject folders, e.g. cohface/ or RawData/)\n")
    fs = 20.0  # used when the container declares no frame rate
    ppg_fs = 256.0
    video_names = ("data.avi", "data.mkv")

    def discover(self, root: Path) -> list[VideoItem]:
        subjects = [d for d in root.iterdir() if d.is_dir() and d.name.isdigit()]
        if not subjects:
            nested = [d.name for d in root.iterdir() if d.is_dir() and any(
                s.is_dir() and s.name.isdigit() for s in d.iterdir())]
            hint = f" (did you mean {root / nested[0]}?)" if nested else ""
            raise self.layout_error(f"no numbered subject folders{hint}")
        items = []
        for d in subjects:
            sessions = [s for s in d.iterdir() if s.is_dir() and s.name.isdigit()]
            if not sessions:
                raise self.layout_error(f"subject {d.name} has no numbered session folders (0..3)")
            for sdir in sessions:
                video = next((sdir / n for n in self.video_names if (sdir / n).is_file()), None)
                if video is None:
                    raise self.layout_error(f"{d.name}/{sdir.name} has no {' / '.join(self.video_names)}")
                h5 = sdir / "data.hdf5"
                if not h5.is_file():
                    raise self.layout_error(f"{d.name}/{sdir.name} has no data.hdf5")
                items.append(VideoItem(f"{d.name}-{sdir.name}", d.name, {"video": video, "ground_truth": h5}))
        _import_h5py(self.title)  # the layout fits: fail here, clearly, rather than skip every video later
        return items

    def read_raw(self, item: VideoItem) -> tuple[Any, ...]:
        from mmtrust.data.video import probe_fps

        h5py = _import_h5py(self.title)
        path = item.source["ground_truth"]
        with h5py.File(path, "r") as f:
            if "pulse" not in f:
                raise KeyError(f"{path} has no 'pulse' dataset (found: {sorted(f.keys())})")
            pulse = np.asarray(f["pulse"][()], dtype=np.float64).ravel()
            stamps = np.asarray(f["time"][()], dtype=np.float64).ravel() if "time" in f else None
            has_resp = "respiration" in f
        if stamps is None or len(stamps) != len(pulse):
            stamps = np.arange(len(pulse)) / self.ppg_fs
        if len(pulse) < 2:
            raise ValueError(f"{path}: the pulse has {len(pulse)} samples")
        video = item.source["video"]
        fps = probe_fps(video) or self.fs
        clip = read_video(video, fps=fps)
        frame_t = stamps[0] + np.arange(len(clip)) / fps
        ppg = np.interp(frame_t, stamps, pulse)
        span = float(stamps[-1] - stamps[0])
        meta: dict[str, Any] = {"video_fps": fps, "session": int(Path(video).parent.name),
                                "ppg_fs": round((len(pulse) - 1) / span, 3) if span > 0 else None,
                                "ppg_seconds": round(span, 3), "video_seconds": round(len(clip) / fps, 3),
                                "respiration": has_resp}
        return clip.frames, ppg, fps, meta


# ---- registry --------------------------------------------------------------------------------------
def _make(cls: type[RPPGVideoDataset], root: str | Path | None, split: Any, kw: dict[str, Any]) -> Any:
    if root is None:
        raise ValueError(f"dataset {cls.name!r} is not built in: pass root=<folder with the downloaded data>\n"
                         f"expected {cls.title} layout under <root>:\n{cls.layout.rstrip()}")
    return cls(root, split=split, **kw)


_SPLITS = ("train", "val", "test", "all")


@register_dataset("ubfc-rppg", task="rppg", builtin=False, splits=_SPLITS, layout=UBFCrPPG.layout,
                  summary="UBFC-rPPG DATASET_2 (42 subjects, 30 fps, PPG per frame); needs root=")
def ubfc_rppg(root: str | Path | None = None, split: Any = "all", **kw: Any) -> UBFCrPPG:
    return _make(UBFCrPPG, root, split, kw)


@register_dataset("pure", task="rppg", builtin=False, splits=_SPLITS, layout=PURE.layout,
                  summary="PURE (10 subjects x 6 setups, 30 fps PNG, 60 Hz pulse oximeter); needs root=")
def pure(root: str | Path | None = None, split: Any = "all", **kw: Any) -> PURE:
    return _make(PURE, root, split, kw)


@register_dataset("mmpd", task="rppg", builtin=False, splits=_SPLITS, layout=MMPD.layout,
                  summary="MMPD (.mat videos with GT_ppg and recording conditions; fs=30 unverified); needs root=")
def mmpd(root: str | Path | None = None, split: Any = "all", **kw: Any) -> MMPD:
    return _make(MMPD, root, split, kw)


@register_dataset("cohface", task="rppg", builtin=False, splits=_SPLITS, layout=COHFACE.layout,
                  summary="COHFACE (40 subjects x 4 sessions, 20 fps AVI, 256 Hz BVP in HDF5); needs root=")
def cohface(root: str | Path | None = None, split: Any = "all", **kw: Any) -> COHFACE:
    return _make(COHFACE, root, split, kw)
