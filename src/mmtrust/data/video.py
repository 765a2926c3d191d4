"""Read and write videos as uint8 RGB arrays.

Shapes: a clip is ``frames`` uint8 ``(T, H, W, 3)`` RGB (never BGR) with a frame rate ``fps``.

* :func:`read_video` takes a video file (decoded with PyAV; OpenCV's ``VideoCapture`` is tried when PyAV
  cannot open the file) or a folder of image frames (``png``/``jpg``/``jpeg``/``bmp``/``tif``, sorted by
  name with digit runs compared as numbers, so ``f2.png`` comes before ``f10.png``; PURE's
  ``Image<unix_ns>.png`` names sort the same either way).
* A missing, unreadable, empty or truncated file raises :class:`VideoReadError` naming the file and the
  problem. A file counts as truncated when decoding fails after some frames, or when it yields clearly
  fewer frames than its container announces (more than ``max(2, 1%)`` short). ``allow_partial=True``
  returns the frames decoded so far with ``clip.truncated = True`` instead.
* :func:`write_video` encodes with PyAV through :func:`mmtrust.data.cache.atomic_path`, so a failed write
  never leaves a broken file at the destination. Codecs: ``"ffv1"`` (lossless, ``.avi``/``.mkv``),
  ``"png"`` (lossless, ``.avi``/``.mkv``/``.mov``), ``"libx264"`` (``crf`` 0-51, ``.mp4``/``.mkv``) and
  ``"mjpeg"`` (``.avi``).
"""

from __future__ import annotations

import fractions
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmtrust.data.cache import atomic_path

__all__ = ["VideoClip", "VideoReadError", "read_video", "iter_frames", "write_video", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_DEFAULT_FPS = 30.0
# codec -> (pixel format inside the file, containers it may go in)
_CODECS = {
    "ffv1": ("bgr0", (".avi", ".mkv")),
    "png": ("rgb24", (".avi", ".mkv", ".mov")),
    "libx264": ("yuv420p", (".mp4", ".mkv", ".mov")),
    "mjpeg": ("yuvj420p", (".avi", ".mkv", ".mov")),
}
_FORMATS = {".avi": "avi", ".mkv": "matroska", ".mp4": "mp4", ".mov": "mov"}


class VideoReadError(OSError, ValueError):
    """A video (or frame folder) is missing, unreadable, empty or truncated. The message names the file."""


@dataclass
class VideoClip:
    """Decoded frames: ``frames`` uint8 ``(T, H, W, 3)`` RGB, ``fps`` frames per second, source ``path``."""

    frames: np.ndarray
    fps: float
    path: Path
    truncated: bool = False

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        return len(self) / self.fps


def _natural_key(name: str) -> list[object]:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def _frame_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _read_folder(folder: Path, fps: float) -> VideoClip:
    import cv2

    files = _frame_files(folder)
    if not files:
        raise VideoReadError(f"{folder}: folder holds no image frames ({'/'.join(IMAGE_SUFFIXES)})")
    first = cv2.imread(str(files[0]), cv2.IMREAD_COLOR)
    if first is None:
        raise VideoReadError(f"{files[0]}: cannot read image frame")
    out = np.empty((len(files), *first.shape), np.uint8)
    for t, f in enumerate(files):
        img = first if t == 0 else cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoReadError(f"{f}: cannot read image frame {t} of {folder}")
        if img.shape != first.shape:
            raise VideoReadError(f"{f}: frame {t} is {img.shape[1]}x{img.shape[0]}, "
                                 f"but the first frame is {first.shape[1]}x{first.shape[0]}")
        cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=out[t])
    return VideoClip(out, float(fps), folder)


def _valid_fps(rate: object) -> float | None:
    try:
        val = float(rate)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return val if 0.0 < val < 10_000.0 else None


def _is_short(decoded: int, expected: int) -> bool:
    return expected > 0 and expected - decoded > max(2, int(0.01 * expected))


