"""``mmtrust bench``: every method (and its baselines) side by side on one dataset, one report.

Each method runs in its own fresh process, so its peak memory is its own and a crash in one method is
recorded in the report instead of ending the benchmark. The processes are forked from a fork server that has
imported torch, Lightning and the methods once (:mod:`mmtrust.bench._preload`); where the platform has no
``forkserver`` (Windows, macOS defaults aside) they are spawned. Writes ``OUT/results.json``
(``{"rows": [...], "env": {...}}``), ``OUT/report.md`` and PNG plots.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .._deps import MissingExtraError
from ..data.cache import atomic_path

__all__ = ["run_bench", "format_table", "tables", "environment", "split_spec", "run_order"]

HEADLINE = {  # per task: the metrics shown in the printed table, in order
    "rppg": ["MAE", "RMSE", "MAPE", "Pearson", "SNR"],
    "singlecell": ["ARI", "NMI", "ASW", "acc", "ARI_rna", "acc_rna", "ARI_pca_rna", "ARI_concat"],
    "attack": ["ASR", "l2_mean", "linf_mean", "PSNR", "SSIM", "iters_mean", "attack_s"],
    "forgery": ["AUC", "EER", "ACC", "AP", "video_AUC", "attn_similarity"],
}


def environment() -> dict[str, Any]:
    import torch

    from .. import __version__

    return {
        "mmtrust": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": mp.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def file_label(spec: str) -> str:
    """A file-name-safe label of a method spec (``physmamba@official:PURE`` -> ``physmamba@official-PURE``)."""
    return "".join(c if c.isalnum() or c in "@-." else "-" for c in spec)


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 1024.0 / 1024.0


#: presets tried in order for ``bench --quick`` and for ``mmtrust demo`` (a method's ``demo`` preset is a
#: cut-down ``quick`` where that one is too slow for the demo's 10-minute budget; ``bench --quick`` keeps the
#: ``quick`` presets, whose figures the method notes quote)
QUICK_PRESETS = ("quick", "tiny")
DEMO_PRESETS = ("demo", "quick", "tiny")


def _preset_for(entry: Any, preset: str | None, quick: bool, demo: bool = False) -> str:
    """An explicit preset; else with ``quick`` the first of :data:`QUICK_PRESETS` (:data:`DEMO_PRESETS` for
    the demo) that the method has; else ``paper``."""
    if preset:
        return preset
    if quick:
        return next(p for p in (DEMO_PRESETS if demo else QUICK_PRESETS) if p in entry.presets or p == "tiny")
    return "paper"


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"physmamba@official:PURE"`` -> ``("physmamba", "official:PURE")``; a plain name -> ``(name, None)``."""
    name, at, checkpoint = spec.partition("@")
    return name.strip(), (checkpoint.strip() or None) if at else None


def _bench_row(spec: str, preset: str | None, data: str | None, out_dir: Path, quick: bool,
               demo: bool = False) -> dict[str, Any]:
    from ..registry import get_method, get_task

    name, checkpoint = split_spec(spec)
    entry = get_method(name)
    task = get_task(entry.task)
    if checkpoint:  # released or earlier-trained weights: evaluated as they are, in the architecture they fit
        row = task.bench(entry, preset or "paper", data or entry.default_data, out_dir, quick,
                         checkpoint=checkpoint, label=spec)
    else:
        row = task.bench(entry, _preset_for(entry, preset, quick, demo), data or entry.default_data, out_dir,
                         quick)
    row["method"] = spec
    row["task"] = entry.task
    row["family"] = entry.family
    return row


