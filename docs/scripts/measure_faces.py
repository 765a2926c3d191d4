"""Measure the face detectors on the shipped photos (the table in docs/faces.md) and build the sample grid.

    .venv/bin/python docs/scripts/measure_faces.py [--grid runs/faces/synthetic_deepfake_grid.png]

Faces found per photo, frontal LFW crops found (of 100, upscaled to 128 px and padded to 224 px as the
synthetic-deepfake generator does), false hits on the 100 LFW non-face patches, and the median time per
image (after a warm-up call, 2 repeats).
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from mmtrust.data.faces import available_detectors, create_detector, load_face_photos


def lfw_canvas(img: np.ndarray, up: int = 128, pad: int = 48) -> np.ndarray:
    big = cv2.resize(img, (up, up), interpolation=cv2.INTER_CUBIC)
    big = cv2.GaussianBlur(big, (0, 0), up / 100)
    return cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", default=None)
    args = ap.parse_args()
    from skimage import data

    photos = [p for p in load_face_photos(include_lfw=False)]
    lfw = [p for p in load_face_photos() if p.quality == "tiny"]
    neg = data.lfw_subset()[100:]
    neg = [np.repeat(np.clip(np.round(n * 255), 0, 255).astype(np.uint8)[..., None], 3, -1) for n in neg]
    rows = []
    for name in available_detectors():
        det = create_detector(name)
        det.detect(photos[0].image)  # warm-up (model load)
        per_photo, times = {}, []
        for p in photos:
            ts = []
            for _ in range(2):
                t = time.perf_counter()
                faces = det.detect(p.image)
                ts.append(time.perf_counter() - t)
            times.append(min(ts))
            per_photo[p.name] = len(faces)
        t = time.perf_counter()
        lfw_found = sum(det.detect_largest(lfw_canvas(p.image)) is not None for p in lfw)
        lfw_s = (time.perf_counter() - t) / len(lfw)
        false_hits = sum(det.detect_largest(lfw_canvas(n)) is not None for n in neg)
        rows.append({"detector": name, "photos": per_photo, "ms_per_photo": round(1000 * float(np.median(times)), 1),
                     "lfw_found": lfw_found, "lfw_ms": round(1000 * lfw_s, 1), "lfw_negative_hits": false_hits})
        print(json.dumps(rows[-1]))
    if args.grid:
        from mmtrust.data.synthetic_deepfake import SyntheticDeepfake, build_synthetic_deepfake, make_config
        from mmtrust.tasks.forgery_plots import sample_grid

        t = time.perf_counter()
        root = build_synthetic_deepfake(make_config("quick"))
        print("quick build / reuse", round(time.perf_counter() - t, 1), "s", root)
        sample_grid(args.grid, SyntheticDeepfake(root, "test"), per_kind=8)


if __name__ == "__main__":
    main()
