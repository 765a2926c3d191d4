"""Deepfake benchmark loaders: FaceForensics++, DFD, Celeb-DF v2, DFDC, DeeperForensics-1.0, WildDeepfake, DiFF.

**Labels: 1 = fake, 0 = real** everywhere (whatever the dataset's own files say).

Every video loader finds its videos in the dataset's original on-disk layout, selects a split, samples
``n_frames`` frames **evenly over the whole video** (:func:`~mmtrust.data.forgery_base.even_frame_indices`,
not the first N), detects the face in each sampled frame (``detector="auto"``: RetinaFace, else Haar;
where a frame has no face the previous frame's box is reused, then the next one's, then the centre
square, and ``meta["face_found"]`` counts the hits), crops a square x(1 + ``crop_margin``) box around it
(x1.3 by default, as FF++ / DeepfakeBench preprocessing) resized to ``image_size``, and caches the crops of
each video once as ``<id>.npz`` (keyed by the settings and the source file's size and mtime). Items are
:class:`~mmtrust.data.forgery_base.ForgeryVideo`; :meth:`ForgeryVideoDataset.frames` gives the frame-level
view (:class:`~mmtrust.data.forgery_base.ForgerySample` per frame, ``video`` = the video id, for
video-level metrics).

A video that cannot be decoded is skipped with a warning naming it (listed in ``.skipped``), or raises with
``strict=True``. A wrong layout or a missing split file raises :class:`DatasetLayoutError` with the expected
tree.

Facts used (from the datasets' own releases; see the docstring of each class): FF++ tree, method names,
``<target>_<source>`` fake names, official ``splits/{train,val,test}.json`` (lists of id pairs; 360/70/70
pairs = 720/140/140 real videos); Celeb-DF v2 folders and ``List_of_testing_videos.txt`` (``<flag> <path>``
lines, where the flag is **1 for real**, 0 for fake); DFDC ``metadata.json`` per part (``{"x.mp4":
{"label": "FAKE"|"REAL", "split", "original"}}``) and ``labels.csv`` (``filename,label``, 1 = fake) for the
test set. Layouts marked *partly verified* (DeeperForensics, WildDeepfake, DiFF) follow widely used
third-party preparation code, not an official specification.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmtrust.data.cache import atomic_path, config_hash
from mmtrust.data.cache import cache_dir as _default_cache_dir
from mmtrust.data.forgery_base import FAKE, REAL, ForgerySample, ForgeryVideo, even_frame_indices
from mmtrust.data.rppg_datasets import DatasetLayoutError
from mmtrust.data.video import IMAGE_SUFFIXES, VideoReadError
from mmtrust.registry import register_dataset

__all__ = ["VideoEntry", "ForgeryVideoDataset", "FaceForensicsPP", "DFD", "CelebDFv2", "DFDC",
           "DeeperForensics", "WildDeepfake", "DiFF", "DeepfakeBenchJSON", "DatasetLayoutError", "FF_METHODS",
           "sample_frames", "export_deepfakebench_json"]

CACHE_VERSION = 1
FF_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
FF_EXTRA_METHODS = ("FaceShifter",)
FF_COMPRESSIONS = ("raw", "c23", "c40")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
SPLITS = ("train", "val", "test", "all")


@dataclass
class VideoEntry:
    """A video found in a dataset: ``source`` is a video file or a frame folder; ``label`` 1 = fake."""

    id: str
    source: Path
    label: int
    forgery_type: str
    split: str
    meta: dict[str, Any] = field(default_factory=dict)


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(name))]


def _frame_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: _natural_key(p.name))


def _count_frames(path: Path) -> int:
    import av

    try:
        with av.open(str(path)) as c:
            n = int(c.streams.video[0].frames or 0)
            if n > 0:
                return n
            return sum(1 for _ in c.decode(video=0))
    except (av.FFmpegError, IndexError, OSError) as err:
        raise VideoReadError(f"{path}: cannot open video ({err})") from err


def sample_frames(source: Path, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``n`` frames evenly spread over a video file or frame folder: ``(frames (n, H, W, 3), indices, total)``."""
    import cv2

    from mmtrust.data.video import iter_frames

    source = Path(source)
    if source.is_dir():
        files = _frame_files(source)
        if not files:
            raise VideoReadError(f"{source}: folder holds no image frames")
        idx = even_frame_indices(len(files), n)
        out = []
        for i in idx:
            img = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
            if img is None:
                raise VideoReadError(f"{files[i]}: cannot read image frame")
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        return np.stack(out), idx, len(files)
    if not source.is_file() or source.stat().st_size == 0:
        raise VideoReadError(f"{source}: missing or empty video file")
    total = _count_frames(source)
    for _ in range(2):  # a container may announce more frames than it holds: retry with the real count
        idx = even_frame_indices(total, n)
        want, got, k = set(idx.tolist()), [], -1
        for k, frame in enumerate(iter_frames(source)):
            if k in want:
                got.append(frame)
                if len(got) == len(idx):
                    break
        if len(got) == len(idx):
            return np.stack(got), idx, total
        if k < 0:
            raise VideoReadError(f"{source}: no frame could be decoded")
        total = k + 1
    raise VideoReadError(f"{source}: frame count keeps changing while decoding")  # pragma: no cover