def _worker(name: str, preset: str | None, data: str | None, out_dir: str, quick: bool, queue: Any,
            threads: int | None = None, cwd: str | None = None, environ: dict[str, str] | None = None,
            demo: bool = False) -> None:
    try:
        import logging

        # the fork server started earlier, maybe elsewhere: take the caller's working folder and environment
        if environ is not None:
            os.environ.clear()
            os.environ.update(environ)
        if cwd is not None:
            os.chdir(cwd)
        import warnings

        from ..runtime import keep_freed_memory

        keep_freed_memory()  # as the CLI does (a no-op when the fork server already applied it)

        import lightning.pytorch  # noqa: F401 - it sets its own log level on import; ours must come after

        if threads:
            import torch

            torch.set_num_threads(threads)

        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=".*FastICA did not converge.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        row = _bench_row(name, preset, data, Path(out_dir), quick, demo)
        row["peak_rss_mb"] = round(_peak_rss_mb(), 1)
        queue.put(row)
    except MissingExtraError as err:  # an optional package is not installed: say which, don't fail
        queue.put({"method": name, "unavailable": str(err)})
    except BaseException as err:  # noqa: BLE001 - report, never take the whole benchmark down
        queue.put({"method": name, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()})


def _context() -> Any:
    """``forkserver`` with the heavy imports preloaded where available, else ``spawn``."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["mmtrust.bench._preload"])
        return ctx
    return mp.get_context("spawn")


def _run_isolated(name: str, preset: str | None, data: str | None, out_dir: Path, quick: bool,
                  threads: int | None = None, demo: bool = False) -> dict[str, Any]:
    ctx = _context()
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(name, preset, data, str(out_dir), quick, queue, threads, os.getcwd(),
                                             dict(os.environ), demo))
    proc.start()
    row = None
    while row is None:
        try:
            row = queue.get(timeout=1.0)
        except Exception:  # noqa: BLE001 - queue.Empty
            if not proc.is_alive():
                try:  # the row may have arrived just as the worker exited
                    row = queue.get(timeout=2.0)
                except Exception:  # noqa: BLE001
                    row = {"method": name, "error": f"worker died with exit code {proc.exitcode}"}
    proc.join()
    return row


def format_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    metric_names: list[str] = []
    for r in rows:
        for m in HEADLINE.get(r.get("task", ""), sorted(r.get("metrics", {}))):
            if m not in metric_names:
                metric_names.append(m)
    latency = any("clip_latency_s" in r for r in rows)
    header = ["method", "dataset", *metric_names, "params", "train s", "infer items/s",
              *(["clip s"] if latency else []), "peak MB"]
    body = []
    for r in rows:
        if "error" in r or "unavailable" in r:
            body.append([r["method"], "-", *(["error" if "error" in r else "skipped"] * len(metric_names)),
                         "-", "-", "-", *(["-"] if latency else []), "-"])
            continue
        vals = [f"{r['metrics'][m]:.2f}" if isinstance(r["metrics"].get(m), int | float) else "-" for m in metric_names]
        lat = [f"{r['clip_latency_s']:.3g}" if "clip_latency_s" in r else "-"] if latency else []
        body.append([r["method"], r["dataset"], *vals, f"{r['params']:,}", f"{r['train_s']:.1f}",
                     f"{r['infer_items_per_s']:.0f}", *lat, f"{r.get('peak_rss_mb', 0):.0f}"])
    return header, body


def _n_items(metrics: dict[str, Any]) -> Any:
    return next((metrics[k] for k in ("n_videos", "n_cells", "n_images", "n_items") if k in metrics), "?")


def _task_note(task: str | None) -> str:
    """The task's own sentence on how its numbers are computed (``bench_note`` on the task class)."""
    from ..registry import get_task

    try:
        return str(getattr(get_task(task), "bench_note", "")) if task else ""
    except KeyError:
        return ""


