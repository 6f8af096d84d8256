"""Scoring at benchmark size: how report metrics (``eval.report_metrics.corpus_scores``: BLEU-1..4, ROUGE-L,
CIDEr, METEOR) and MMBench's circular scoring (``eval.scoring.score_rows``) grow with the number of items.

Report part: N synthetic findings sections (15-40 words drawn from a radiology vocabulary; each
prediction a perturbed copy of its reference), for N = 500, 3,858 (MIMIC-CXR's test split) and 16,000.
MMBench part: N questions x 4 rotations of prediction rows. Prints seconds, peak RSS growth of this
process, and the ratio of the largest N to the smallest (time / N ratio 1.0 means linear).

    python benchmarks/report_metrics_scale.py
    python benchmarks/report_metrics_scale.py --sizes 200 2000
"""

from __future__ import annotations

import argparse
import random
import resource
import time

WORDS = ("the heart size is normal lungs are clear no pleural effusion or pneumothorax mild cardiomegaly "
         "small left right basilar atelectasis opacity consolidation stable mediastinal contour osseous "
         "structures intact degenerative changes thoracic spine interval improvement edema").split()


def reports(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    refs, preds = [], []
    for _ in range(n):
        ref = [rng.choice(WORDS) for _ in range(rng.randint(15, 40))]
        pred = [w if rng.random() > 0.3 else rng.choice(WORDS) for w in ref][: len(ref) - rng.randint(0, 5)]
        refs.append(" ".join(ref) + ".")
        preds.append(" ".join(pred) + ".")
    return preds, refs


def mmbench_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    options = {"A": "red", "B": "green", "C": "blue", "D": "yellow"}
    rows = []
    for q in range(n):
        for k in range(4):
            gold = "ABCD"[(q + k) % 4]
            rows.append({"id": f"q{q}@{k}", "circular_of": f"q{q}", "answer_type": "MCQ", "options": options,
                         "gold": gold, "prediction": gold if rng.random() < 0.8 else "A", "lang": "en", "answer": ""})
    return rows


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 3858, 16000])
    args = parser.parse_args()
    from doctorsun.eval.report_metrics import corpus_scores
    from doctorsun.eval.scoring import score_rows

    for name, make, run in (
        ("report metrics", reports, lambda data: corpus_scores(*data, meteor="nltk")),
        ("mmbench circular", mmbench_rows, lambda rows: score_rows(rows, ("mmbench", "huatuo"))),
    ):
        results = []
        for n in args.sizes:
            data = make(n)
            before = rss_mib()
            t0 = time.perf_counter()
            out = run(data)
            seconds = time.perf_counter() - t0
            results.append((n, seconds, rss_mib() - before))
            headline = out.get("cider", out.get("circular_accuracy"))
            print(f"{name:17s} N={n:6d}: {seconds:7.2f} s, {n / seconds:8.0f} items/s, peak RSS +{results[-1][2]:6.1f} "
                  f"MiB (headline {headline:.3f})", flush=True)
        (n0, s0, _), (n1, s1, _) = results[0], results[-1]
        print(f"{name}: N x{n1 / n0:.1f} -> time x{s1 / s0:.1f} (time per item x{(s1 / n1) / (s0 / n0):.2f})")


if __name__ == "__main__":
    main()
