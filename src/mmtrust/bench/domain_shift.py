"""``mmtrust bench-shift``: the rPPG domain-shift benchmark of a source-free adaptation method.

For each built-in domain pair (source -> target of ``synthetic-rppg``'s dataset-like domains) it reports, on
the target's test split, MAE / RMSE / Pearson of

* **source-only**: the method's models after stage 1 on the source: ``source_seeds`` of them (stage-1 seeds
  ``t, t + 1, ...`` with ``t`` the preset's ``train.seed``; each trained once per source domain and reused by
  every pair with that source), because the source-only MAE on a target moves by several bpm between two
  source models trained alike (studio -> webcam: 2.20, 0.49, 3.17 bpm for stage-1 seeds 100-102); every row
  is the mean over the source models, each run's figures kept,
* **adapted**: after stage 2 on the target's unlabeled train split (no source data, no target labels), from
  each source model with ``seeds`` adaptation seeds (``s, s + 1, ...``, ``s`` the preset's ``adapt.seed``),
  because one run's target MAE also moves by a few bpm with the stage-2 seed alone; the report also gives the
  change each source model's own adaptation makes,
* each **ablation** the method declares (``model_cls.ablations``: name -> stage-2 overrides), adapted from
  every source model with the first adaptation seed; for SFDA-rPPG: the bin-wise L2 instead of the FWD,
  without the spatial / the temporal branch, and BatchNorm statistics only (every loss weight 0, so only
  BatchNorm's running statistics move to the target),
* the classical **baselines** (``pos`` by default: no training at all).

Heart rates are read over whole videos: a neural model's frames after its last whole chunk come from one
more, overlapping chunk (``RPPGTask.evaluate(tail="cover")``). The report also gives every row with
rPPG-Toolbox's chunking, which drops those frames (``tail_dropped``; the benchmark's read-out until
2026-12-03: on the 12-s videos it left 256 of 360 frames at 30 fps and 128 of 240 at 20 fps).

Nothing is selected on a test split: stage-1 epochs are chosen by the source's validation loss, stage 2 runs
a fixed number of epochs set in the method's preset. Writes ``OUT/results.json``, ``OUT/report.md`` and
``OUT/domain_shift_MAE.png``::

    mmtrust bench-shift --out runs/bench-shift          # the three pairs, quick size, 3 source x 2 stage-2 seeds
    mmtrust bench-shift --pairs studio:webcam --size tiny --source-seeds 1 --seeds 1   # seconds, for a check
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..data.cache import atomic_path

__all__ = ["PAIRS", "SIZES", "domain_data", "run_domain_shift", "markdown"]

#: built-in (source, target) pairs: studio = 30 fps, light skin, bright white light, little motion, lossless;
#: webcam = 25 fps, warm dimmer light, more noise, H.264; outdoor = 20 fps, mixed skin, cool changing light,
#: strong motion, smaller face
PAIRS: tuple[tuple[str, str], ...] = (("studio", "webcam"), ("studio", "outdoor"), ("webcam", "outdoor"))

#: data sizes: ``quick`` (the benchmark: 60 subjects x 12 s per domain; subjects 0-30 % train (the source's
#: training set / the target's unlabeled adaptation set, 18 videos), 30-40 % the source's validation split
#: (6 videos), 40-100 % the target's test split (36 videos; the source's own test split is never used)),
#: ``full`` (the quick synthetic preset, 35 subjects x 20 s, default 60/20/20 splits) and ``tiny`` (tests:
#: 3 subjects x 6 s). Until 2026-12-03 ``quick`` had 30 subjects and 12 target test videos, too few: one video
#: moving by one harmonic changed a pair's MAE by 2-5 bpm.
SIZES: dict[str, str] = {
    "quick": "preset=quick&n_subjects=60&duration_s=12&split_fractions={train: [0.0, 0.3], val: [0.3, 0.4], test: [0.4, 1.0]}",
    "tiny": "preset=tiny&n_subjects=3&duration_s=6",
    "full": "preset=quick",
}

#: the method preset used for each data size
_METHOD_PRESET = {"quick": "quick", "tiny": "tiny", "full": "quick"}

_METRICS = ("MAE", "RMSE", "Pearson")


def domain_data(domain: str, size: str = "quick") -> str:
    """The ``--data`` string of a built-in domain at a benchmark size."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    return f"synthetic-rppg?domain={domain}&{SIZES[size]}"


def _mean_sd(vals: list[float]) -> tuple[float, float]:
    import numpy as np

    return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)


