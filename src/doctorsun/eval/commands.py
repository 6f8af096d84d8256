"""``doctorsun eval``: score a model on a medical benchmark read in its published layout."""

from __future__ import annotations

import argparse

from doctorsun.eval.benchmarks import BENCHMARKS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model dir (DoctorSun or any LLaVA-HF checkpoint)")
    p.add_argument("--bench", required=True, choices=list(BENCHMARKS), metavar="NAME",
                   help="benchmark: " + ", ".join(BENCHMARKS))
    p.add_argument("--data", required=True,
                   help="the benchmark's file or folder as published (SunMed-VL: the .jsonl file)")
    p.add_argument("--out", required=True,
                   help="folder for predictions.jsonl, scores.json, report.md, scores.png")
    p.add_argument("--split", default=None, help="split to read (default: the set's test split)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N questions")
    p.add_argument("--blank-image", action="store_true",
                   help="text-only baseline: every image replaced by a black one of the same size")
    p.add_argument("--batch-size", type=int, default=8, help="questions generated together (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="answer length limit (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed (decoding is greedy; default 0)")
    p.add_argument("--fresh", action="store_true",
                   help="discard predictions already in --out instead of resuming from them")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1... (default: cuda when available)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights dtype (default: float32 on CPU, bfloat16 on GPU)")


def run(args: argparse.Namespace) -> int:
    import torch

    from doctorsun.errors import DoctorSunError
    from doctorsun.eval.benchmarks import load_benchmark
    from doctorsun.eval.config import EvalConfig
    from doctorsun.eval.runner import evaluate
    from doctorsun.model.generate import Engine

    for flag in ("limit", "batch_size", "max_new_tokens"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise DoctorSunError(f"--{flag.replace('_', '-')} must be >= 1, not {value}")
    config = EvalConfig(bench=args.bench, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                        blank_image=args.blank_image, limit=args.limit, seed=args.seed, resume=not args.fresh)
    data = load_benchmark(args.bench, args.data, args.split)  # bad data fails before the model loads
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype if args.dtype != "auto" else ("float32" if device == "cpu" else "bfloat16")
    engine = Engine.load(args.model, dtype=dtype, device=device)
    scores = evaluate(engine, data.records, config, image_root=data.image_root, out_dir=args.out,
                      data_file=data.data_path, model_name=str(args.model), problems=data.problems)
    print(summary(scores))
    print(f"  report: {args.out}/report.md")
    return 0


def summary(scores: dict) -> str:
    """A few lines for the terminal; the full tables are in report.md."""
    from doctorsun.eval.report import LABELS

    parts = [f"{LABELS[k]} {scores[k]:.3f}" for k in LABELS if scores.get(k) is not None]
    return (f"{scores['bench']}: {scores['n']} scored, {scores['n_skipped']} skipped\n  "
            + (", ".join(parts) or "no scores"))
