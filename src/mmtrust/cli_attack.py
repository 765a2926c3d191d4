"""``mmtrust attack``: run one or more registered attacks on a victim and its images, save and compare.

    mmtrust attack pgd-imp --model mobilenet_v2 --images builtin --out runs/attack
    mmtrust attack pgd-imp,pgd,cw-l2,deepfool --model mobilenet_v2 --images DIR --art --out runs/cmp

Writes ``OUT/adv/<attack>/<image>.png`` (16-bit PNG, lossless for these perturbations),
``OUT/<attack>_examples.png`` (clean / adversarial / amplified perturbation with predicted labels) and
``OUT/results.json``, and prints the results table. No attack is named here: names come from the registry.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``attack`` subcommand to an ``argparse`` sub-parser group; it calls :func:`run`."""
    p = subparsers.add_parser("attack", help="adversarial attacks on a victim classifier (PGD-Imp, PGD, CW, ...)")
    p.add_argument("method", help="a registered attack, or several separated by commas (same victim and images)")
    p.add_argument("--model", help="victim: mobilenet_v2, efficientnet_lite0, mnist_cnn, tiny_cnn "
                                   "(default: the preset's victim)")
    p.add_argument("--images", "--data", dest="images", default="builtin",
                   help="builtin (the victim's built-in images), a registered attack dataset (builtin-photos, "
                        "mnist-5k) or an ImageNet-style folder ROOT/<class>/<image>")
    p.add_argument("--limit", type=int, help="attack only the first N images")
    p.add_argument("--targeted", action="store_true", help="targeted attack (target chosen by --target-mode)")
    p.add_argument("--target-mode", choices=["random", "least_likely"], default="random")
    p.add_argument("--preset", default="paper", help="paper (our defaults), quick or tiny")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable); "
                   "keys a method does not have are skipped for that method")
    p.add_argument("--art", action="store_true", help="also run ART's twin of each attack that has one "
                                                      '(pip install "mmtrust[bench]")')
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-save", action="store_true", help="do not write the adversarial PNGs")
    p.add_argument("--out", default="runs/attack")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from .config import parse_set_args
    from .registry import get_method
    from .tasks.attack import compare, format_rows

    names = [n.strip() for n in args.method.split(",") if n.strip()]
    entries = [get_method(n) for n in names]  # unknown names fail here with the list of known ones
    not_attacks = [e.name for e in entries if e.task != "attack"]
    if not_attacks:
        raise ValueError(f"{', '.join(not_attacks)}: not an attack; attacks: "
                         f"{', '.join(sorted(n for n in _attack_names()))}")
    overrides: dict[str, Any] = parse_set_args(args.set)
    if args.targeted:
        overrides.update(targeted="true", target_mode=args.target_mode)
    victim = args.model or _preset_victim(entries[0], args.preset)
    print(f"attacking {victim} on {args.images} with {', '.join(names)} (preset {args.preset})", flush=True)
    rows = compare(names, victim, args.images, args.out, preset=args.preset, overrides=overrides,
                   limit=args.limit, art=args.art, save_images=not args.no_save, device=args.device)
    print(format_rows(rows))
    print(f"\nl2/linf/PSNR/SSIM: means over successful adversarial examples (images in [0, 1]); "
          f"results, PNGs and figures in {args.out}")
    return 0


def _attack_names() -> list[str]:
    from .registry import get_method, list_methods

    return [n for n in list_methods() if get_method(n).task == "attack"]


def _preset_victim(entry: Any, preset: str) -> str:
    from .config import build_config

    return build_config(entry.config_cls, entry.presets, preset).victim