def _row(name: str, kind: str, runs: list[dict[str, Any]], labels: list[dict[str, int]] | None = None) -> dict[str, Any]:
    """One table row: the metrics averaged over ``runs`` (one per source model, or per source model and
    adaptation seed; ``MAE_sd`` etc. their spread), each run kept in ``runs`` with its seeds.
    ``tail_dropped`` holds the same for rPPG-Toolbox's read-out (frames after a neural model's last whole
    chunk dropped; a classical method reads whole videos either way)."""
    labels = labels or [{} for _ in runs]
    first = runs[0]
    row: dict[str, Any] = {"method": name, "kind": kind, "n_videos": first.get("n_videos"),
                           "frames_read": first.get("frames_read"), "tail_dropped": {}}
    dropped = [r.get("tail_dropped", r) for r in runs]
    for k in (*_METRICS, "MAPE"):
        vals = [float(r[k]) for r in runs if r.get(k) is not None]
        if vals:
            row[k], row[f"{k}_sd"] = _mean_sd(vals)
        dvals = [float(d[k]) for d in dropped if d.get(k) is not None]
        if dvals:
            row["tail_dropped"][k], row["tail_dropped"][f"{k}_sd"] = _mean_sd(dvals)
    row["tail_dropped"]["frames_read"] = dropped[0].get("frames_read")
    row["runs"] = [{**lab, **{k: r.get(k) for k in _METRICS}, "tail_dropped": {k: d.get(k) for k in _METRICS}}
                   for lab, r, d in zip(labels, runs, dropped, strict=True)]
    if any("adapt_seconds" in r for r in runs):
        row["adapt_seconds"] = round(sum(float(r.get("adapt_seconds") or 0) for r in runs), 1)
    return row