class ForgeryVideoDataset:
    """Base class: discovery, split selection, even frame sampling, per-video face-crop cache, access.

    Subclasses set ``name``, ``title``, ``layout`` (shown in errors) and implement :meth:`discover`
    (all videos with their split; ``"all"`` keeps every video).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    #: False for datasets whose frames are already face crops (they are only resized); option ``face_crop``
    face_crop: ClassVar[bool] = True
    #: dataset-specific keyword options this loader understands (besides ``face_crop``)
    known_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, root: str | Path, split: str = "test", n_frames: int = 8, image_size: int = 224,
                 crop_margin: float = 0.3, detector: str | Any = "auto", cache_dir: str | Path | None = None,
                 progress: bool = True, strict: bool = False, lazy: bool = False, **options: Any) -> None:
        if root is None:
            raise ValueError(f"{self.title} needs root=<dataset folder>.\n{self._expected(Path('<root>'))}")
        self.root = Path(root).expanduser()
        unknown = set(options) - set(self.known_options) - {"face_crop"}
        if unknown:
            raise TypeError(f"{self.title}: unknown option(s) {sorted(unknown)}; "
                            f"known: {', '.join(self.known_options + ('face_crop',))}")
        self.options = options
        if not self.root.is_dir():
            raise self.layout_error("the root folder does not exist" if not self.root.exists() else "root is not a folder")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        self.split = split
        entries = sorted(self.discover(self.root), key=lambda e: _natural_key(e.id))
        if not entries:
            raise self.layout_error("no videos found")
        self.entries = [e for e in entries if split == "all" or e.split == split]
        if not self.entries:
            warnings.warn(f"{self.title}: split {split!r} holds no video", stacklevel=2)
        self.n_frames, self.image_size, self.crop_margin = int(n_frames), int(image_size), float(crop_margin)
        self._detector_arg = detector
        det_name = detector if isinstance(detector, str) else getattr(detector, "name", type(detector).__name__)
        if det_name == "auto":
            from mmtrust.data.faces.detect import AUTO_ORDER, DETECTORS

            det_name = next(n for n in AUTO_ORDER if DETECTORS[n].is_available())
        self.crop_faces = bool(options.get("face_crop", self.face_crop))
        self.settings = {"dataset": self.name, "n_frames": self.n_frames, "image_size": self.image_size,
                         "crop_margin": self.crop_margin, "detector": det_name if self.crop_faces else None,
                         "version": CACHE_VERSION}
        self.cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache_dir(
            "forgery", self.name, config_hash({"root": str(self.root.resolve()), **self.settings}))
        self.progress, self.strict = progress, strict
        self.skipped: list[tuple[str, str]] = []
        self._ready = list(self.entries)
        if not lazy:
            self.prepare()

    # ---- hooks ------------------------------------------------------------------------------------
    def discover(self, root: Path) -> list[VideoEntry]:
        raise NotImplementedError

    # ---- helpers ----------------------------------------------------------------------------------
    def _expected(self, root: Path) -> str:
        return f"expected {self.title} layout under {root}:\n{self.layout.rstrip()}"

    def layout_error(self, problem: str) -> DatasetLayoutError:
        return DatasetLayoutError(f"{self.title}: {problem} in {self.root}\n{self._expected(self.root)}")

    def _cache_file(self, e: VideoEntry) -> Path:
        return self.cache_dir / (re.sub(r"[^\w.-]", "_", e.id) + ".npz")

    def _key(self, e: VideoEntry) -> str:
        srcs = [e.source] + ([Path(e.meta["mask_source"])] if e.meta.get("mask_source") else [])
        stats = []
        for p in srcs:
            st = p.stat() if p.exists() else None
            stats.append([str(p), st.st_size if st else None, st.st_mtime_ns if st else None])
        return config_hash({"settings": self.settings, "source": stats}, n=24)

    def _is_cached(self, e: VideoEntry) -> bool:
        try:
            with np.load(self._cache_file(e)) as z:
                return str(z["key"]) == self._key(e)
        except Exception:  # noqa: BLE001 - missing or unreadable: preprocess again
            return False

    def _detector(self) -> Any:
        if not isinstance(self._detector_arg, str):
            return self._detector_arg
        from mmtrust.data.faces.detect import create_detector

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return create_detector(self._detector_arg)

    def prepare(self) -> None:
        """Sample, detect and crop every selected video that is not cached yet."""
        todo = [e for e in self.entries if not self._is_cached(e)]
        bad: dict[str, str] = {}
        if todo:
            from tqdm.auto import tqdm

            det = self._detector()
            for e in tqdm(todo, desc=f"{self.title}: face crops", unit="video", disable=not self.progress):
                try:
                    self._preprocess(e, det)
                except (VideoReadError, OSError, ValueError) as err:
                    if self.strict:
                        raise
                    warnings.warn(f"{self.title}: skipping video {e.id!r} ({e.source}): {err}", stacklevel=2)
                    bad[e.id] = f"{type(err).__name__}: {err}"
        self.skipped = list(bad.items())
        self._ready = [e for e in self.entries if e.id not in bad]

    def _preprocess(self, e: VideoEntry, detector: Any) -> None:
        from mmtrust.data.face import centre_square
        from mmtrust.data.faces.align import crop_with_margin

        frames, idx, total = sample_frames(e.source, self.n_frames)
        faces = [detector.detect_largest(f) for f in frames] if self.crop_faces else [None] * len(frames)
        found = [f is not None for f in faces]
        boxes: list[np.ndarray | None] = [None if f is None else f.box for f in faces]
        for t in range(len(boxes)):  # previous box, else the next one
            if boxes[t] is None and t > 0:
                boxes[t] = boxes[t - 1]
        for t in range(len(boxes) - 2, -1, -1):
            if boxes[t] is None:
                boxes[t] = boxes[t + 1]
        crops = np.empty((len(frames), self.image_size, self.image_size, 3), np.uint8)
        lms = np.full((len(frames), 5, 2), np.nan, np.float32)
        for t, frame in enumerate(frames):
            if not self.crop_faces:  # already face crops: only resized (aspect kept by the centre square)
                box = np.asarray(centre_square(frame.shape), np.float64)
                crops[t], _ = crop_with_margin(frame, box, 0.0, self.image_size)
            elif boxes[t] is None:
                box = np.asarray(centre_square(frame.shape), np.float64)
                crops[t], _ = crop_with_margin(frame, box, 0.0, self.image_size)
            else:
                crops[t], m = crop_with_margin(frame, boxes[t], self.crop_margin, self.image_size)
                if faces[t] is not None and faces[t].landmarks5 is not None:
                    lms[t] = faces[t].landmarks5 @ m[:, :2].T + m[:, 2]
        meta = {"source": str(e.source), "n_total_frames": int(total), "face_found": int(sum(found)),
                "face_crop": self.crop_faces,
                "raw_size": [int(frames.shape[2]), int(frames.shape[1])], **e.meta}
        extra: dict[str, np.ndarray] = {}
        if e.meta.get("mask_source"):  # manipulation masks: the same frames, cropped with the same boxes
            try:
                mframes, midx, _ = sample_frames(Path(e.meta["mask_source"]), self.n_frames)
                if not np.array_equal(midx, idx):
                    raise ValueError(f"mask video has {len(midx)} sampled frames at other positions")
                masks = np.empty((len(frames), self.image_size, self.image_size), np.uint8)
                for t, mf in enumerate(mframes):
                    box = boxes[t] if self.crop_faces and boxes[t] is not None else \
                        np.asarray(centre_square(mf.shape), np.float64)
                    margin = self.crop_margin if self.crop_faces and boxes[t] is not None else 0.0
                    mc, _ = crop_with_margin(mf, box, margin, self.image_size)
                    masks[t] = np.where(mc.max(-1) > 127, 255, 0)
                extra["masks"] = masks
            except (VideoReadError, OSError, ValueError) as err:
                warnings.warn(f"{self.title}: masks of {e.id!r} not used: {err}", stacklevel=2)
                meta["mask_error"] = str(err)
        with atomic_path(self._cache_file(e)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, frames=crops, indices=idx, landmarks5=lms, meta=np.str_(json.dumps(meta, default=str)),
                     key=np.str_(self._key(e)), **extra)

    # ---- access -----------------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return [e.id for e in self._ready]

    @property
    def labels(self) -> np.ndarray:
        return np.array([e.label for e in self._ready], np.int64)

    def __len__(self) -> int:
        return len(self._ready)

    def __getitem__(self, index: int) -> ForgeryVideo:
        e = self._ready[index]
        if not self._is_cached(e):
            self._preprocess(e, self._detector())
        with np.load(self._cache_file(e)) as z:
            meta = json.loads(str(z["meta"]))
            meta["landmarks5"] = z["landmarks5"]
            masks = z["masks"] if "masks" in z.files else None
            return ForgeryVideo(e.id, z["frames"], e.label, e.forgery_type, z["indices"], {**meta, "split": e.split},
                                masks)

    def frames(self) -> list[ForgerySample]:
        """Frame-level view: one :class:`ForgerySample` per cached frame (``video`` = the video id)."""
        out = []
        for i in range(len(self)):
            v = self[i]
            out += [ForgerySample(f"{v.id}#{int(k)}", fr, v.label, v.forgery_type, v.id, v.meta.get("identity", ""),
                                  None, {"frame_index": int(k)}) for fr, k in zip(v.frames, v.frame_indices, strict=True)]
        return out

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self._ready:
            out[e.forgery_type] = out.get(e.forgery_type, 0) + 1
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, videos={len(self)}, "
                f"counts={self.counts()}, skipped={len(self.skipped)})")


def _videos_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES),
                  key=lambda p: _natural_key(p.name))


def _media_in(folder: Path) -> list[Path]:
    """Video files, else frame folders (``images/<id>/*.png`` trees) directly under ``folder``."""
    vids = _videos_in(folder)
    if vids:
        return vids
    if not folder.is_dir():
        return []
    return sorted((d for d in folder.iterdir() if d.is_dir() and _frame_files(d)), key=lambda p: _natural_key(p.name))


def _fraction_split(keys: list[str], fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, str]:
    """Sorted keys cut at cumulative fractions into train / val / test (deterministic)."""
    keys = sorted(set(keys), key=_natural_key)
    n = len(keys)
    a, b = int(round(fractions[0] * n)), int(round((fractions[0] + fractions[1]) * n))
    return {k: ("train" if i < a else "val" if i < b else "test") for i, k in enumerate(keys)}


# ----------------------------------------------------------------------------------------- FF++
class FaceForensicsPP(ForgeryVideoDataset):
    """FaceForensics++ (Rössler et al., ICCV 2019; github.com/ondyari/FaceForensics).

    Options: ``compression`` (raw | c23 | c40, default c23), ``methods`` (default the four of the paper;
    ``FaceShifter`` may be added), ``split_dir`` (folder with the official ``train.json`` / ``val.json`` /
    ``test.json``; default ``<root>/splits`` or ``<root>``), ``masks`` (default True: the binary manipulation
    masks of ``manipulated_sequences/<method>/masks/videos/<id>.mp4`` are sampled at the same frames,
    cropped with the same boxes and returned as ``ForgeryVideo.masks``). A pair ``[a, b]`` puts real ``a``, ``b`` and fakes
    ``a_b``, ``b_a`` of every method in that split. Videos (``videos/*.mp4``) or extracted frame folders
    (``images/<id>/``) are both accepted.
    """

    name = "faceforensics++"
    known_options = ("compression", "methods", "split_dir", "masks")
    title = "FaceForensics++"
    layout = ("  original_sequences/youtube/{raw|c23|c40}/videos/000.mp4 ... 999.mp4\n"
              "  manipulated_sequences/{Deepfakes|Face2Face|FaceSwap|NeuralTextures}/{raw|c23|c40}/videos/000_003.mp4 ...\n"
              "  (or .../{raw|c23|c40}/images/<video id>/0000.png ... for extracted frames)\n"
              "  manipulated_sequences/<method>/masks/videos/000_003.mp4   (optional manipulation masks)\n"
              "  splits/train.json, splits/val.json, splits/test.json   (official: lists of [\"000\", \"003\"] id pairs)\n")

    def _media(self, base: Path) -> list[Path]:
        return _media_in(base / "videos") or _media_in(base / "images")

    def discover(self, root: Path) -> list[VideoEntry]:
        comp = self.options.get("compression", "c23")
        if comp not in FF_COMPRESSIONS:
            raise ValueError(f"compression must be one of {FF_COMPRESSIONS}, got {comp!r}")
        methods = tuple(self.options.get("methods") or FF_METHODS)
        unknown = set(methods) - set(FF_METHODS + FF_EXTRA_METHODS)
        if unknown:
            raise ValueError(f"unknown FF++ method(s) {sorted(unknown)}; known: {FF_METHODS + FF_EXTRA_METHODS}")
        split_dir = Path(self.options["split_dir"]) if self.options.get("split_dir") else None
        cands = [split_dir] if split_dir else [root / "splits", root]
        sdir = next((d for d in cands if d is not None and all((d / f"{s}.json").is_file() for s in SPLITS[:3])), None)
        if sdir is None:
            missing = [f"{s}.json" for s in SPLITS[:3] if not (cands[0] / f"{s}.json").is_file()]
            raise self.layout_error(f"split file(s) {', '.join(missing)} missing in {cands[0]}")
        split_of: dict[str, str] = {}
        for s in SPLITS[:3]:
            for pair in json.loads((sdir / f"{s}.json").read_text()):
                a, b = (str(x) for x in pair)
                for key in (a, b, f"{a}_{b}", f"{b}_{a}"):
                    split_of[key] = s
        real = self._media(root / "original_sequences" / "youtube" / comp)
        if not real:
            raise self.layout_error(f"no real videos in original_sequences/youtube/{comp}/videos")
        out = []
        for p in real:
            vid = p.stem if p.is_file() else p.name
            if vid in split_of:
                out.append(VideoEntry(f"real/{vid}", p, REAL, "real", split_of[vid], {"identity": vid, "compression": comp}))
        with_masks = bool(self.options.get("masks", True))
        for m in methods:
            mask_of = {q.stem: q for q in _videos_in(root / "manipulated_sequences" / m / "masks" / "videos")} \
                if with_masks else {}
            for p in self._media(root / "manipulated_sequences" / m / comp):
                vid = p.stem if p.is_file() else p.name
                if vid in split_of:
                    meta = {"identity": vid.split("_")[0], "source_identity": vid.split("_")[-1], "compression": comp}
                    mask = mask_of.get(vid)
                    if mask is not None:
                        meta["mask_source"] = str(mask)
                    out.append(VideoEntry(f"{m}/{vid}", p, FAKE, m, split_of[vid], meta))
        return out


class DFD(FaceForensicsPP):
    """Google/Jigsaw DeepFakeDetection, distributed inside the FF++ tree (actors + DeepFakeDetection).

    No official split: actors are cut 60/20/20 by sorted actor id (fakes follow their target actor), so
    splits are identity-disjoint; ``split="all"`` keeps everything (DeepfakeBench's practice).
    """

    name = "dfd"
    known_options = ("compression",)
    title = "DeepFakeDetection (DFD)"
    layout = ("  original_sequences/actors/{raw|c23|c40}/videos/01__exit_phone_room.mp4 ...\n"
              "  manipulated_sequences/DeepFakeDetection/{raw|c23|c40}/videos/01_02__exit_phone_room__YVGY8LOK.mp4 ...\n")

    def discover(self, root: Path) -> list[VideoEntry]:
        comp = self.options.get("compression", "c23")
        real = self._media(root / "original_sequences" / "actors" / comp)
        fake = self._media(root / "manipulated_sequences" / "DeepFakeDetection" / comp)
        if not real and not fake:
            raise self.layout_error(f"no videos in original_sequences/actors/{comp}/videos or "
                                    f"manipulated_sequences/DeepFakeDetection/{comp}/videos")
        stem = [(p, p.stem if p.is_file() else p.name) for p in real + fake]
        actors = _fraction_split([s.split("_")[0] for _, s in stem])
        out = []
        for p, s in stem:
            is_fake = p in fake
            out.append(VideoEntry(f"{'fake' if is_fake else 'real'}/{s}", p, FAKE if is_fake else REAL,
                                  "DeepFakeDetection" if is_fake else "real", actors[s.split("_")[0]],
                                  {"identity": s.split("_")[0], "compression": comp}))
        return out


# ---------------------------------------------------------------------------------------- Celeb-DF
class CelebDFv2(ForgeryVideoDataset):
    """Celeb-DF v2 (Li et al., CVPR 2020; github.com/yuezunli/celeb-deepfakeforensics).

    ``List_of_testing_videos.txt`` (518 videos) is the test split; its first column is 1 for real, 0 for
    fake -- it is checked against the folder and stored as mmtrust's label (1 = fake). Every other video is
    train, except ``val_fraction`` (default 0.1) of the target identities (``id<k>``; YouTube-real videos
    count by file), taken from the end of the sorted list, which form ``val`` (no official val split).
    """

    name = "celeb-df-v2"
    known_options = ("val_fraction",)
    title = "Celeb-DF v2"
    layout = ("  Celeb-real/id0_0000.mp4 ...\n"
              "  Celeb-synthesis/id0_id1_0000.mp4 ...\n"
              "  YouTube-real/00000.mp4 ...\n"
              "  List_of_testing_videos.txt   (lines \"1 YouTube-real/00170.mp4\": 1 = real, 0 = fake)\n")
    folders = {"Celeb-real": (REAL, "real"), "YouTube-real": (REAL, "real"), "Celeb-synthesis": (FAKE, "Celeb-synthesis")}

    def discover(self, root: Path) -> list[VideoEntry]:
        lst = root / "List_of_testing_videos.txt"
        if not lst.is_file():
            raise self.layout_error("the test list List_of_testing_videos.txt is missing")
        test: dict[str, int] = {}
        for line in lst.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                test[parts[1]] = int(parts[0])
        vids = {f: _videos_in(root / f) for f in self.folders}
        if not any(vids.values()):
            raise self.layout_error("no videos in Celeb-real/, Celeb-synthesis/ or YouTube-real/")

        def ident(folder: str, stem: str) -> str:
            return f"yt-{stem}" if folder == "YouTube-real" else stem.split("_")[0]

        train_ids = [ident(f, p.stem) for f, ps in vids.items() for p in ps if f"{f}/{p.name}" not in test]
        frac = float(self.options.get("val_fraction", 0.1))
        ids_sorted = sorted(set(train_ids), key=_natural_key)
        val_ids = set(ids_sorted[len(ids_sorted) - int(round(frac * len(ids_sorted))):]) if frac > 0 else set()
        out = []
        for f, ps in vids.items():
            label, kind = self.folders[f]
            for p in ps:
                rel = f"{f}/{p.name}"
                if rel in test:
                    if (test[rel] == 1) != (label == REAL):
                        warnings.warn(f"Celeb-DF v2: {rel} is listed with flag {test[rel]} (1 = real) but lies in "
                                      f"{f}/; the folder wins", stacklevel=2)
                    split = "test"
                else:
                    split = "val" if ident(f, p.stem) in val_ids else "train"
                out.append(VideoEntry(rel, p, label, kind, split, {"identity": ident(f, p.stem), "folder": f}))
        return out


# -------------------------------------------------------------------------------------------- DFDC
class DFDC(ForgeryVideoDataset):
    """DeepFake Detection Challenge (Dolhansky et al., 2020; ai.meta.com/datasets/dfdc).

    Train: every ``dfdc_train_part_*/metadata.json`` (``{"abc.mp4": {"label": "FAKE"|"REAL", "original": ...}}``).
    Val / test: ``validation/`` and ``test/`` folders with ``labels.csv`` (``filename,label``, 1 = fake) or a
    ``metadata.json``. Parts whose metadata.json is missing are an error (the layout is shown).
    """

    name = "dfdc"
    title = "DFDC"
    layout = ("  dfdc_train_part_0/metadata.json   ({\"aaqaifqrwn.mp4\": {\"label\": \"FAKE\", \"split\": \"train\","
              " \"original\": \"vpmyeepbep.mp4\"}, ...})\n"
              "  dfdc_train_part_0/aaqaifqrwn.mp4 ...\n"
              "  dfdc_train_part_1/...\n"
              "  validation/labels.csv + validation/*.mp4   (optional; filename,label with 1 = fake)\n"
              "  test/labels.csv + test/*.mp4               (optional)\n")

    def _from_metadata(self, folder: Path, split: str) -> list[VideoEntry]:
        meta = json.loads((folder / "metadata.json").read_text())
        out = []
        for fname, rec in meta.items():
            lab = str(rec.get("label", "")).upper()
            if lab not in ("FAKE", "REAL"):
                raise self.layout_error(f"{folder.name}/metadata.json: {fname} has label {rec.get('label')!r}, "
                                        "expected FAKE or REAL")
            p = folder / fname
            if p.is_file():
                fake = lab == "FAKE"
                out.append(VideoEntry(f"{folder.name}/{Path(fname).stem}", p, FAKE if fake else REAL,
                                      "fake" if fake else "real", split,
                                      {"original": rec.get("original"), "part": folder.name}))
        return out

    def _from_csv(self, folder: Path, split: str) -> list[VideoEntry]:
        out = []
        with open(folder / "labels.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                p = folder / row["filename"]
                lab = int(float(row["label"]))
                if p.is_file():
                    out.append(VideoEntry(f"{folder.name}/{p.stem}", p, lab, "fake" if lab else "real", split,
                                          {"part": folder.name}))
        return out

    def discover(self, root: Path) -> list[VideoEntry]:
        parts = sorted((d for d in root.iterdir() if d.is_dir() and d.name.startswith("dfdc_train_part_")),
                       key=lambda d: _natural_key(d.name))
        out = []
        for d in parts:
            if not (d / "metadata.json").is_file():
                raise self.layout_error(f"{d.name}/metadata.json is missing")
            out += self._from_metadata(d, "train")
        for name, split in (("validation", "val"), ("test", "test")):
            d = root / name
            if (d / "labels.csv").is_file():
                out += self._from_csv(d, split)
            elif (d / "metadata.json").is_file():
                out += self._from_metadata(d, split)
        if not parts and not out:
            raise self.layout_error("no dfdc_train_part_*/ folders (nor validation/ or test/ with labels)")
        return out


# --------------------------------------------------------------------------------- DeeperForensics
class DeeperForensics(ForgeryVideoDataset):
    """DeeperForensics-1.0 (Jiang et al., CVPR 2020) *[layout partly verified]*.

    Fakes: ``manipulated_videos/<variant>/<target>_<M|W><n>.mp4`` (variants: ``end_to_end``,
    ``end_to_end_level_<k>``, ``end_to_end_mix_*``, ...; option ``variants``, default all); split lists
    ``lists/splits/{train,val,test}.txt`` (one fake file name per line). Reals are the FF++ YouTube
    originals of the fakes' targets: ``real_root`` (an FF++ root, default ``<root>``) /
    ``original_sequences/youtube/<compression>/videos``, each put in the split of its fakes.
    """

    name = "deeperforensics"
    known_options = ("variants", "real_root", "compression")
    title = "DeeperForensics-1.0"
    layout = ("  manipulated_videos/end_to_end/000_M101.mp4 ...   (and other perturbation variants)\n"
              "  lists/splits/train.txt, lists/splits/val.txt, lists/splits/test.txt   (fake file names, one per line)\n"
              "  real videos: <real_root>/original_sequences/youtube/c23/videos/000.mp4 ... (FF++ originals)\n")

    def discover(self, root: Path) -> list[VideoEntry]:
        sdir = root / "lists" / "splits"
        missing = [f"{s}.txt" for s in SPLITS[:3] if not (sdir / f"{s}.txt").is_file()]
        if missing:
            raise self.layout_error(f"split file(s) lists/splits/{', '.join(missing)} missing")
        split_of = {}
        for s in SPLITS[:3]:
            for line in (sdir / f"{s}.txt").read_text().splitlines():
                if line.strip():
                    split_of[Path(line.strip()).name] = s
        mdir = root / "manipulated_videos"
        if not mdir.is_dir():
            raise self.layout_error("manipulated_videos/ is missing")
        variants = self.options.get("variants")
        out, target_split = [], {}
        for vdir in sorted(d for d in mdir.iterdir() if d.is_dir()):
            if variants and vdir.name not in variants:
                continue
            for p in _videos_in(vdir):
                if p.name in split_of:
                    tgt = p.stem.split("_")[0]
                    target_split.setdefault(tgt, split_of[p.name])
                    out.append(VideoEntry(f"{vdir.name}/{p.stem}", p, FAKE, vdir.name, split_of[p.name],
                                          {"identity": tgt}))
        real_root = Path(self.options.get("real_root") or root)
        comp = self.options.get("compression", "c23")
        for p in _videos_in(real_root / "original_sequences" / "youtube" / comp / "videos"):
            if p.stem in target_split:
                out.append(VideoEntry(f"real/{p.stem}", p, REAL, "real", target_split[p.stem], {"identity": p.stem}))
        return out


# ------------------------------------------------------------------------------------ WildDeepfake
class WildDeepfake(ForgeryVideoDataset):
    """WildDeepfake (Zi et al., ACM MM 2020) *[layout partly verified]*: extracted frame sequences.

    ``{real,fake}_{train,test}/`` each hold the extracted archives; every folder that directly holds
    image frames is one sequence (a "video"); the frames are face images already, so they are only resized
    (``face_crop=True`` detects and crops anyway). Tar archives that are not extracted are an error.
    ``val``: ``val_fraction`` (default 0.1) of the train sequences, by sorted name.
    """

    name = "wilddeepfake"
    known_options = ("val_fraction",)
    title = "WildDeepfake"
    face_crop = False  # the released sequences are face images already
    layout = ("  real_train/<archive>/.../<sequence>/0.png ...   (tar archives extracted in place)\n"
              "  fake_train/...\n"
              "  real_test/...\n"
              "  fake_test/...\n")

    def discover(self, root: Path) -> list[VideoEntry]:
        out = []
        for cls_name, label in (("real", REAL), ("fake", FAKE)):
            for sp in ("train", "test"):
                d = root / f"{cls_name}_{sp}"
                if not d.is_dir():
                    raise self.layout_error(f"{cls_name}_{sp}/ is missing")
                seqs = sorted({p.parent for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES},
                              key=lambda p: _natural_key(str(p)))
                if not seqs and any(p.suffix == ".tar" or p.name.endswith(".tar.gz") for p in d.iterdir()):
                    raise self.layout_error(f"{cls_name}_{sp}/ holds tar archives: extract them in place first")
                names = [str(s.relative_to(d)) for s in seqs]
                frac = float(self.options.get("val_fraction", 0.1))
                n_val = int(round(frac * len(names))) if sp == "train" else 0
                for i, (s, nm) in enumerate(zip(seqs, names, strict=True)):
                    split = sp if i < len(names) - n_val else "val"
                    out.append(VideoEntry(f"{cls_name}_{sp}/{nm}", s, label, cls_name, split, {}))
        return out


# -------------------------------------------------------------------------------------------- DiFF
class DiFF(ForgeryVideoDataset):
    """DiFF -- Diffusion Facial Forgery (Cheng et al., 2024; github.com/xaCheng1996/DiFF) *[layout partly
    verified]*: still images. ``<split>/{real,t2i,i2i,fs,fe}/[<method>/]*.png``; each image is a one-frame
    "video". ``forgery_type`` is the subset (T2I, I2I, FS, FE) and ``meta["method"]`` the generator folder.
    """

    name = "diff"
    title = "DiFF"
    layout = ("  train/real/*.png\n"
              "  train/{t2i|i2i|fs|fe}/<method>/*.png   (e.g. train/t2i/Midjourney/xxx.png)\n"
              "  val/...   test/...\n")
    subsets = ("real", "t2i", "i2i", "fs", "fe")

    def discover(self, root: Path) -> list[VideoEntry]:
        out = []
        found_split = False
        for sp in ("train", "val", "test"):
            d = root / sp
            if not d.is_dir():
                continue
            found_split = True
            for sub in d.iterdir():
                key = sub.name.lower()
                if not sub.is_dir() or key not in self.subsets:
                    continue
                for p in sorted(sub.rglob("*"), key=lambda q: _natural_key(str(q))):
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                        rel = p.relative_to(sub)
                        method = rel.parts[0] if len(rel.parts) > 1 else key
                        out.append(VideoEntry(f"{sp}/{key}/{rel.with_suffix('')}", p, REAL if key == "real" else FAKE,
                                              "real" if key == "real" else key.upper(), sp, {"method": method}))
        if not found_split:
            raise self.layout_error("none of train/, val/, test/ exists")
        return out

    def _preprocess(self, e: VideoEntry, detector: Any) -> None:  # a still image: one "frame"
        import cv2

        img = cv2.imread(str(e.source), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoReadError(f"{e.source}: cannot read image")
        self._preprocess_image(e, cv2.cvtColor(img, cv2.COLOR_BGR2RGB), detector)

    def _preprocess_image(self, e: VideoEntry, rgb: np.ndarray, detector: Any) -> None:
        from mmtrust.data.face import centre_square
        from mmtrust.data.faces.align import crop_with_margin

        face = detector.detect_largest(rgb)
        box = face.box if face is not None else np.asarray(centre_square(rgb.shape), np.float64)
        crop, m = crop_with_margin(rgb, box, self.crop_margin if face is not None else 0.0, self.image_size)
        lms = np.full((1, 5, 2), np.nan, np.float32)
        if face is not None and face.landmarks5 is not None:
            lms[0] = face.landmarks5 @ m[:, :2].T + m[:, 2]
        meta = {"source": str(e.source), "n_total_frames": 1, "face_found": int(face is not None),
                "raw_size": [int(rgb.shape[1]), int(rgb.shape[0])], **e.meta}
        with atomic_path(self._cache_file(e)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, frames=crop[None], indices=np.zeros(1, np.int64), landmarks5=lms,
                     meta=np.str_(json.dumps(meta, default=str)), key=np.str_(self._key(e)))


# ------------------------------------------------------------------------------- DeepfakeBench JSON
#: DeepfakeBench label names of the FF++ methods (``training/config/train_config.yaml``)
DFB_FF_NAMES = {"real": "FF-real", "Deepfakes": "FF-DF", "Face2Face": "FF-F2F", "FaceSwap": "FF-FS",
                "NeuralTextures": "FF-NT", "FaceShifter": "FF-FH"}


def export_deepfakebench_json(dataset: ForgeryVideoDataset, out_dir: str | Path, name: str | None = None) -> Path:
    """Write the cached face crops of ``dataset`` as DeepfakeBench data: ``out_dir/<name>.json`` plus
    ``out_dir/frames/<label>/<video>/<k>.png``. JSON: ``{name: {label: {split: [{compression:] {video:
    {"label", "frames"}}}}}}`` (the compression level only for FF++). Returns the JSON path."""
    import cv2

    out = Path(out_dir)
    name = name or dataset.title
    ff = isinstance(dataset, FaceForensicsPP) and not isinstance(dataset, DFD)
    tree: dict[str, Any] = {}
    for i in range(len(dataset)):
        v = dataset[i]
        e = dataset._ready[i]
        label = DFB_FF_NAMES.get(e.forgery_type, e.forgery_type) if ff else f"{name}_{'fake' if e.label else 'real'}"
        vid = re.sub(r"[^\w.-]", "_", e.id)
        fdir = out / "frames" / label / vid
        fdir.mkdir(parents=True, exist_ok=True)
        files = []
        for fr, idx in zip(v.frames, v.frame_indices, strict=True):
            f = fdir / f"{int(idx):04d}.png"
            cv2.imwrite(str(f), cv2.cvtColor(fr, cv2.COLOR_RGB2BGR))
            files.append(str(f.relative_to(out)))
        node = tree.setdefault(name, {}).setdefault(label, {}).setdefault(e.split, {})
        if ff:
            node = node.setdefault(e.meta.get("compression", "c23"), {})
        node[vid] = {"label": label, "frames": files}
    path = out / f"{name}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(tree, indent=1))
    return path


class DeepfakeBenchJSON(ForgeryVideoDataset):
    """Data already preprocessed by DeepfakeBench (``preprocessing/rearrange.py``): ``root`` is the folder of
    the JSON files, ``dataset`` the JSON name (e.g. ``FaceForensics++``, ``Celeb-DF-v2``), ``compression``
    (FF family, default c23), ``frames_root`` the folder the frame paths are relative to (default: ``root``).
    Labels: a label name containing "real" (any case) is 0, every other label is 1."""

    name = "deepfakebench-json"
    known_options = ("dataset", "compression", "frames_root")
    title = "DeepfakeBench JSON"
    face_crop = False  # DeepfakeBench frames are aligned face crops already
    layout = ("  <dataset>.json   ({\"<dataset>\": {\"FF-real\": {\"train\": {\"c23\": {\"000\": {\"label\": \"FF-real\","
              " \"frames\": [\"...png\", ...]}}}}}})\n"
              "  frame paths: absolute, or relative to frames_root (default: the JSON folder)\n")

    def discover(self, root: Path) -> list[VideoEntry]:
        ds_name = self.options.get("dataset")
        if not ds_name:
            raise ValueError("DeepfakeBenchJSON needs dataset=<name of the JSON file, e.g. FaceForensics++>")
        jpath = root / f"{ds_name}.json"
        if not jpath.is_file():
            raise self.layout_error(f"{ds_name}.json is missing")
        data = json.loads(jpath.read_text()).get(ds_name)
        if not isinstance(data, dict):
            raise self.layout_error(f"{ds_name}.json has no top-level key {ds_name!r}")
        comp = self.options.get("compression", "c23")
        base = Path(self.options.get("frames_root") or root)
        out = []
        for label_name, splits in data.items():
            lab = REAL if "real" in label_name.lower() else FAKE
            for split, node in splits.items():
                if split not in SPLITS[:3]:
                    continue
                if comp in node and isinstance(node[comp], dict) and all(isinstance(v, dict) for v in node[comp].values()):
                    node = node[comp]
                for vid, rec in node.items():
                    if not isinstance(rec, dict) or "frames" not in rec:
                        continue
                    frames = [Path(f) if Path(f).is_absolute() else base / f for f in rec["frames"]]
                    out.append(VideoEntry(f"{label_name}/{vid}", frames[0].parent if frames else base, lab,
                                          label_name, split, {"frames": [str(f) for f in frames]}))
        return out


# ---------------------------------------------------------------------------------------- registry
def _factory(cls: type[ForgeryVideoDataset]) -> Any:
    def make(root: str | Path | None = None, split: str = "test", **kw: Any) -> ForgeryVideoDataset:
        if root is None:
            raise ValueError(f"dataset {cls.name!r} is not built in: pass root=<folder with the downloaded data>\n"
                             f"expected {cls.title} layout under <root>:\n{cls.layout.rstrip()}")
        return cls(root, split=split, **kw)

    make.__doc__ = (cls.__doc__ or "").strip().splitlines()[0]
    return make


for _cls in (FaceForensicsPP, DFD, CelebDFv2, DFDC, DeeperForensics, WildDeepfake, DiFF, DeepfakeBenchJSON):
    register_dataset(_cls.name, task="forgery", builtin=False, splits=SPLITS, layout=_cls.layout,
                     summary=f"{(_cls.__doc__ or '').strip().splitlines()[0]} Needs root=.")(_factory(_cls))
