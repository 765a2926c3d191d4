"""Face detection backends, 5-point alignment, crops with margin and landmark-hull masks."""

from pathlib import Path

import numpy as np
import pytest

from mmtrust.data.faces import (
    DETECTORS,
    align_face,
    as_rgb_uint8,
    create_detector,
    crop_with_margin,
    deform_mask,
    face_mask,
    load_face_photos,
    similarity_transform,
    template_points,
    transform_points,
)
from mmtrust.data.faces.detect import HAAR_LANDMARK_PRIOR


@pytest.fixture(scope="module")
def photos():
    return {p.name: p for p in load_face_photos(include_lfw=False)}


def _need(name):
    if not DETECTORS[name].is_available():
        pytest.skip(f"optional detector {name!r} not installed: {DETECTORS[name].install}")
    return create_detector(name)


def test_rgb_conversion_notes():
    grey = np.full((20, 30), 7, np.uint8)
    rgb, note = as_rgb_uint8(grey)
    assert rgb.shape == (20, 30, 3) and "grayscale" in note
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgb, note = as_rgb_uint8(rgba)
    assert rgb.shape == (5, 6, 3) and "alpha" in note
    rgb, note = as_rgb_uint8(np.full((4, 4, 3), 0.5))
    assert rgb.dtype == np.uint8 and rgb[0, 0, 0] == 128 and "float" in note
    assert as_rgb_uint8(np.zeros((4, 4, 3), np.uint8))[1] is None
    with pytest.raises(ValueError, match="expected an image"):
        as_rgb_uint8(np.zeros((4, 4, 2), np.uint8))


def test_haar_finds_frontal_faces_and_places_landmarks(photos):
    det = create_detector("haar")
    for name in ("astronaut", "grace_hopper"):
        face = det.detect_largest(photos[name].image)
        assert face is not None and face.estimated
        x, y, w, h = face.box
        assert np.allclose(face.landmarks5, np.array([x, y]) + HAAR_LANDMARK_PRIOR * [w, h])
    # no face: an empty list, not an error
    assert det.detect(np.full((120, 120, 3), 128, np.uint8)) == []
    # grey input is accepted
    assert det.detect_largest(photos["astronaut"].image.mean(-1).astype(np.uint8)) is not None


@pytest.mark.parametrize("name", ["retinaface", "mediapipe", "dlib"])
def test_landmark_backends_agree_on_astronaut(name, photos):
    import cv2

    det = _need(name)
    small = cv2.resize(photos["astronaut"].image, (256, 256), interpolation=cv2.INTER_AREA)  # keeps it fast
    face = det.detect_largest(small)
    assert face is not None and not face.estimated
    # published 5 points of the astronaut (MTCNN, 512 px), see availability notes: within 8 px at 512
    ref = np.array([[205, 101], [246, 103], [224, 128], [201, 139], [245, 141]], float)
    assert np.abs(2 * face.landmarks5 + 0.5 - ref).max() < 8.0
    assert face.landmarks is None or len(face.landmarks) == det.landmark_count


def test_default_detector_finds_every_shipped_frontal_face(photos):
    det = create_detector("auto")
    for name in ("astronaut", "grace_hopper", "franz_kafka"):
        if name in photos:
            assert det.detect_largest(photos[name].image) is not None, name


def test_unknown_detector_is_named():
    with pytest.raises(ValueError, match="unknown face detector 'nope'"):
        create_detector("nope")


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    ang, s, t = np.deg2rad(25), 1.7, np.array([12.0, -4.0])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ (s * r).T + t
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], s * r, atol=1e-9) and np.allclose(m[:, 2], t, atol=1e-9)


@pytest.mark.parametrize("margin", [0.0, 0.25])
def test_alignment_maps_landmarks_onto_template(margin):
    # landmarks that are an exact similarity image of the template: alignment must undo it
    size = 112
    tpl = template_points(size, margin)
    ang, s, t = np.deg2rad(-17), 2.3, np.array([140.0, 90.0])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    lm = tpl @ (s * r).T + t
    img = np.zeros((480, 480, 3), np.uint8)
    for (x, y) in lm:  # a bright dot on each landmark
        img[int(round(y)) - 2:int(round(y)) + 3, int(round(x)) - 2:int(round(x)) + 3] = 255
    al = align_face(img, lm, size=size, margin=margin)
    assert al.image.shape == (size, size, 3)
    assert np.abs(al.landmarks5 - tpl).max() < 1e-6 and al.residual < 1e-6
    for (x, y) in tpl:  # the dots land on the template pixels (within 1 px)
        patch = al.image[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2]
        assert patch.max() > 100