def run_domain_shift(out_dir: str | Path = "runs/bench-shift", pairs: tuple[tuple[str, str], ...] | list = PAIRS,
                     size: str = "quick", method: str = "sfda-rppg", preset: str | None = None,
                     sets: dict[str, Any] | None = None, baselines: tuple[str, ...] = ("pos",),
                     ablations: bool = True, seeds: int = 2, source_seeds: int = 3,
                     progress: bool = True) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); returns what ``results.json`` holds."""
    from ..config import build_config
    from ..engine.loading import load_model
    from ..registry import get_method, get_task

    entry = get_method(method)
    protocol = getattr(entry.model_cls, "source_free_protocol", None)
    if protocol is None:
        raise ValueError(f"method {method!r} has no source-free adaptation protocol")
    if seeds < 1 or source_seeds < 1:
        raise ValueError(f"seeds and source_seeds must be >= 1, got {seeds} and {source_seeds}")
    preset = preset or _METHOD_PRESET.get(size, "quick")
    cfg = build_config(entry.config_cls, entry.presets, preset, None, sets)
    adapt_cfg = getattr(cfg, "adapt", None)
    if adapt_cfg is None:
        raise ValueError(f"method {method!r} has no stage-2 settings (config.adapt) to seed the adaptation runs")
    seed0, train_seed0 = int(adapt_cfg.seed), int(cfg.train.seed)
    adapt_seeds = [seed0 + k for k in range(seeds)]
    src_seeds = [train_seed0 + k for k in range(source_seeds)]
    seed_runs = {f"adapt seed {s}": {"adapt.seed": s} for s in adapt_seeds[1:]}
    ablation_runs = dict(getattr(entry.model_cls, "ablations", {}) or {}) if ablations else {}
    task = get_task(entry.task)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources: dict[tuple[str, int], Path] = {}  # (source domain, stage-1 seed) -> its checkpoint (trained once)
    results: dict[str, Any] = {"method": method, "preset": preset, "size": size, "sets": sets or {},
                               "source_seeds": src_seeds, "adapt_seeds": adapt_seeds,
                               "data": {d: domain_data(d, size) for p in pairs for d in p}, "pairs": []}
    t_all = time.perf_counter()
    for src, tgt in pairs:
        t0 = time.perf_counter()
        if progress:
            print(f"[{src} -> {tgt}] ...", flush=True)
        per_source = []
        for s in src_seeds:
            key = (src, s)
            res = protocol(None if key in sources else domain_data(src, size), domain_data(tgt, size),
                           out / f"{src}-to-{tgt}" / f"source-seed-{s}", preset=preset,
                           sets=sets if key in sources else {**(sets or {}), "train.seed": s},
                           source_checkpoint=sources.get(key), variants={**seed_runs, **ablation_runs},
                           progress=False)
            sources.setdefault(key, Path(res["source_checkpoint"]))
            per_source.append(res)
        lab = [{"source_seed": s} for s in src_seeds]
        rows = [_row("source-only", "source-only", [r["source_only"] for r in per_source], lab)]
        adapted, adapted_lab = [], []
        for s, r in zip(src_seeds, per_source, strict=True):
            for a, name in zip(adapt_seeds, ["adapted", *seed_runs], strict=True):
                adapted.append(r[name])
                adapted_lab.append({"source_seed": s, "adapt_seed": a})
        rows.append(_row(method, "adapted", adapted, adapted_lab))
        rows += [_row(f"{method}: {v}", "ablation", [r[v] for r in per_source],
                      [{"source_seed": s, "adapt_seed": seed0} for s in src_seeds]) for v in ablation_runs]
        test = task.load_data(domain_data(tgt, size), "test", 72, progress=False)
        for b in baselines:
            model, _, _ = load_model(b, None, preset="paper")
            metrics, _ = task.evaluate(model, test)
            rows.append(_row(f"{b} (no training)", "baseline", [metrics]))
        base, base_dropped = rows[0]["MAE"], rows[0]["tail_dropped"]["MAE"]
        for r in rows:
            r["MAE_change_vs_source_only"] = (r["MAE"] - base) / base if base else None
            d = r["tail_dropped"]
            d["MAE_change_vs_source_only"] = (d["MAE"] - base_dropped) / base_dropped if base_dropped else None
        # the change each source model's own adaptation makes (adapted MAE: mean over the adaptation seeds)
        paired = []
        for s, r in zip(src_seeds, per_source, strict=True):
            so = float(r["source_only"]["MAE"])
            ad = [float(x["MAE"]) for x, lb in zip(adapted, adapted_lab, strict=True) if lb["source_seed"] == s]
            paired.append({"source_seed": s, "source_only": so, "adapted": sum(ad) / len(ad),
                           "change": (sum(ad) / len(ad) - so) / so if so else None})
        pair = {"source": src, "target": tgt, "rows": rows, "per_source_model": paired,
                "source_seconds": round(sum(float(r["source_seconds"] or 0) for r in per_source), 1),
                "wall_s": round(time.perf_counter() - t0, 1)}
        results["pairs"].append(pair)
        if progress:
            print("      " + "; ".join(f"{r['method']} MAE {r['MAE']:.2f}" for r in rows), flush=True)
    results["wall_s"] = round(time.perf_counter() - t_all, 1)
    from .runner import environment

    results["env"] = environment()
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2, default=float))
    png = _plot(out / "domain_shift_MAE.png", results)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(markdown(results, png.name if png else None))
    return results


def _plot(path: Path, results: dict[str, Any]) -> Path | None:
    from ..tasks.plots import _plt, _save

    if not results["pairs"]:
        return None
    plt = _plt()
    names = [r["method"] for r in results["pairs"][0]["rows"]]
    n = len(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * n * len(results["pairs"]) / 2 + 2), 3.8))
    width = 0.8 / n
    for j, name in enumerate(names):
        xs = [i + (j - (n - 1) / 2) * width for i in range(len(results["pairs"]))]
        rows = [next(r for r in p["rows"] if r["method"] == name) for p in results["pairs"]]
        sds = [float(r.get("MAE_sd") or 0.0) for r in rows]
        ax.bar(xs, [float(r["MAE"]) for r in rows], width, label=name, yerr=sds if any(sds) else None, capsize=3)
    ax.set_xticks(range(len(results["pairs"])), [f"{p['source']} -> {p['target']}" for p in results["pairs"]])
    seeds = len(results.get("adapt_seeds") or [])
    ax.set(ylabel="target MAE (bpm)", title=f"{results['method']}: domain shift (target test split)"
           + (f"; adapted: mean ± sd over {seeds} seeds" if seeds > 1 else ""))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _cell(r: dict[str, Any], k: str = "MAE") -> str:
    """``mean ± sd (each run)`` for a row of several runs, the value alone for one."""
    runs = r.get("runs", ())
    text = f"{r[k]:.2f}"
    if len(runs) > 1 and r.get(f"{k}_sd") is not None:
        text += f" ± {r[f'{k}_sd']:.2f} ({', '.join(f'{run[k]:.2f}' for run in runs)})"
    return text


def markdown(results: dict[str, Any], png: str | None = None) -> str:
    """The report: one table per pair, the change per source model, the toolbox read-out, the target line."""
    env = results.get("env", {})
    src_seeds, adapt_seeds = results.get("source_seeds") or [], results.get("adapt_seeds") or []
    lines = ["# Domain shift: source-free adaptation", "",
             f"{env.get('time_utc', '')} · mmtrust {env.get('mmtrust', '')} · torch {env.get('torch', '')} · "
             f"{env.get('cpu_count', '?')} CPUs · method `{results['method']}` preset `{results['preset']}` · data size "
             f"`{results['size']}` · total {results.get('wall_s', 0):.0f} s", "",
             f"Each row is the mean ± standard deviation (each run in brackets) over {len(src_seeds)} source "
             f"model(s) (stage-1 seeds {', '.join(map(str, src_seeds))}); the adapted row over those source models x "
             f"{len(adapt_seeds)} adaptation seed(s) ({', '.join(map(str, adapt_seeds))}); ablations use the first "
             "adaptation seed on every source model. The change is that of the means.", ""]
    for p in results["pairs"]:
        lines += [f"## {p['source']} -> {p['target']}", "",
                  "| method | MAE | RMSE | Pearson | MAE vs source-only | adapt s (all runs) |", "|---|---|---|---|---|---|"]
        for r in p["rows"]:
            ch = r.get("MAE_change_vs_source_only")
            lines.append(f"| {r['method']} | {_cell(r)} | {r['RMSE']:.2f} | {r['Pearson']:.2f} | "
                         f"{'-' if ch is None or r['kind'] == 'source-only' else f'{100 * ch:+.0f}%'} | "
                         f"{r.get('adapt_seconds', '-')} |")
        paired = p.get("per_source_model") or []
        if paired:
            each = [f"{q['source_seed']}: {q['source_only']:.2f} -> {q['adapted']:.2f}"
                    + ("" if q["change"] is None else f" ({100 * q['change']:+.0f}%)") for q in paired]
            lines += ["", "Per source model (stage-1 seed: source-only -> adapted MAE): " + "; ".join(each) + "."]
        stage1 = f"source stage {p['source_seconds']} s" if p["source_seconds"] else "stage-1 models reused"
        lines += ["", f"{p['rows'][0].get('n_videos', '?')} target test videos; {stage1}; pair total {p['wall_s']} s.",
                  ""]

    def met(key: str | None) -> str:
        hit = [p for p in results["pairs"]
               if ((p["rows"][1].get(key, {}) if key else p["rows"][1]).get("MAE_change_vs_source_only") or 0) <= -0.30]
        return (f"met on {len(hit)} of {len(results['pairs'])} pairs"
                + (f" ({', '.join(p['source'] + ' -> ' + p['target'] for p in hit)})" if hit else ""))

    lines += [f"Target (MAE cut by >= 30 % against source-only): {met(None)}.", "",
              "Source-only and adapted models share the stage-1 weights (trained once per source domain and seed; "
              "epoch chosen on the source validation split). Adaptation reads the target train split without labels "
              "for a fixed number of epochs; all metrics are on the target test split (per-video HR over the "
              "whole video, toolbox HR read-out). Nothing was selected on a test split.", ""]
    if results["pairs"] and results["pairs"][0]["rows"][0].get("tail_dropped"):
        lines += ["## The same models, rPPG-Toolbox's chunking (frames after the last whole chunk dropped)", "",
                  "A neural model's heart rate read only from its whole chunks, as rPPG-Toolbox reads it (the "
                  "read-out of this benchmark until 2026-12-03); POS reads whole videos either way. Mean MAE "
                  "(change against source-only) and the share of each video's frames read:", "",
                  "| method | " + " | ".join(f"{p['source']} -> {p['target']}" for p in results["pairs"]) + " |",
                  "|---|" + "---|" * len(results["pairs"])]
        for j, r0 in enumerate(results["pairs"][0]["rows"]):
            cells = []
            for p in results["pairs"]:
                d = p["rows"][j]["tail_dropped"]
                ch = d.get("MAE_change_vs_source_only")
                cells.append(f"{d['MAE']:.2f}" + ("" if j == 0 or ch is None else f" ({100 * ch:+.0f}%)")
                             + (f", {100 * d['frames_read']:.0f} % of frames" if d.get("frames_read") else ""))
            lines.append(f"| {r0['method']} | " + " | ".join(cells) + " |")
        lines += ["", f"Target with this read-out: {met('tail_dropped')}.", ""]
    if png:
        lines += [f"![MAE]({png})", ""]
    return "\n".join(lines)
