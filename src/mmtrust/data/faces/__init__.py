"""Faces: detection (Haar / RetinaFace / MediaPipe / dlib), 5-point alignment, crops, landmark-hull masks,
real face material from installed packages, and forgery recipes (SBI, swap, generator artifacts)."""

from mmtrust.data.faces.align import (
    ARCFACE_TEMPLATE_112,
    AlignedFace,
    align_face,
    crop_with_margin,
    similarity_transform,
    template_points,
    transform_points,
)
from mmtrust.data.faces.detect import (
    DETECTORS,
    Face,
    FaceDetector,
    as_rgb_uint8,
    available_detectors,
    create_detector,
)
from mmtrust.data.faces.masks import deform_mask, face_mask, face_outline, hull_mask
from mmtrust.data.faces.material import FacePhoto, augment_face, identity_splits, jpeg, load_face_photos

__all__ = [
    "ARCFACE_TEMPLATE_112", "AlignedFace", "align_face", "crop_with_margin", "similarity_transform",
    "template_points", "transform_points", "DETECTORS", "Face", "FaceDetector", "as_rgb_uint8",
    "available_detectors", "create_detector", "deform_mask", "face_mask", "face_outline", "hull_mask",
    "FacePhoto", "augment_face", "identity_splits", "jpeg", "load_face_photos",
]
