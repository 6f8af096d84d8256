"""``doctorsun data mini``: build SunMed-VL-mini from the medical images that installed packages ship."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bare-answers", action="store_true",
                   help="train on bare yes/no and option letters instead of reasoned answers that name the "
                        "finding first (\"MRI, so no\")")


def run(args: argparse.Namespace) -> int:
    from doctorsun.mini import build_mini  # heavy (images, augmentation): imported only here

    summary = build_mini(args.out, seed=args.seed, reasoned=not args.bare_answers)
    print(json.dumps(summary, ensure_ascii=False, indent=2, default=str))
    return 0
