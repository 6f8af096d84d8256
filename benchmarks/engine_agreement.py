"""The same model through both engines: transformers (batched ``generate``) and vLLM (``make vllm``), on the
same held-out questions, greedy, through the evaluation runner; prints how many answers agree exactly, how
many agree on their first words, the scores of each and the items per second of each.

    python benchmarks/engine_agreement.py --model runs/quickstart/4-finetune/model \\
        --data runs/quickstart/data               # the quickstart's 144 held-out questions (its sample, seed 0)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="folder holding test.jsonl and its images")
    p.add_argument("--limit", type=int, default=144, help="seeded sample size, as the quickstart (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--first-words", type=int, default=3, help="N of the 'same first N words' count")
    return p.parse_args()


def run(engine, records, data: Path, out: Path, args, batch_size: int) -> dict:
    from doctorsun.eval.config import EvalConfig
    from doctorsun.eval.runner import evaluate

    config = EvalConfig(bench="sunmed-vl-mini", batch_size=batch_size, max_new_tokens=args.max_new_tokens,
                        seed=args.seed, resume=False)
    scores = evaluate(engine, records, config, image_root=data, out_dir=out, data_file=data / "test.jsonl")
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return {"scores": {k: scores.get(k) for k in ("closed_accuracy", "open_recall", "mcq_accuracy")},
            "items_per_s": scores["provenance"]["items_per_s"], "predictions": {r["id"]: r["prediction"] for r in rows}}


def main() -> None:
    args = parse_args()
    from doctorsun.model.generate import Engine
    from doctorsun.model.vllm_engine import HOW, VLLMEngine, vllm_python
    from doctorsun.quickstart import test_sample

    data = Path(args.data)
    records = test_sample(data, args.limit, args.seed)
    if vllm_python() is None:
        raise SystemExit(f"vLLM: not run (no vLLM environment: {HOW})")
    with tempfile.TemporaryDirectory(prefix="engine-agreement-") as tmp:
        tmp = Path(tmp)
        engine = Engine.load(args.model, dtype=args.dtype)
        hf = run(engine, records, data, tmp / "hf", args, args.batch_size)
        t = time.perf_counter()
        with VLLMEngine(engine.model, engine.processor, args.model, dtype=args.dtype) as v:
            startup = time.perf_counter() - t
            vl = run(v, records, data, tmp / "vllm", args, len(records))
    ids = list(hf["predictions"])
    same = sum(hf["predictions"][i] == vl["predictions"][i] for i in ids)
    n = args.first_words
    first = sum(hf["predictions"][i].split()[:n] == vl["predictions"][i].split()[:n] for i in ids)
    print(f"model: {args.model}; {len(ids)} questions, greedy, {args.max_new_tokens} new tokens, {args.dtype}")
    print(f"identical answers:          {same} of {len(ids)}")
    print(f"same first {n} words:         {first} of {len(ids)}")
    for name, r in (("transformers", hf), ("vLLM", vl)):
        print(f"{name:13} scores {r['scores']}  {r['items_per_s']:.2f} items/s")
    print(f"vLLM start-up {startup:.1f} s (not counted); items/s ratio vLLM / transformers: "
          f"{vl['items_per_s'] / hf['items_per_s']:.2f}x")


if __name__ == "__main__":
    main()