def test_alignment_of_a_real_face_within_tolerance(photos):
    det = _need("retinaface")
    face = det.detect_largest(photos["astronaut"].image)
    al = align_face(photos["astronaut"].image, face.landmarks5, size=112)
    # a real face fits the template by a similarity up to its own proportions (astronaut: ~5 px RMS at 112)
    assert al.residual < 0.07 * 112
    assert np.abs(al.landmarks5 - template_points(112)).max() < 0.12 * 112
    again = det.detect_largest(al.image)  # landmarks re-detected on the crop sit where the warp put them
    assert again is not None and np.abs(again.landmarks5 - al.landmarks5).max() < 3.0


def test_crop_with_margin_matrix_and_padding():
    img = np.random.default_rng(1).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    crop, m = crop_with_margin(img, (30, 20, 40, 40), margin=0.5, size=60)
    assert crop.shape == (60, 60, 3)
    # the box centre maps to the crop centre; the box is 40/60 of the crop side
    c = transform_points(np.array([[50.0, 40.0]]), m)[0]
    assert np.allclose(c, [29.5, 29.5], atol=0.51)
    assert np.isclose(m[0, 0], 60 / 60)
    # a box hanging over the border is padded (face stays centred), not shifted
    crop2, m2 = crop_with_margin(img, (-10, -10, 40, 40), margin=0.3, size=52)
    assert crop2.shape == (52, 52, 3)
    assert np.allclose(transform_points(np.array([[10.0, 10.0]]), m2)[0], [25.5, 25.5], atol=0.6)


def test_face_mask_from_five_points_covers_the_landmarks(photos):
    lm = np.array([[205, 101], [246, 103], [224, 128], [201, 139], [245, 141]], float)
    mask = face_mask((512, 512), lm)
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert all(mask[int(y), int(x)] == 1 for x, y in lm)
    assert mask[20, 20] == 0 and mask[450, 450] == 0
    area = mask.sum()
    iod = np.linalg.norm(lm[1] - lm[0])
    assert 3 * iod ** 2 < area < 12 * iod ** 2  # a face-sized region


def test_dense_landmark_hull_mask():
    pts = np.array([[10, 10], [50, 12], [48, 60], [12, 58]] * 6, float)
    mask = face_mask((80, 80), landmarks=pts)
    assert mask[30, 30] == 1 and mask[70, 70] == 0


def test_deform_mask_is_soft_and_zero_far_away():
    lm = np.array([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]], float)
    hull = face_mask((128, 128), lm)
    for seed in range(5):
        soft = deform_mask(hull, np.random.default_rng(seed))
        assert soft.dtype == np.float32 and 0 <= soft.min() and soft.max() <= 1
        assert soft[0, 0] == 0 and soft[127, 127] == 0
        assert soft[70, 60] > 0  # the face centre is blended


def test_inspect_faces_reports_per_file(tmp_path, photos):
    import cv2

    from mmtrust.data.faces.inspect import inspect_faces

    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "astro.png"), cv2.cvtColor(photos["astronaut"].image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(src / "grey.png"), photos["grace_hopper"].image.mean(-1).astype(np.uint8))
    rgba = np.concatenate([photos["astronaut"].image, np.full((512, 512, 1), 255, np.uint8)], -1)
    cv2.imwrite(str(src / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    cv2.imwrite(str(src / "wall.png"), np.full((100, 100, 3), 200, np.uint8))
    (src / "broken.mp4").write_bytes(b"nope" * 20)
    reps = {Path(r["file"]).name: r for r in inspect_faces(src, tmp_path / "out", detector="haar", size=64)}
    assert reps["astro.png"]["faces"] >= 1 and (tmp_path / "out" / "astro_face0.png").is_file()
    assert "grayscale" in reps["grey.png"]["note"] and reps["grey.png"]["faces"] >= 1
    assert "alpha" in reps["rgba.png"]["note"]
    assert reps["wall.png"]["faces"] == 0 and "no face found" in reps["wall.png"]["note"]
    assert "broken.mp4" in reps["broken.mp4"]["error"]
    assert (tmp_path / "out" / "report.json").is_file()


@pytest.mark.parametrize("name", ["haar", "retinaface"])
def test_detectors_pickle_for_dataloader_workers(name, photos):
    import pickle

    det = _need(name)
    img = photos["astronaut"].image
    before = det.detect_largest(img)
    clone = pickle.loads(pickle.dumps(det))
    after = clone.detect_largest(img)
    assert after is not None and np.allclose(after.box, before.box, atol=1e-3)


def test_faces_cli_subcommand(tmp_path, photos, capsys):
    import argparse

    import cv2

    from mmtrust.data.faces.inspect import add_cli

    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(photos["astronaut"].image, cv2.COLOR_RGB2BGR))
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    args = parser.parse_args(["faces", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--detector", "haar"])
    assert args.func(args) == 0
    assert "1 face(s)" in capsys.readouterr().out and (tmp_path / "o" / "a_face0.png").is_file()