def tables(rows: list[dict[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """One ``(task, header, body)`` table per task, in the order tasks first appear."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r.get("task") or "other", []).append(r)
    return [(task, *format_table(rs)) for task, rs in groups.items()]


def _markdown(rows: list[dict[str, Any]], env: dict[str, Any], plots: list[str]) -> str:
    lines = ["# mmtrust benchmark", "",
             f"{env['time_utc']} · mmtrust {env['mmtrust']} · torch {env['torch']} · {env['cpu_count']} CPUs "
             f"({env['processor']}) · CUDA {env['cuda']}", ""]
    for task, header, body in tables(rows):
        lines += [f"## {task}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(b) + " |" for b in body] + [""]
    lines += ["Metrics are computed on the test split only; trainable methods are trained on the train split "
              "and their epoch is chosen on the validation split. `infer items/s` counts the task's items "
              "(rPPG: video frames); `clip s` is the median forward time of one model clip (rPPG: chunk length x "
              "image size, batch 1). Times are wall-clock on the machine above: compare them as ratios within "
              "one report.", ""]
    if env.get("jobs", 1) > 1:
        lines += [f"This run had {env['jobs']} methods running side by side ({env['torch_threads_per_job']} torch "
                  "thread(s) each): its times are for a quick look, not for comparison with a one-at-a-time "
                  "`mmtrust bench` run.", ""]
    for task in dict.fromkeys(r.get("task") for r in rows):
        note = _task_note(task)
        if note:
            lines += [f"{task}: {note}", ""]
    variants = [r for r in rows if "error" not in r and r.get("latency_variants")]
    if variants:
        lines += ["## Latency against reference implementations", "",
                  "Forward time of one clip (median of repeated runs, same weights, same process); the ratio is "
                  "reference / ours.", "", "| method | clip | ours s | reference | reference s | ratio |",
                  "|---|---|---|---|---|---|"]
        for r in variants:
            for v in r["latency_variants"]:
                lines.append(f"| {r['method']} | {r.get('clip_shape', '-')} | {r['clip_latency_s']:.3g} | {v['name']} | "
                             f"{v['clip_latency_s']:.3g} | {v['ratio']:.1f}x |")
        lines.append("")
    counts = [f"{r['method']}: {_n_items(r['metrics'])} test items"
              + (f", {r['metrics']['n_skipped']} unreadable and skipped" if r["metrics"].get("n_skipped") else "")
              for r in rows if "error" not in r and "unavailable" not in r]
    if counts:
        lines += ["Test items per method: " + "; ".join(counts) + ".", ""]
    skipped = [r for r in rows if "unavailable" in r]
    if skipped:
        lines += ["## Skipped", ""] + [f"- `{r['method']}`: {r['unavailable']}" for r in skipped] + [""]
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["## Failures", ""] + [f"- `{r['method']}`: {r['error']}" for r in errors] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def run_order(names: list[str], data: str | None) -> tuple[list[str], dict[str, str]]:
    """The order rows are started in when several run side by side, and each row's dataset key.

    Rows that share a dataset must not build it at the same time, so the first row of each dataset to start is
    its cheapest (an untrained one where there is one): it builds the data and the others wait for it to end.
    After those builders, the trained rows go first, then the rest, each in the asked order.
    """
    from ..registry import get_method

    key: dict[str, str] = {}
    trained: dict[str, bool] = {}
    for n in names:
        entry = get_method(split_spec(n)[0])
        key[n] = data or entry.default_data or entry.task
        trained[n] = bool(entry.trainable and not split_spec(n)[1])
    builders: dict[str, str] = {}
    for n in sorted(names, key=lambda n: trained[n]):  # stable: untrained first, else the asked order
        builders.setdefault(key[n], n)
    first = list(builders.values())
    rest = [n for n in names if n not in first]
    return first + sorted(rest, key=lambda n: not trained[n]), key


def _one_row(name: str, preset: str | None, data: str | None, out_dir: Path, quick: bool, isolate: bool,
             threads: int | None, demo: bool = False) -> dict[str, Any]:
    from ..registry import get_method

    t0 = time.perf_counter()
    row = _run_isolated(name, preset, data, out_dir, quick, threads, demo) if isolate else None
    if row is None:
        try:
            row = _bench_row(name, preset, data, out_dir, quick, demo)
            row["peak_rss_mb"] = round(_peak_rss_mb(), 1)
        except MissingExtraError as err:
            row = {"method": name, "unavailable": str(err)}
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    row.setdefault("task", get_method(split_spec(name)[0]).task)
    return row


def run_bench(methods: list[str] | None = None, data: str | None = None, out_dir: str | Path = "bench_out",
              quick: bool = True, preset: str | None = None, isolate: bool = True,
              progress: bool = True, jobs: int = 1, demo: bool = False) -> dict[str, Any]:
    """Run the benchmark and write ``results.json``, ``report.md`` and PNGs into ``out_dir``.

    ``jobs > 1`` runs that many rows at a time (in :func:`run_order`; a dataset is never built by two
    processes at once), each process with ``cpu_count // jobs`` torch threads: the wall time of the whole run
    drops (much of a row is single-threaded Python), but each row's own timings are then taken beside another
    process and are for a quick look only. ``demo`` prefers each method's ``demo`` preset (``mmtrust demo``).
    """
    import threading

    from ..registry import get_method, list_methods
    from ..tasks.plots import plot_bar

    names = list(dict.fromkeys(methods or list_methods()))  # a name given twice runs once
    for n in names:
        get_method(split_spec(n)[0])  # unknown names fail here, before any work, with the list of known ones
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = jobs if isolate else 1
    order, key = run_order(names, data) if jobs > 1 else (names, {n: "" for n in names})
    jobs = min(jobs, len(names)) or 1
    threads = max(1, (mp.cpu_count() or 1) // jobs) if jobs > 1 else None
    results_by_name: dict[str, dict[str, Any]] = {}
    cond = threading.Condition()
    pending = list(order)
    started: set[str] = set()  # dataset keys whose builder row has started
    built: set[str] = set()  # ... and ended
    done_count = [0]

    def take() -> str | None:
        """The next row whose dataset is built or not being built; waits while only blocked rows are left."""
        with cond:
            while pending:
                for n in pending:
                    if key[n] in built or key[n] not in started:
                        pending.remove(n)
                        started.add(key[n])
                        return n
                cond.wait()
            return None

    def work() -> None:
        while (name := take()) is not None:
            if progress and jobs == 1:
                print(f"[{done_count[0] + 1}/{len(names)}] {name} ...", flush=True)
            try:
                row = _one_row(name, preset, data, out_dir, quick, isolate, threads, demo)
            except Exception as err:  # noqa: BLE001 - a row, never a hung benchmark
                row = {"method": name, "task": get_method(split_spec(name)[0]).task, "wall_s": 0.0,
                       "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
            with cond:
                results_by_name[name] = row
                if "error" in row:  # its data may not be built: the next row of that dataset builds it, alone
                    started.discard(key[name])
                else:
                    built.add(key[name])
                done_count[0] += 1
                cond.notify_all()
                if progress:
                    msg = row.get("error") or row.get("unavailable") or ", ".join(
                        f"{k} {v:.2f}" for k, v in row["metrics"].items() if k in HEADLINE.get(row["task"], []))
                    print(f"{'' if jobs == 1 else f'[{done_count[0]}/{len(names)}] {name} '}"
                          f"({row['wall_s']:.0f} s): {msg}", flush=True)

    if progress and jobs > 1:
        print(f"running {len(names)} rows, {jobs} at a time ({threads} torch thread(s) each)", flush=True)
    workers = [threading.Thread(target=work, daemon=True) for _ in range(jobs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    rows: list[dict[str, Any]] = [results_by_name[n] for n in names]
    env = environment()
    env.update(jobs=jobs, torch_threads_per_job=threads or env["torch_threads"])
    done = {r["method"] for r in rows if "error" not in r and "unavailable" not in r}
    done_files = {file_label(m) for m in done}
    plots = [p.name for pattern in ("*_hr.png", "*_pulse.png") for p in sorted(out_dir.glob(pattern))
             if p.name.rsplit("_", 1)[0] in done_files]
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if "error" not in r and "unavailable" not in r:
            by_task.setdefault(r["task"], []).append(r)
    for task, trs in by_task.items():
        first = HEADLINE.get(task, [next(iter(trs[0]["metrics"]))])[0]
        png = plot_bar(out_dir / f"{task}_{first}.png", [r["method"] for r in trs],
                       [float(r["metrics"][first]) for r in trs], first, f"{task}: {first} on the test split")
        plots.insert(0, png.name)
    results = {"rows": rows, "env": env}
    with atomic_path(out_dir / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2, default=float))
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(_markdown(rows, env, plots))
    return results
