"""Likelihood scoring (``eval --scoring likelihood``) as the number of questions grows: each question's
prompt runs once and its options are scored from copies of that prompt's cache. For N questions with four
options each, in batches of ``--batch-size`` questions, it prints the seconds, questions per second and peak
resident memory at each N, and the ratio of each time to the smallest N's, scaled by N (1.00 = linear).

    python benchmarks/likelihood_scale.py                      # tiny random model, built on the fly
    python benchmarks/likelihood_scale.py --llm smollm2-135m   # the real SmolLM2-135M
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import tempfile
import time
from pathlib import Path

WORDS = ["heart", "liver", "lung", "kidney", "brain", "spleen", "bone", "skin"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--llm", default="tiny", help="'tiny' (random 2-layer) or 'smollm2-135m'")
    p.add_argument("--sizes", default="16,64,256", help="numbers of questions (default 16,64,256)")
    p.add_argument("--batch-size", type=int, default=16, help="questions per batch (default 16)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    spec = importlib.util.spec_from_file_location("eval_throughput", Path(__file__).with_name("eval_throughput.py"))
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    from doctorsun.model.chat import user_message
    from doctorsun.model.generate import Engine

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, label = helpers.build_model(args.llm, Path(tmp))
        engine = Engine.load(model_dir)
        print(f"model: {label}; 4 options per question, {args.batch_size} questions per batch")
        rows = []
        for n in (int(x) for x in args.sizes.split(",")):
            questions = [f"Question {i}: which organ is number {i * 7 % 97} in this list?" for i in range(n)]
            start = time.perf_counter()
            for b in range(0, n, args.batch_size):
                chunk = questions[b:b + args.batch_size]
                convs = [[user_message(q, 0)] for q in chunk for _ in range(4)]
                replies = [" ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 3))
                           for i in range(len(convs))]
                engine.loglikelihood(convs, [[] for _ in convs], replies)
            seconds = time.perf_counter() - start
            rows.append((n, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
        n0, s0, _ = rows[0]
        for n, seconds, rss in rows:
            print(f"{n:5d} questions: {seconds:7.2f} s, {n / seconds:7.1f} questions/s, peak RSS {rss:7.0f} MiB, "
                  f"time per question vs {n0}: {(seconds / n) / (s0 / n0):.2f}")


if __name__ == "__main__":
    main()