class _FrameBuffer:
    """Collects equally sized frames into one preallocated array (no list + stack: half the peak memory)."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.n, self.buf = max(int(capacity), 1), 0, None

    def add(self, frame: np.ndarray, path: Path) -> None:
        if self.buf is None:
            self.buf = np.empty((self.capacity, *frame.shape), np.uint8)
        elif frame.shape != self.buf.shape[1:]:
            raise VideoReadError(f"{path}: frame {self.n} is {frame.shape}, earlier frames are {self.buf.shape[1:]}")
        if self.n == len(self.buf):  # more frames than announced: grow by half
            self.buf = np.concatenate([self.buf, np.empty_like(self.buf[: len(self.buf) // 2 + 1])])
        self.buf[self.n] = frame
        self.n += 1

    def array(self) -> np.ndarray:
        assert self.buf is not None
        return self.buf[: self.n]


def _decode_pyav(path: Path) -> tuple[_FrameBuffer, float | None, int, str | None] | None:
    """Frames, fps, announced frame count and a decode error (or None). None when PyAV cannot open it."""
    import av

    try:
        container = av.open(str(path))
    except Exception:  # noqa: BLE001 - any failure to open: try OpenCV
        return None
    error = None
    with container:
        if not container.streams.video:
            raise VideoReadError(f"{path}: file has no video stream")
        stream = container.streams.video[0]
        fps = _valid_fps(stream.average_rate) or _valid_fps(stream.guessed_rate)
        expected = int(stream.frames or 0)
        if not expected and container.duration and fps:
            expected = int(container.duration / 1_000_000 * fps + 0.5)
        frames = _FrameBuffer(expected + 2)
        try:
            for frame in container.decode(stream):
                frames.add(frame.to_ndarray(format="rgb24"), path)
        except VideoReadError:
            raise
        except Exception as err:  # noqa: BLE001 - decoder errors come in many types
            error = f"{type(err).__name__}: {err}"
    return frames, fps, expected, error


def _decode_cv2(path: Path) -> tuple[_FrameBuffer, float | None, int, str | None]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoReadError(f"{path}: cannot open video (neither PyAV nor OpenCV can read it)")
        fps = _valid_fps(cap.get(cv2.CAP_PROP_FPS))
        expected = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        frames = _FrameBuffer(expected + 2)
        while True:
            ok, img = cap.read()
            if not ok:
                break
            frames.add(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), path)
    finally:
        cap.release()
    return frames, fps, expected, None


def read_video(path: str | Path, *, fps: float | None = None, allow_partial: bool = False) -> VideoClip:
    """Decode a video file or a folder of frames into a :class:`VideoClip` (uint8 ``(T, H, W, 3)`` RGB).

    ``fps`` overrides the rate read from the container; for a frame folder it defaults to 30.
    """
    path = Path(path)
    if not path.exists():
        raise VideoReadError(f"{path}: no such video file or frame folder")
    if path.is_dir():
        return _read_folder(path, fps or _DEFAULT_FPS)
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: file is empty (0 bytes)")
    res = _decode_pyav(path)
    if res is None:
        res = _decode_cv2(path)
    frames, file_fps, expected, error = res
    if frames.n == 0:
        why = f"decoding failed at the first frame ({error})" if error else "no frames could be decoded"
        raise VideoReadError(f"{path}: {why}")
    truncated = error is not None or _is_short(frames.n, expected)
    if truncated and not allow_partial:
        why = f"decoding failed after {frames.n} frames ({error})" if error else \
            f"only {frames.n} of the {expected} frames announced by the container could be decoded"
        raise VideoReadError(f"{path}: truncated or corrupt video: {why}; "
                             "pass allow_partial=True to keep the decoded frames")
    return VideoClip(frames.array(), float(fps or file_fps or _DEFAULT_FPS), path, truncated)


def probe_fps(path: str | Path) -> float | None:
    """The frame rate a video file declares (``None`` for frame folders or when it declares none)."""
    path = Path(path)
    if path.is_dir():
        return None
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return _valid_fps(stream.average_rate) or _valid_fps(stream.base_rate)
    except Exception:  # noqa: BLE001 - fall back to OpenCV, then give up quietly (callers decide)
        import cv2

        cap = cv2.VideoCapture(str(path))
        try:
            return _valid_fps(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else None
        finally:
            cap.release()


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield uint8 ``(H, W, 3)`` RGB frames one by one (constant memory); raises :class:`VideoReadError`."""
    import av

    path = Path(path)
    if path.is_dir():
        import cv2

        for f in _frame_files(path):
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise VideoReadError(f"{f}: cannot read image frame")
            yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return
    try:
        container = av.open(str(path))
    except Exception as err:  # noqa: BLE001
        raise VideoReadError(f"{path}: cannot open video ({err})") from err
    with container:
        n = 0
        try:
            for frame in container.decode(video=0):
                n += 1
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as err:
            raise VideoReadError(f"{path}: decoding failed after {n} frames ({err})") from err


def write_video(path: str | Path, frames: np.ndarray | Iterable[np.ndarray], fps: float,
                codec: str = "ffv1", crf: int | None = None) -> Path:
    """Encode uint8 RGB frames (an array ``(T, H, W, 3)`` or an iterable of ``(H, W, 3)``) to ``path``.

    The file is written beside ``path`` under a temporary name and renamed into place at the end, so an
    existing file survives a failed write. ``crf`` applies to ``libx264`` only (default: encoder's, 23).
    """
    import av

    path = Path(path)
    if codec not in _CODECS:
        raise ValueError(f"unsupported codec {codec!r}; choose one of {sorted(_CODECS)}")
    pix_fmt, suffixes = _CODECS[codec]
    ext = path.suffix.lower()
    if ext not in suffixes:
        raise ValueError(f"codec {codec!r} cannot be written to a {ext or 'suffix-less'} file; "
                         f"use one of {', '.join(suffixes)}")
    if crf is not None and codec != "libx264":
        raise ValueError(f"crf applies to libx264 only, not {codec!r}")
    if not _valid_fps(fps):
        raise ValueError(f"fps must be positive, got {fps!r}")
    rate = fractions.Fraction(float(fps)).limit_denominator(1001)
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) RGB, got {frames.dtype} {frames.shape}")
    it = iter(frames)
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format=_FORMATS[ext]) as out:
        stream = None
        n = 0
        for frame in it:
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"frames must be uint8 (H, W, 3) RGB; frame {n} is {frame.dtype} {frame.shape}")
            if stream is None:
                h, w = frame.shape[:2]
                if pix_fmt.startswith("yuv") and (h % 2 or w % 2):
                    raise ValueError(f"{codec} with {pix_fmt} needs even width and height, got {w}x{h}")
                stream = out.add_stream(codec, rate=rate)
                stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
                if crf is not None:
                    stream.options = {"crf": str(int(crf))}
            elif frame.shape[:2] != (stream.height, stream.width):
                raise ValueError(f"frame {n} is {frame.shape[1]}x{frame.shape[0]}, "
                                 f"expected {stream.width}x{stream.height}")
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            out.mux(stream.encode(vf))
            n += 1
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        out.mux(stream.encode(None))
    return path
