"""DTN benchmark on the built-in data: DTN vs baselines (intra and cross-forgery) and DTN's ablation rows.

Usage::

    .venv/bin/python docs/scripts/bench_dtn.py --out runs/bench_dtn [--preset quick] [--only dtn,vit]
        [--protocols synthetic-intra,synthetic-cross-forgery] [--no-ablation] [--threads 2]
        [--data-options "online=1&augment=strong"] [--set train.epochs=40 --set train.monitor=val_auc ...]

Each row trains on the protocol's train split (epoch chosen on its val split), evaluates on its test split
(never used for selection), and is appended to ``OUT/results.jsonl`` as soon as it finishes; ``OUT/table.md``
is rewritten after each row. ``--data-options`` are appended to each protocol (``protocol:NAME?OPTIONS``):
``online=1`` re-renders the built-in train forgeries every epoch, ``augment=strong`` is the strong training
augmentation (both act on training only; val and test data are unchanged). ``--set KEY=VALUE`` overrides a
config key of every row (e.g. the same longer budget for DTN and both baselines), under each ablation's own.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ABLATIONS = {  # name -> DTN config overrides (each switches one component off)
    "dtn -moe": {"moe": False},
    "dtn -levt": {"levt": False},
    "dtn -mas": {"mas_head_scale": False, "mas_head_mix": False},
    "dtn -dsd": {"dsd.enabled": False},
    "dtn lite0-stem": {"stem": "efficientnet-lite0", "pretrained": True},  # for quick (conv stem)
    "dtn conv-stem": {"stem": "conv", "pretrained": False},  # for bench (pretrained Lite0 stem)
}
DEFAULT_ABLATIONS = {"quick": "dtn -moe,dtn -levt,dtn -mas,dtn -dsd,dtn lite0-stem",
                     "bench": "dtn -moe,dtn -levt,dtn -mas,dtn -dsd,dtn conv-stem"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench_dtn")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--only", default="dtn,effnet-lite0,vit")
    ap.add_argument("--protocols", default="synthetic-intra,synthetic-cross-forgery")
    ap.add_argument("--ablations", default=None, help="comma list of ABLATIONS keys (default: the five rows "
                    "that switch one component of the preset off; the stem row swaps the preset's stem)")
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--data-options", default="", help='appended to each protocol, e.g. "online=1&augment=strong"')
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every row, e.g. train.epochs=40 (repeatable)")
    args = ap.parse_args()
    from mmtrust.config import parse_set_args

    common = parse_set_args(args.set) or {}

    import logging

    import lightning.pytorch  # noqa: F401
    import torch

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmtrust.registry import get_method, get_task

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = get_task("forgery")
    jobs = [(m, m, {}) for m in args.only.split(",") if m]
    if not args.no_ablation:
        names = args.ablations or DEFAULT_ABLATIONS.get(args.preset, DEFAULT_ABLATIONS["quick"])
        unknown = [n for n in names.split(",") if n and n not in ABLATIONS]
        if unknown:
            raise SystemExit(f"--ablations: unknown {unknown}; choose from {sorted(ABLATIONS)}")
        jobs += [(name, "dtn", ABLATIONS[name]) for name in names.split(",") if name]
    for proto in args.protocols.split(","):
        for label, method, overrides in jobs:
            t0 = time.perf_counter()
            data = f"protocol:{proto}" + (f"?{args.data_options}" if args.data_options else "")
            row = task.bench(get_method(method), args.preset, data, out / proto, quick=True,
                             label=label, overrides={**common, **overrides})
            row.update(protocol=proto, data_options=args.data_options, sets=common,
                       wall_s=round(time.perf_counter() - t0, 1))
            row.pop("config", None)
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            m = row["metrics"]
            print(f"{proto:26s} {label:16s} AUC {m['AUC']:.4f} EER {m['EER']:.4f} ACC {m['ACC']:.4f} "
                  f"attn_sim {m.get('attn_similarity', float('nan')):.4f} params {row['params']} train {row['train_s']:.1f}s",
                  flush=True)
            write_table(out)


def write_table(out: Path) -> None:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    kinds = sorted({k for r in rows for k in r["metrics"] if k.startswith("AUC_")})
    head = ["protocol", "method", "AUC", "EER", "ACC", "AP", *kinds, "attn_sim", "params", "train_s", "crops/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m = r["metrics"]
        cells = [r["protocol"], r["method"], *(f"{m[k]:.4f}" for k in ("AUC", "EER", "ACC", "AP")),
                 *(f"{m[k]:.4f}" if k in m else "-" for k in kinds), f"{m['attn_similarity']:.4f}" if 'attn_similarity' in m else "-",
                 str(r["params"]), f"{r['train_s']:.1f}", f"{r['infer_items_per_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
