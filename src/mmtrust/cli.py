"""The ``mmtrust`` command line: list, train, eval, predict, bench, demo, attack, faces.

Thin by design: every subcommand looks the method up in the registry and hands the work to the method's
task (``mmtrust.tasks``); no subcommand knows a method by name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _console():
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 160))


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="left" if h in ("method", "dataset", "metric") else "right")
    for r in rows:
        table.add_row(*r)
    _console().print(table)


def _print_metrics(title: str, metrics: dict) -> None:
    _print_table(title, ["metric", "value"],
                 [[k, f"{v:.3f}" if isinstance(v, float) else str(v)] for k, v in metrics.items()])


def _build(method: str, preset: str, config: str | None, sets: list[str] | None):
    from .config import build_config, parse_set_args
    from .registry import get_method

    entry = get_method(method)
    cfg = build_config(entry.config_cls, entry.presets, preset, config, parse_set_args(sets))
    return entry, cfg


def _load_model(method: str, checkpoint: str | None, preset: str, config: str | None, sets: list[str] | None,
                untrained: bool = False):
    from .engine.loading import load_model

    return load_model(method, checkpoint, preset=preset, config=config, sets=sets, untrained=untrained)


def _hr(name: str):
    from .methods.rppg.postprocess import HRConfig

    return HRConfig.named(name)


def cmd_list(args: argparse.Namespace) -> int:
    from .registry import get_dataset, get_method, list_datasets, list_methods

    rows = []
    for n in list_methods(args.family):
        m = get_method(n)
        rows.append([n, m.family, "yes" if m.trainable else "no", m.paper.title[:60],
                     m.paper.arxiv or "-", m.default_data or "-"])
    _print_table("methods", ["method", "family", "trainable", "paper", "arXiv", "built-in data"], rows)
    drows = [[n, get_dataset(n).task, "built-in" if get_dataset(n).builtin else "path", get_dataset(n).summary[:70]]
             for n in list_datasets()]
    _print_table("datasets", ["dataset", "task", "kind", "summary"], drows)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import config_to_dict
    from .engine.checkpoint import save_method
    from .registry import get_task

    entry, cfg = _build(args.method, args.preset, args.config, args.set)
    if not entry.trainable:
        raise SystemExit(f"error: method {args.method!r} is not trainable (it has no learned weights); "
                         f"run `mmtrust eval {args.method} --data ...` instead")
    adaptive = getattr(entry.model_cls, "source_free_protocol", None)
    if args.source or args.target or args.source_checkpoint or (adaptive and args.protocol):
        return _train_source_free(args, entry, adaptive)
    data = args.data or entry.default_data
    test_data, test_split = args.test_data, args.test_split
    if args.protocol:
        from .protocols import load_protocol

        if args.data:
            raise ValueError("--protocol names the training data itself; drop --data (or drop --protocol)")
        proto = load_protocol(args.protocol, family=entry.family)
        data, test_data, test_split = proto.train_data, test_data or proto.test_data, test_split or proto.test_split
        print(f"protocol {proto.name}: train {data} -> test {test_data} ({test_split})")
    test_data, test_split = test_data or data, test_split or "test"
    out = Path(args.out or f"runs/{args.method}")
    task = get_task(entry.task)
    import lightning as L

    L.seed_everything(cfg.train.seed, workers=True, verbose=False)  # the initial weights too
    model = entry.model_cls(cfg)
    result = task.train(model, cfg, data, out, devices=args.devices, accelerator=args.accelerator,
                        num_nodes=args.num_nodes, resume=args.resume, progress=not args.no_progress,
                        stop_after_epochs=args.stop_after)
    if not result.is_global_zero:
        return 0
    test = task.load_data(test_data, test_split, model.image_size, progress=not args.no_progress)
    metrics, _ = task.evaluate(model, test)
    save_method(out / "checkpoint", model, method=args.method, preset=args.preset, config=config_to_dict(cfg),
                extra={"data": data, "test_data": test_data, "test_split": test_split, "protocol": args.protocol,
                       "test_metrics": metrics, "train_seconds": result.train_seconds,
                       "best_training_checkpoint": str(result.best_path or result.last_path)})
    _print_metrics(f"{args.method} on {test_data} ({test_split} split)", metrics)
    print(f"checkpoint: {out / 'checkpoint'}")
    return 0


def _train_source_free(args: argparse.Namespace, entry, protocol_fn) -> int:
    """``train METHOD --source S --target T`` (or ``--source-checkpoint CK --target T``, or ``--protocol P``):
    the method's two-stage source-free protocol; prints and saves source-only and adapted target metrics."""
    from .config import parse_set_args

    if protocol_fn is None:
        raise ValueError(f"method {args.method!r} has no source-free adaptation protocol: --source/--target/"
                         f"--source-checkpoint do not apply to it (train it with --data)")
    for flag, value in (("--data", args.data), ("--test-data", args.test_data), ("--resume", args.resume),
                        ("--stop-after", args.stop_after)):
        if value:
            raise ValueError(f"{flag} does not combine with source-free adaptation (--source/--target/--protocol): "
                             f"the source trains stage 1, the target's unlabeled train split adapts and its test "
                             f"split is scored")
    source, target, test_split = args.source, args.target, args.test_split or "test"
    if args.protocol:
        from .protocols import load_protocol

        if source or target:
            raise ValueError("--protocol names the source (train_data) and the target (test_data); "
                             "drop --source/--target (or drop --protocol)")
        proto = load_protocol(args.protocol, family=entry.family)
        source, target, test_split = proto.train_data, proto.test_data, args.test_split or proto.test_split
        print(f"protocol {proto.name}: source {source} -> target {target} ({test_split})")
    if args.source_checkpoint:
        if args.source:
            raise ValueError("give --source (stage 1 trains on it) or --source-checkpoint (stage 1 skipped), not both")
        source = None
        if not Path(args.source_checkpoint).is_dir():
            raise FileNotFoundError(f"--source-checkpoint {args.source_checkpoint}: not a checkpoint folder "
                                    f"(written by `mmtrust train {args.method} --source ...` as OUT/source/checkpoint)")
    elif not source:
        raise ValueError("source-free adaptation needs --source DATA (or --source-checkpoint DIR) and --target DATA")
    if not target:
        raise ValueError("source-free adaptation needs --target DATA (the unlabeled target domain)")
    if args.devices not in (1, "1") or args.num_nodes != 1:
        raise ValueError("source-free adaptation runs on one device (--devices 1)")
    out = Path(args.out or f"runs/{args.method}")
    sets = parse_set_args(args.set)
    if args.config:  # YAML overrides, then --set (as for every method)
        import yaml

        from .config import _flatten

        sets = {**_flatten(yaml.safe_load(Path(args.config).read_text()) or {}), **sets}
    res = protocol_fn(source, target, out, preset=args.preset, sets=sets or None,
                      source_checkpoint=args.source_checkpoint, test_split=test_split,
                      progress=not args.no_progress, accelerator=args.accelerator)
    keys = ["MAE", "RMSE", "MAPE", "Pearson", "SNR", "n_videos"]
    rows = [[name, *(f"{res[name][k]:.3f}" if isinstance(res[name].get(k), float) else str(res[name].get(k, "-"))
                     for k in keys)] for name in ("source_only", "adapted")]
    _print_table(f"{args.method}: {res['source'] or res['source_checkpoint']} -> {target} ({test_split} split)",
                 ["method", *keys], rows)
    print(f"results: {out / 'sfda_results.json'}")
    print(f"adapted checkpoint: {out / 'adapted' / 'checkpoint'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .registry import get_method, get_task

    model, preset, _ = _load_model(args.method, args.checkpoint, args.preset, args.config, args.set,
                                   untrained=args.untrained)
    entry = get_method(args.method)
    task = get_task(entry.task)
    data = args.data or entry.default_data
    ds = task.load_data(data, args.split, model.image_size, progress=not args.no_progress)
    settings = {}  # evaluation options (rPPG: windows, HR read-out); each task takes the ones it knows
    if args.window:
        settings["window_s"] = args.window
    if args.hr:
        settings["hr_config"] = _hr(args.hr)
    if args.tail:
        settings["tail"] = args.tail
    metrics, details = task.evaluate(model, ds, **settings)
    out = Path(args.out or f"runs/{args.method}/eval")
    task.write_eval(out, args.method, data, args.split, metrics, details, ds,
                    hr_setting=args.hr or "toolbox", window_s=args.window, tail=args.tail or "cover")
    _print_metrics(f"{args.method} on {data} ({args.split} split)", metrics)
    print(f"results: {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .registry import get_method, get_task

    model, _, _ = _load_model(args.method, args.checkpoint, args.preset, args.config, args.set,
                              untrained=args.untrained)
    task = get_task(get_method(args.method).task)
    out = Path(args.out or "runs/predict")
    stems = [Path(i).stem for i in args.inputs]
    failed = 0
    for inp, stem in zip(args.inputs, stems, strict=True):
        # inputs that share a file name (UBFC: every subject's is vid.avi) get their folder's name too
        name = f"{Path(inp).resolve().parent.name}_{stem}" if stems.count(stem) > 1 else stem
        try:
            result = task.predict(model, inp, out, fs=args.fps, name=name)
        except (ValueError, OSError) as err:
            failed += 1
            result = {"input": inp, "error": str(err)}
            print(f"error: {err}", file=sys.stderr)
        print(json.dumps(result), flush=True)
    return 2 if failed else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.runner import run_bench, tables

    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    jobs = args.jobs if args.jobs is not None else (min(2, os.cpu_count() or 1) if args.demo else 1)
    res = run_bench(methods, args.data, args.out, quick=args.quick, preset=args.preset, jobs=jobs,
                    demo=args.demo)
    for task, header, body in tables(res["rows"]):
        _print_table(f"mmtrust benchmark: {task} (test split)", header, body)
    print(f"report: {Path(args.out) / 'report.md'}")
    return 1 if any("error" in r for r in res["rows"]) else 0


def cmd_bench_shift(args: argparse.Namespace) -> int:
    from .bench.domain_shift import PAIRS, run_domain_shift
    from .config import parse_set_args

    pairs = PAIRS
    if args.pairs:
        pairs = []
        for item in args.pairs.split(","):
            src, colon, tgt = item.strip().partition(":")
            if not colon or not src or not tgt:
                raise ValueError(f"--pairs expects SOURCE:TARGET[,SOURCE:TARGET...], got {item!r}")
            pairs.append((src, tgt))
    res = run_domain_shift(args.out, pairs, size=args.size, method=args.method, preset=args.preset,
                           sets=parse_set_args(args.set) or None, ablations=not args.no_ablations, seeds=args.seeds,
                           source_seeds=args.source_seeds)
    for p in res["pairs"]:
        _print_table(f"{p['source']} -> {p['target']} (target test split)", ["method", "MAE", "RMSE", "Pearson"],
                     [[r["method"], *(f"{r[k]:.2f}" for k in ("MAE", "RMSE", "Pearson"))] for r in p["rows"]])
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    args.quick, args.methods, args.data, args.preset = True, None, None, None
    return cmd_bench(args)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="paper", help="paper (published config) or tiny (CPU seconds)")
    p.add_argument("--config", help="YAML file of config overrides")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(prog="mmtrust", description="Trustworthy face and multimodal perception.")
    ap.add_argument("--version", action="version", version=f"mmtrust {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="registered methods and datasets")
    p.add_argument("--family")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("train", help="train a method (Lightning: devices, DDP, checkpoints, CSV logs)")
    p.add_argument("method")
    p.add_argument("--data", help="dataset name, NAME:PATH or PATH (default: the method's built-in data)")
    p.add_argument("--protocol", help="a shipped protocol (rppg: ubfc-intra, pure-intra, pure-to-ubfc, "
                                      "ubfc-to-pure, synthetic-intra, synthetic-cross) or a protocol YAML file")
    p.add_argument("--test-data", help="test on this dataset instead of --data's test split (cross-dataset)")
    p.add_argument("--test-split", choices=["test", "all"], help="split of the test data (default test)")
    p.add_argument("--source", metavar="DATA", help="source-free adaptation (e.g. sfda-rppg): labeled source data "
                                                   "for stage 1")
    p.add_argument("--target", metavar="DATA", help="source-free adaptation: target data; its train split adapts "
                                                   "without labels, its test split is scored")
    p.add_argument("--source-checkpoint", metavar="DIR", help="source-free adaptation: skip stage 1 and adapt this "
                                                             "source checkpoint (OUT/source/checkpoint of a run)")
    _add_model_args(p)
    p.add_argument("--devices", type=lambda s: s if s == "auto" else int(s), default=1)
    p.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--out", help="run folder (default runs/METHOD)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.ckpt")
    p.add_argument("--stop-after", type=int, metavar="EPOCHS",
                   help="end this run after EPOCHS epochs (the schedule still spans train.epochs); "
                        "continue later with --resume")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a method or checkpoint on a dataset split")
    p.add_argument("method")
    p.add_argument("--checkpoint", help="mmtrust checkpoint folder, a training .ckpt, official:NAME (released weights in $MMTRUST_WEIGHTS, e.g. official:PURE) or a third-party weights file")
    p.add_argument("--untrained", action="store_true", help="allow random weights for a trainable method")
    p.add_argument("--data")
    p.add_argument("--split", default="test")
    p.add_argument("--hr", choices=["toolbox", "physmamba"],
                   help="rPPG heart-rate read-out: toolbox (0.6-3.3 Hz, periodogram; default) or physmamba "
                        "(0.75-2.5 Hz, Welch), the settings of the two papers' evaluation code")
    p.add_argument("--window", type=float, metavar="SECONDS",
                   help="rPPG: HR metrics over non-overlapping windows of this length instead of whole videos")
    p.add_argument("--tail", choices=["cover", "drop"],
                   help="rPPG, neural models: the frames after the last whole chunk are read from one more, "
                        "overlapping chunk (cover; default) or dropped (drop: rPPG-Toolbox's protocol)")
    _add_model_args(p)
    p.add_argument("--out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="run a method on your own files (rPPG: a video or frame folder)")
    p.add_argument("method")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--checkpoint", help="mmtrust checkpoint folder, a training .ckpt, official:NAME (released weights in $MMTRUST_WEIGHTS, e.g. official:PURE) or a third-party weights file")
    p.add_argument("--untrained", action="store_true", help="allow random weights for a trainable method")
    p.add_argument("--fps", type=float, help="frame rate (frame folders; overrides the file's)")
    _add_model_args(p)
    p.add_argument("--out")
    p.set_defaults(func=cmd_predict)

    for name, helptext in (("bench", "benchmark methods side by side"),
                           ("demo", "quick benchmark of every method on its built-in data")):
        p = sub.add_parser(name, help=helptext)
        if name == "bench":
            p.add_argument("--quick", action="store_true", help="demo-sized data and tiny presets")
            p.add_argument("--methods", help="comma-separated method names (default: all)")
            p.add_argument("--data", help="dataset name or path (default: each method's built-in data)")
            p.add_argument("--preset", help="preset for every method (default: with --quick each method's quick preset, "
                                "else its tiny one; without --quick the paper preset)")
        p.add_argument("--jobs", type=int, metavar="N",
                       help="run N methods side by side, rows sharing a dataset in one lane (default: 1 for bench, "
                            "2 for demo; timings are then for a quick look only)")
        p.add_argument("--out", default="runs/bench" if name == "bench" else "runs/demo")
        p.set_defaults(demo=name == "demo")
        p.set_defaults(func=cmd_bench if name == "bench" else cmd_demo)

    p = sub.add_parser("bench-shift", help="rPPG domain-shift benchmark of a source-free adaptation method "
                                           "(source-only vs adapted vs ablations vs POS on built-in domain pairs)")
    p.add_argument("--method", default="sfda-rppg", help="a method with a source-free protocol (default sfda-rppg)")
    p.add_argument("--pairs", help="comma-separated SOURCE:TARGET domains of synthetic-rppg "
                                   "(default studio:webcam,studio:outdoor,webcam:outdoor)")
    p.add_argument("--size", default="quick", choices=["tiny", "quick", "full"],
                   help="data size per domain: quick (60 subjects x 12 s, 36 target test videos; the benchmark), "
                        "tiny (a check), full (the quick synthetic preset, 35 x 20 s)")
    p.add_argument("--preset", help="method preset (default: quick, tiny for --size tiny)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one method config key")
    p.add_argument("--no-ablations", action="store_true", help="skip the ablation runs")
    p.add_argument("--source-seeds", type=int, default=3,
                   help="source models per source domain (stage-1 seeds; default 3): every row is the mean over "
                        "them, since the source-only MAE alone moves by several bpm between source models")
    p.add_argument("--seeds", type=int, default=2,
                   help="adaptation seeds per source model in the adapted row (default 2; ablations use the first)")
    p.add_argument("--out", default="runs/bench-shift")
    p.set_defaults(func=cmd_bench_shift)

    # commands owned by a family's module (each adds its own sub-parser)
    from .cli_attack import add_parser as add_attack_parser
    from .data.faces.inspect import add_cli as add_faces_cli

    add_attack_parser(sub)
    add_faces_cli(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from .runtime import keep_freed_memory

    keep_freed_memory()  # malloc keeps freed memory: no page faults on every big tensor (see mmtrust.runtime)
    args = build_parser().parse_args(argv)
    debug = os.environ.get("MMTRUST_DEBUG")
    try:
        return int(args.func(args) or 0)
    except (KeyError, ValueError, FileNotFoundError, FileExistsError, NotImplementedError, OSError,
            ImportError) as err:  # ImportError: a missing optional extra (the message has the pip line)
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        if debug:
            raise
        print(f"error: {err}\n(set MMTRUST_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

