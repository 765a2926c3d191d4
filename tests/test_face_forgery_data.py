"""Real face material, forgery recipes and the built-in synthetic-deepfake dataset."""

import json

import numpy as np
import pytest

from mmtrust.data.faces import augment_face, face_mask, identity_splits, load_face_photos
from mmtrust.data.faces.forge import face_swap, generator_artifacts, self_blend
from mmtrust.data.synthetic_deepfake import (
    GENERATOR_VERSION,
    SyntheticDeepfake,
    build_synthetic_deepfake,
    make_config,
    prepare_canvases,
)

LM = np.array([[52, 60], [92, 60], [72, 82], [56, 100], [88, 100]], float)


@pytest.fixture(scope="module")
def face():
    from mmtrust.data.faces import create_detector

    canv, _ = prepare_canvases(144, create_detector("haar"), include_lfw=False, limit=1)
    return canv[0]


def test_shipped_photos_have_provenance():
    photos = load_face_photos()
    names = {p.name for p in photos}
    assert {"astronaut", "camera", "grace_hopper"} <= names
    assert sum(p.quality == "tiny" for p in photos) == 100
    for p in photos:
        assert p.image.dtype == np.uint8 and p.image.ndim == 3 and p.image.shape[-1] == 3
        assert p.source and p.licence and p.identity
    assert len({p.identity for p in photos}) == len(photos)  # one (pseudo-)identity per photo


def test_augmentation_moves_landmarks_with_the_face(face):
    rng = np.random.default_rng(3)
    img, lm, _, params = augment_face(face.image, face.landmarks5, rng)
    assert img.shape == face.image.shape and img.dtype == np.uint8
    assert not np.array_equal(img, face.image)
    # pose change is small: landmarks move by at most ~15 % of the canvas, the eye distance by < 30 %
    assert np.abs(lm - face.landmarks5).max() < 0.15 * img.shape[0]
    iod0 = np.linalg.norm(face.landmarks5[1] - face.landmarks5[0])
    assert abs(np.linalg.norm(lm[1] - lm[0]) / iod0 - 1) < 0.3
    # identity-preserving: a RetinaFace (or Haar) detector still finds the face near the mapped landmarks
    from mmtrust.data.faces import create_detector

    det = create_detector("auto")
    found = det.detect_largest(img)
    assert found is not None
    if not found.estimated:
        assert np.abs(found.landmarks5 - lm).max() < 0.1 * img.shape[0]


def test_identity_splits_are_disjoint_and_pinned():
    ids = [f"id{i}" for i in range(50)] + ["eileen-collins", "grace-hopper"]
    sp = identity_splits(ids, seed=1, pinned={"eileen-collins": "train", "grace-hopper": "test"})
    assert set(sp) == set(ids) and sp["grace-hopper"] == "test" and sp["eileen-collins"] == "train"
    counts = {s: sum(v == s for v in sp.values()) for s in ("train", "val", "test")}
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0
    assert identity_splits(ids, seed=1, pinned={"eileen-collins": "train", "grace-hopper": "test"}) == sp


def test_sbi_changes_pixels_only_inside_the_mask(face):
    for seed in range(4):
        fake, mask, info = self_blend(face.image, face.landmarks5, np.random.default_rng(seed))
        outside = mask == 0
        assert outside.any() and (~outside).any()
        assert np.array_equal(fake[outside], face.image[outside])
        assert not np.array_equal(fake, face.image)
        # the blend region lies on the face: it contains the landmarks' centre, not the canvas corners
        c = face.landmarks5.mean(0).round().astype(int)
        assert mask[c[1], c[0]] > 0 and mask[0, 0] == 0 and mask[-1, -1] == 0


def test_swap_puts_another_face_inside_the_face_region(face):
    rng = np.random.default_rng(0)
    donor = np.ascontiguousarray(face.image[:, ::-1])  # mirrored: a different-looking face, same geometry
    donor_lm = face.landmarks5.copy()
    donor_lm[:, 0] = face.image.shape[1] - 1 - donor_lm[:, 0]
    donor_lm = donor_lm[[1, 0, 2, 4, 3]]
    fake, mask, info = face_swap(face.image, face.landmarks5, donor, donor_lm, rng, poisson_p=0.0)
    hull = face_mask(face.image.shape, face.landmarks5, extent=1.25)
    assert info["blend"] == "alpha"
    assert np.array_equal(fake[mask == 0], face.image[mask == 0])
    assert (mask[hull == 0] == 0).mean() > 0.97  # the blend stays (almost) inside an enlarged face hull
    assert np.abs(fake.astype(int) - face.image).sum(-1)[mask > 0.5].mean() > 1.0


