"""``doctorsun eval``: score a model on a medical benchmark read in its published layout
(``doctorsun eval compare RUN_A RUN_B`` lives in ``doctorsun.eval.compare``)."""

from __future__ import annotations

import argparse

from doctorsun.eval.benchmarks import BENCHMARKS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model dir (DoctorSun or any LLaVA-HF checkpoint)")
    p.add_argument("--bench", choices=list(BENCHMARKS), metavar="NAME",
                   help="benchmark (required without --protocol): " + ", ".join(BENCHMARKS))
    p.add_argument("--data", required=True,
                   help="the benchmark's file or folder as published (SunMed-VL: the .jsonl file)")
    p.add_argument("--out", required=True,
                   help="folder for predictions.jsonl, scores.json, report.md, scores.png, protocol.json")
    p.add_argument("--protocol", help="run exactly this saved protocol.json (benchmark, split, settings, judge "
                                      "model); refused when the data or the metric code differ")
    p.add_argument("--split", default=None, help="split to read (default: the set's test split)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N questions")
    p.add_argument("--blank-image", action="store_true",
                   help="text-only baseline: every image replaced by a black one of the same size")
    p.add_argument("--batch-size", type=int, default=None, help="questions generated together (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="answer length limit (default: the benchmark's, 32; 160 for reports)")
    p.add_argument("--clinical", action="append", default=[], metavar="METRIC",
                   help="report benchmarks: also score with chexbert, radgraph, radgraph-xl or module:function "
                        "(needs their packages and weights; repeatable)")
    p.add_argument("--scoring", choices=["generate", "likelihood"], default="generate",
                   help="multiple choice: generate an answer and extract the option (default), or pick the "
                        "option whose text is most likely as the reply (cloze form; transformers engine)")
    p.add_argument("--seed", type=int, default=0, help="seed (decoding is greedy; default 0)")
    p.add_argument("--fresh", action="store_true",
                   help="discard predictions already in --out instead of resuming from them")
    p.add_argument("--judge", metavar="URL", help="OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1) "
                                                  "whose model judges the open answers (with --bench mmbench "
                                                  "it also matches answers MMBench's exact rules cannot read)")
    p.add_argument("--judge-model", help="the judge's model name at that endpoint")
    p.add_argument("--judge-api-key-env", metavar="VAR", help="environment variable holding the judge's API key")
    p.add_argument("--judge-concurrency", type=int, default=4, help="judge requests in flight (default 4)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1... (default: cuda when available)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights dtype (default: float32 on CPU, bfloat16 on GPU)")
    p.add_argument("--engine", choices=["transformers", "vllm"], default="transformers",
                   help="vllm: generate through vLLM in its own environment (`make vllm`); same prompts, greedy")
    p.add_argument("--vllm-memory-fraction", type=float, default=None,
                   help="vLLM's gpu_memory_utilization (on CPU, the share of RAM for its KV cache)")


def config_from_args(args: argparse.Namespace):
    """The run's ``EvalConfig`` and the protocol it must follow (``None`` without ``--protocol``)."""
    from doctorsun.errors import DoctorSunError
    from doctorsun.eval import protocol
    from doctorsun.eval.config import EvalConfig
    from doctorsun.eval.judge import JudgeConfig

    for flag in ("limit", "batch_size", "max_new_tokens"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise DoctorSunError(f"--{flag.replace('_', '-')} must be >= 1, not {value}")
    if args.protocol:
        card = protocol.load(args.protocol)
        config = protocol.config_from(card, args.judge, args.judge_api_key_env, args.batch_size)
        config.resume = not args.fresh
        return config, card
    if not args.bench:
        raise DoctorSunError("--bench is required (or --protocol FILE)")
    if bool(args.judge) != bool(args.judge_model):
        raise DoctorSunError("--judge URL and --judge-model NAME go together")
    judge = JudgeConfig(args.judge, args.judge_model, args.judge_api_key_env, concurrency=args.judge_concurrency) \
        if args.judge else None
    from doctorsun.eval.benchmarks import get_benchmark

    max_new = args.max_new_tokens or get_benchmark(args.bench).max_new_tokens
    config = EvalConfig(bench=args.bench, batch_size=args.batch_size or 8, max_new_tokens=max_new,
                        blank_image=args.blank_image, limit=args.limit, seed=args.seed, resume=not args.fresh,
                        split=args.split, judge=judge, scoring=args.scoring,
                        clinical=list(args.clinical))
    return config, None


def run(args: argparse.Namespace) -> int:
    import torch

    from doctorsun.eval import protocol, provenance
    from doctorsun.eval.benchmarks import load_benchmark
    from doctorsun.eval.runner import evaluate
    from doctorsun.model.generate import Engine

    config, card = config_from_args(args)
    data = load_benchmark(config.bench, args.data, config.split)  # bad data fails before the model loads
    if card is not None:
        builder = provenance.prompt_record(None)["builder_sha256"]
        protocol.check(card, provenance.hash_data(data.data_path) if data.data_path else None, builder)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype if args.dtype != "auto" else ("float32" if device == "cpu" else "bfloat16")
    if args.engine == "vllm":
        from doctorsun.model.vllm_engine import VLLMEngine

        engine = VLLMEngine.load(args.model, dtype=dtype, memory_fraction=args.vllm_memory_fraction)
    else:
        engine = Engine.load(args.model, dtype=dtype, device=device)
    try:
        scores = evaluate(engine, data.records, config, image_root=data.image_root, out_dir=args.out,
                          data_file=data.data_path, model_name=str(args.model), problems=data.problems)
    finally:
        getattr(engine, "close", lambda: None)()
    print(summary(scores))
    print(f"  report: {args.out}/report.md")
    return 0


def summary(scores: dict) -> str:
    """A few lines for the terminal; the full tables are in report.md."""
    from doctorsun.eval.report import LABELS

    ci = scores.get("uncertainty") or {}
    parts = []
    for k in LABELS:
        if scores.get(k) is not None:
            interval = (ci.get(k) or {}).get("ci95")
            parts.append(f"{LABELS[k]} {scores[k]:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval
                                                            else ""))
    return (f"{scores['bench']}: {scores['n']} scored, {scores['n_skipped']} skipped\n  "
            + (", ".join(parts) or "no scores"))
