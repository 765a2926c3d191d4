"""The dataset-like synthetic-rppg domains (studio / webcam / outdoor), ``face_scale``, and the
cross-domain protocols that use them and COHFACE."""

from __future__ import annotations

import json

import pytest
import yaml

import mmtrust.data.synthetic_rppg as sr
from mmtrust.protocols import list_protocols, load_protocol

NEW = ("studio", "webcam", "outdoor")


def test_dataset_like_domains_differ_along_every_axis() -> None:
    cfg = {d: sr.make_config("quick", d) for d in NEW}
    assert [cfg[d].fps for d in NEW] == [30.0, 25.0, 20.0]
    assert cfg["studio"].face_scale > cfg["webcam"].face_scale > cfg["outdoor"].face_scale
    assert cfg["studio"].motion < cfg["webcam"].motion < cfg["outdoor"].motion
    assert cfg["studio"].camera_noise_std < cfg["webcam"].camera_noise_std
    assert cfg["studio"].brightness > cfg["webcam"].brightness > cfg["outdoor"].brightness
    assert cfg["studio"].illumination_events < cfg["webcam"].illumination_events < cfg["outdoor"].illumination_events
    assert (cfg["studio"].codec, cfg["webcam"].codec, cfg["outdoor"].codec) == ("ffv1", "libx264", "ffv1")
    r, _, b = cfg["webcam"].light_rgb
    assert r > b  # warm
    r, _, b = cfg["outdoor"].light_rgb
    assert b > r  # cool
    assert cfg["studio"].skin_tone == 2.0 and cfg["webcam"].skin_tone is None and cfg["outdoor"].skin_tone == "mixed"
    for preset in sr.PRESETS:  # valid on every preset (the tiny frames still hold a >= 30 px face)
        for d in NEW:
            sr.make_config(preset, d).validate()


def test_face_scale_is_validated_and_left_out_of_the_record_at_its_default() -> None:
    with pytest.raises(ValueError, match="face_scale must lie"):
        sr.make_config("tiny", face_scale=2.0)
    with pytest.raises(ValueError, match="Haar detector needs >= 30 px"):
        sr.make_config("tiny", face_scale=0.7)  # 0.46 x 0.7 x 80 px = 25.8 px
    quick = sr.make_config("quick")
    assert quick.face_scale == 1.0 and "face_scale" not in sr._config_record(quick)  # caches stay valid
    assert sr._config_record(sr.make_config("quick", face_scale=1.1))["face_scale"] == 1.1
    assert sr._default_root(quick) != sr._default_root(sr.make_config("quick", face_scale=1.1))


def test_face_scale_changes_the_face_size(tmp_path) -> None:
    for name in ("astronaut", "lfw:3"):  # a full photo and an LFW crop
        for scale in (0.85, 1.0, 1.2):
            box = sr._canvas_for(name, False, 96, 3.0, scale).box
            assert box[2] / 96 == pytest.approx(0.46 * scale, rel=0.05)
    assert sr._canvas_for("lfw:3", False, 96, 3.0).box == sr._canvas_for("lfw:3", False, 96, 3.0, 1.0).box
    cfg = sr.make_config("tiny", face_scale=1.2, n_subjects=2, duration_s=2.0, motion=0.0)
    root = sr.build_synthetic_rppg(cfg, root=tmp_path / "big", progress=False)
    for meta in (json.loads(p.read_text()) for p in root.glob("subject*/meta.json")):
        assert meta["domain"]["face_scale"] == 1.2
        assert meta["face_box_frame0"][2] / meta["frame_size"] > 0.5  # the Haar box, ~0.55 of the frame


def test_cross_domain_protocols(monkeypatch) -> None:
    names = {"pure-to-cohface", "ubfc-to-cohface", "synthetic-studio-to-webcam", "synthetic-studio-to-outdoor",
             "synthetic-webcam-to-outdoor"}
    assert names <= set(list_protocols("rppg"))
    monkeypatch.delenv("COHFACE_ROOT", raising=False)
    monkeypatch.setenv("PURE_ROOT", "/data/PURE")
    monkeypatch.setenv("UBFC_ROOT", "/data/UBFC")
    with pytest.raises(ValueError, match=r"\$COHFACE_ROOT"):
        load_protocol("pure-to-cohface")
    monkeypatch.setenv("COHFACE_ROOT", "/data/COHFACE")
    for src, name in (("pure:/data/PURE", "pure-to-cohface"), ("ubfc-rppg:/data/UBFC", "ubfc-to-cohface")):
        p = load_protocol(name)
        assert p.train_data.startswith(src + "?split_fractions=") and p.test_data == "cohface:/data/COHFACE"
        assert p.test_split == "all"
    for pair in ("studio-to-webcam", "studio-to-outdoor", "webcam-to-outdoor"):
        p = load_protocol(f"synthetic-{pair}")
        src, tgt = pair.split("-to-")
        assert p.test_split == "test"
        for data, domain in ((p.train_data, src), (p.test_data, tgt)):
            name, _, query = data.partition("?")
            kw = {k: yaml.safe_load(v) for k, v in (q.split("=", 1) for q in query.split("&"))}
            assert name == "synthetic-rppg" and kw == {"preset": "quick", "domain": domain}
            sr.make_config(**kw).validate()