def test_generator_upsampling_leaves_a_spectral_peak():
    rng = np.random.default_rng(0)
    flat = np.full((64, 64, 3), 120, np.uint8) + rng.integers(0, 3, (64, 64, 3)).astype(np.uint8)
    fake, info = generator_artifacts(flat, np.random.default_rng(5), kind="upsampling")
    spec = np.abs(np.fft.fft2(fake.astype(float).mean(-1) - fake.mean()))
    spec0 = np.abs(np.fft.fft2(flat.astype(float).mean(-1) - flat.mean()))
    assert spec[32, 32] + spec[0, 32] + spec[32, 0] > 5 * (spec0[32, 32] + spec0[0, 32] + spec0[32, 0] + 1)
    fake2, info2 = generator_artifacts(flat, np.random.default_rng(5), kind="decoder")
    spec2 = np.abs(np.fft.fft2(fake2.astype(float).mean(-1) - fake2.mean()))
    assert spec2[8, 0] + spec2[0, 8] > 3 * (spec0[8, 0] + spec0[0, 8] + 1)
    with pytest.raises(ValueError, match="unknown generator-artifact kind"):
        generator_artifacts(flat, rng, kind="vae")


def test_synthetic_deepfake_tiny_build(tmp_path):
    cfg = make_config("tiny")
    root = build_synthetic_deepfake(cfg, root=tmp_path / "sd", progress=False)
    done = json.loads((root / "DONE.json").read_text())
    assert done["generator_version"] == GENERATOR_VERSION and done["provenance"]
    splits = {s: SyntheticDeepfake(root, s) for s in ("train", "val", "test")}
    ids = [ds.identities for ds in splits.values()]
    assert all(ids) and not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    for ds in splits.values():
        kinds = {r["kind"] for r in ds.records}
        assert kinds == {"real", "sbi", "swap", "generator"}
        for r in ds.records:  # swap donors come from the same split, never the same identity
            if r["kind"] == "swap":
                assert r["donor_identity"] in ds.identities and r["donor_identity"] != r["identity"]
    s = splits["train"][0]
    assert s.image.shape == (64, 64, 3) and s.label in (0, 1) and s.mask.shape == (64, 64)
    labels = {r["kind"]: r["label"] for r in splits["train"].records}
    assert labels == {"real": 0, "sbi": 1, "swap": 1, "generator": 1}
    for i, r in enumerate(splits["train"].records):
        if r["kind"] == "real":
            assert splits["train"][i].mask.max() == 0
    # grey LFW crops are colourised (skin tone recorded in the provenance)
    lfw = [i for i, r in enumerate(splits["train"].records) if r["photo"].startswith("lfw") and r["kind"] == "real"]
    assert lfw and np.abs(np.diff(splits["train"][lfw[0]].image.astype(int), axis=-1)).mean() > 2
    assert all("colourised_fitzpatrick" in p for p in done["provenance"] if p["quality"] == "tiny")
    # cross-forgery protocol: real + only the chosen kinds
    only = SyntheticDeepfake(root, "train", kinds=("sbi",))
    assert {r["kind"] for r in only.records} == {"real", "sbi"}
    # deterministic and cached: the same config reuses the folder untouched
    mtime = (root / "samples.json").stat().st_mtime_ns
    assert build_synthetic_deepfake(cfg, root=root, progress=False) == root
    assert (root / "samples.json").stat().st_mtime_ns == mtime
    again = build_synthetic_deepfake(cfg, root=tmp_path / "sd2", progress=False)
    a = SyntheticDeepfake(root, "test")
    b = SyntheticDeepfake(again, "test")
    assert [r["id"] for r in a.records] == [r["id"] for r in b.records]
    assert all(np.array_equal(a[i].image, b[i].image) for i in range(len(a)))


def test_synthetic_deepfake_video_variant_and_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTRUST_CACHE", str(tmp_path / "cache"))
    from mmtrust.registry import _DATASETS

    info = _DATASETS["synthetic-deepfake"]
    assert info.task == "forgery" and info.builtin
    ds = info.factory(split="test", preset="tiny", variant="video", video_frames=3, max_identities=6,
                      kinds=("sbi",), progress=False)
    assert str(ds.root).startswith(str(tmp_path / "cache"))
    assert len(ds) > 0
    v = ds[0]
    assert v.frames.shape == (3, 64, 64, 3)
    fakes = [ds[i] for i in range(len(ds)) if ds.records[i]["kind"] == "sbi"]
    assert fakes and not np.array_equal(fakes[0].frames[0], fakes[0].frames[-1])  # the face moves
    with pytest.raises(TypeError, match="unknown synthetic-deepfake setting"):
        info.factory(preset="tiny", frames_per_clip=3)


def test_existing_foreign_folder_is_refused(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        build_synthetic_deepfake(make_config("tiny"), root=tmp_path / "x", progress=False)
