"""Check the face crops a model will see: detect, align and save crops with the landmarks drawn.

:func:`inspect_faces` is what a ``mmtrust faces INPUT`` command runs. Inputs are image files, video files
or folders of them. Per file it writes ``<name>_boxes.png`` (the boxes and landmarks on the picture) and
``<name>_face<k>.png`` (each aligned crop with its landmarks), and returns one report per file:

* no face found -> ``{"faces": 0, "note": "no face found"}`` (not an error);
* a grey or RGBA image -> converted to RGB, the conversion in ``note``;
* an unreadable image or undecodable video -> ``{"error": "<file>: ..."}`` naming the file.

``report.json`` in the output folder holds all reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mmtrust.data.cache import atomic_path

__all__ = ["inspect_faces", "draw_faces"]

_IMAGE = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_VIDEO = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def draw_faces(image: np.ndarray, faces: list[Any]) -> np.ndarray:
    """A copy of an RGB image with each face's box (green) and 5 landmarks (red) drawn."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    r = max(1, round(min(image.shape[:2]) / 150))
    for f in faces:
        x, y, w, h = (int(round(v)) for v in f.box)
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 220, 0), r)
        pts = f.landmarks5 if getattr(f, "landmarks5", None) is not None else np.zeros((0, 2))
        for px, py in pts:
            cv2.circle(out, (int(round(px)), int(round(py))), r + 1, (255, 0, 0), -1)
    return out


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover
        raise OSError(f"cannot encode {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def _files(inputs: list[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in _IMAGE + _VIDEO)
        else:
            out.append(p)
    return out


def inspect_faces(inputs: list[str | Path] | str | Path, out_dir: str | Path, detector: str | Any = "auto",
                  size: int = 224, margin: float = 0.25, video_frames: int = 4) -> list[dict[str, Any]]:
    """Detect + align every face of every input and save the crops; returns one report per file."""
    import cv2

    from mmtrust.data.faces.align import align_face
    from mmtrust.data.faces.detect import as_rgb_uint8, create_detector
    from mmtrust.data.forgery_datasets import sample_frames

    det = create_detector(detector) if isinstance(detector, str) else detector
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reports: list[dict[str, Any]] = []
    for path in _files([inputs] if isinstance(inputs, (str, Path)) else list(inputs)):
        rep: dict[str, Any] = {"file": str(path), "detector": det.name, "faces": 0}
        try:
            if not path.exists():
                raise OSError(f"{path}: no such file")
            if path.suffix.lower() in _VIDEO:
                frames, idx, _ = sample_frames(path, video_frames)
                pictures = [(f"{path.stem}_f{int(k)}", fr, None) for fr, k in zip(frames, idx, strict=True)]
            else:
                raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                if raw is None:
                    raise OSError(f"{path}: cannot decode the image")
                if raw.ndim == 3:
                    raw = cv2.cvtColor(raw, cv2.COLOR_BGRA2RGBA if raw.shape[-1] == 4 else cv2.COLOR_BGR2RGB)
                rgb, note = as_rgb_uint8(raw)
                pictures = [(path.stem, rgb, note)]
            for stem, rgb, note in pictures:
                if note:
                    rep["note"] = note
                faces = det.detect(rgb)
                rep["faces"] += len(faces)
                _write_png(out / f"{stem}_boxes.png", draw_faces(rgb, faces))
                for k, f in enumerate(faces):
                    if f.landmarks5 is None:
                        continue
                    al = align_face(rgb, f.landmarks5, size=size, margin=margin)
                    crop = draw_faces(al.image, [type(f)(np.array([0, 0, 0, 0.0]), f.score, al.landmarks5)])
                    _write_png(out / f"{stem}_face{k}.png", crop)
                rep.setdefault("detections", []).extend(f.as_dict() for f in faces)
            if rep["faces"] == 0:
                rep["note"] = (rep.get("note", "") + "; " if rep.get("note") else "") + "no face found"
        except Exception as err:  # noqa: BLE001 - reported per file, never a crash of the whole run
            rep["error"] = str(err) if str(path) in str(err) else f"{path}: {err}"
        reports.append(rep)
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(reports, indent=2) + "\n")
    return reports


def add_cli(sub: Any) -> None:
    """Register ``mmtrust faces INPUT... --out DIR`` on an argparse sub-parser collection."""

    def run(args: Any) -> int:
        reports = inspect_faces(args.input, args.out, detector=args.detector, size=args.size, margin=args.margin,
                                video_frames=args.frames)
        for r in reports:
            status = r.get("error") or (f"{r['faces']} face(s)" + (f" ({r['note']})" if r.get("note") else ""))
            print(f"{r['file']}: {status}")
        print(f"crops and report.json in {args.out}")
        return 1 if reports and all("error" in r for r in reports) else 0

    p = sub.add_parser("faces", help="detect + align faces in images/videos and save the crops with landmarks")
    p.add_argument("input", nargs="+", help="image or video files, or folders of them")
    p.add_argument("--out", default="faces_out", help="output folder (default: faces_out)")
    p.add_argument("--detector", default="auto", help="auto | retinaface | haar | mediapipe | dlib")
    p.add_argument("--size", type=int, default=224, help="aligned crop side in px")
    p.add_argument("--margin", type=float, default=0.25, help="extra border per side, fraction of the template")
    p.add_argument("--frames", type=int, default=4, help="frames sampled evenly from each video")
    p.set_defaults(func=run)
