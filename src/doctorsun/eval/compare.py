"""``doctorsun eval compare RUN_A RUN_B``: is B better than A, on the questions both answered?
With folders of runs (a base model's and a trained model's evaluations), the retention view: every
benchmark both hold, medical and general side by side, and how much of the base score is kept.

Each run's predictions are scored again question by question (so nothing but ``predictions.jsonl`` and
``scores.json`` is needed), the questions both runs share are paired, and per headline metric the
difference B - A gets a paired-bootstrap 95% interval; accuracy-type metrics also get McNemar's exact
p-value. Runs on different data or prompts are refused unless forced: their numbers do not compare.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from doctorsun.errors import DoctorSunError
from doctorsun.files import save_figure, write_json, write_text

ACCURACY = ("closed_accuracy", "mcq_accuracy", "exact_match", "judge_accuracy")
"""Metrics whose per-question value is right (1) or wrong (0): McNemar applies."""
MUST_MATCH = {"bench": ("bench",), "data": ("provenance", "records_sha256"),
              "chat template": ("provenance", "prompt", "chat_template_sha256"),
              "prompt builder": ("provenance", "prompt", "builder_sha256")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_a", type=Path, help="evaluation folder (the baseline)")
    p.add_argument("run_b", type=Path, help="evaluation folder (the candidate)")
    p.add_argument("--metric", action="append", default=None, help="compare only this metric (repeatable)")
    p.add_argument("--out", type=Path, help="folder for compare.md, compare.json, compare.png "
                                            "(default: beside RUN_B, compare-A-vs-B)")
    p.add_argument("--force", action="store_true", help="compare runs on different data or prompts anyway")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--retention", action="store_true",
                      help="retention view: RUN_A and RUN_B are folders of runs (base, trained), paired by path; "
                           "medical and general benchmarks side by side (the default when they hold several runs)")
    mode.add_argument("--paired", action="store_true",
                      help="compare the runs in RUN_A and RUN_B themselves, question by question, even when "
                           "they hold runs below them (the quickstart's eval/before and eval/after do)")


def run(args: argparse.Namespace) -> int:
    out = args.out or args.run_b.parent / f"compare-{args.run_a.name}-vs-{args.run_b.name}"
    if args.retention or (not args.paired and (is_collection(args.run_a) or is_collection(args.run_b))):
        result = retention(args.run_a, args.run_b, seed=args.seed, force=args.force)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "retention.json", result)
        write_text(out / "retention.md", retention_markdown(result))
        print(retention_markdown(result))
        print(f"  written to {out}/retention.md")
        return 0
    result = compare(args.run_a, args.run_b, metrics=args.metric, force=args.force, seed=args.seed)
    write_all(out, result)
    print(markdown(result))
    print(f"  written to {out}/compare.md")
    return 0


def load_run(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, dict]]:
    """``(scores, prediction rows, judgments by id)`` of an evaluation folder."""
    from doctorsun.eval.judge import read_judgments

    scores_file, pred_file = folder / "scores.json", folder / "predictions.jsonl"
    for f in (scores_file, pred_file):
        if not f.is_file():
            raise DoctorSunError(f"{folder} is not an evaluation folder (no {f.name})")
    scores = json.loads(scores_file.read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in pred_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return scores, rows, read_judgments(folder)


def _get(d: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        d = d.get(key) if isinstance(d, dict) else None
    return d


def item_table(scores: dict, rows: list[dict], judgments: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Question id -> {metric: value}, re-scored as the run scored it."""
    from doctorsun.eval.benchmarks import get_benchmark
    from doctorsun.eval.scoring import item_values, score_row

    spec = get_benchmark(scores["bench"])
    method = scores.get("mcq_method") or spec.mcq_methods[0]
    methods = ("likelihood",) if method == "likelihood" else spec.mcq_methods
    table = {}
    for row in rows:
        values = item_values(score_row(row, methods), method)
        verdict = judgments.get(row["id"])
        if verdict and verdict.get("verdict") in ("correct", "partially", "incorrect"):
            values["judge_accuracy"] = float(verdict["verdict"] == "correct")
        table[row["id"]] = values
    return table


def compare(run_a: Path, run_b: Path, metrics: list[str] | None = None, force: bool = False,
            seed: int = 0) -> dict[str, Any]:
    """The comparison as a dict (what ``compare.json`` holds)."""
    from doctorsun.eval import stats

    (sa, rows_a, ja), (sb, rows_b, jb) = load_run(Path(run_a)), load_run(Path(run_b))
    differ = [name for name, path in MUST_MATCH.items() if _get(sa, path) != _get(sb, path)]
    if differ and not force:
        raise DoctorSunError(f"{run_a} and {run_b} differ in {', '.join(differ)}: their scores do not compare "
                             "(pass --force to compare anyway)")
    ta, tb = item_table(sa, rows_a, ja), item_table(sb, rows_b, jb)
    shared = [i for i in ta if i in tb]
    if not shared:
        raise DoctorSunError(f"{run_a} and {run_b} share no question ids")
    names = sorted({m for i in shared for m in ta[i]} & {m for i in shared for m in tb[i]})
    if metrics:
        unknown = sorted(set(metrics) - set(names))
        if unknown:
            raise DoctorSunError(f"metric(s) {', '.join(unknown)} not in both runs; they have: {', '.join(names)}")
        names = [m for m in names if m in metrics]
    result: dict[str, Any] = {
        "run_a": str(run_a), "run_b": str(run_b), "bench": sa.get("bench"), "shared": len(shared),
        "only_a": len(ta) - len(shared), "only_b": len(tb) - len(shared), "forced_over": differ,
        "method": f"paired {stats.METHOD} (B - A); McNemar exact test on accuracy-type metrics", "seed": seed,
        "metrics": {},
    }
    for m in names:
        ids = [i for i in shared if m in ta[i] and m in tb[i]]
        a, b = [ta[i][m] for i in ids], [tb[i][m] for i in ids]
        entry = {"n": len(ids), "a": sum(a) / len(a), "b": sum(b) / len(b),
                 "difference": stats.paired_bootstrap(a, b, seed)}
        if m in ACCURACY:
            entry["mcnemar"] = stats.mcnemar_exact([x >= 1 for x in a], [y >= 1 for y in b])
        result["metrics"][m] = entry
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# {result['run_b']} vs {result['run_a']} ({result['bench']})", "",
             f"{result['shared']} shared questions ({result['only_a']} only in A, {result['only_b']} only in B). "
             f"{result['method']}, seed {result['seed']}.", ""]
    if result["forced_over"]:
        lines += [f"**Forced**: the runs differ in {', '.join(result['forced_over'])}.", ""]
    lines += ["| metric | n | A | B | B - A | 95% CI | McNemar p |", "|---|---:|---:|---:|---:|---|---:|"]
    for m, e in result["metrics"].items():
        lo, hi = e["difference"]["ci95"]
        p = e.get("mcnemar", {}).get("p")
        lines.append(f"| {m} | {e['n']} | {e['a']:.3f} | {e['b']:.3f} | {e['difference']['value']:+.3f} | "
                     f"[{lo:+.3f}, {hi:+.3f}] | {'-' if p is None else f'{p:.4f}'} |")
    return "\n".join(lines) + "\n"


def write_all(out: Path, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "compare.json", result)
    write_text(out / "compare.md", markdown(result) + "\n![differences](compare.png)\n")
    _chart(out / "compare.png", result)


def _chart(path: Path, result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["metrics"])
    diffs = [result["metrics"][m]["difference"] for m in names]
    values = [d["value"] for d in diffs]
    errors = [[v - d["ci95"][0] for v, d in zip(values, diffs, strict=True)],
              [d["ci95"][1] - v for v, d in zip(values, diffs, strict=True)]]
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.5), dpi=100)
    ax.barh(names, values, xerr=errors, color=["#4c9a6a" if v >= 0 else "#c0504d" for v in values], capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("B - A (95% paired bootstrap CI)")
    ax.set_title(f"{Path(result['run_b']).name} vs {Path(result['run_a']).name}")
    fig.tight_layout()
    save_figure(fig, path)


# ----------------------------------------------------------------------------------- retention view
PRIMARY = ("circular_accuracy", "accuracy", "mcq_accuracy", "closed_accuracy", "open_recall", "bleu_4", "cider")
"""The metrics a retention view shows for a benchmark, those of them its runs report."""


def runs_under(root: Path) -> dict[str, Path]:
    """Every evaluation folder under ``root`` (``root`` itself included), by path relative to it."""
    found = {str(f.parent.relative_to(root)): f.parent for f in sorted(Path(root).rglob("scores.json"))
             if (f.parent / "predictions.jsonl").is_file()}
    if not found:
        raise DoctorSunError(f"no evaluation runs (scores.json + predictions.jsonl) under {root}")
    return found


def is_collection(root: Path) -> bool:
    """Whether ``root`` holds evaluation runs below it (not only one run of its own)."""
    return any(f.parent != Path(root) for f in Path(root).rglob("scores.json"))


def retention(base: Path, trained: Path, seed: int = 0, force: bool = False) -> dict[str, Any]:
    """Base vs trained on every benchmark both folders hold runs of (paired by relative path): per
    headline metric the two values, trained / base, and the paired difference with its 95% interval;
    then the medical and general sides summarised (mean change; mean share of the base score kept)."""
    from statistics import fmean

    from doctorsun.eval.benchmarks import BENCHMARKS

    ra, rb = runs_under(base), runs_under(trained)
    rows = []
    for rel in sorted(set(ra) & set(rb)):
        sa = json.loads((ra[rel] / "scores.json").read_text(encoding="utf-8"))
        sb = json.loads((rb[rel] / "scores.json").read_text(encoding="utf-8"))
        spec = BENCHMARKS.get(sa.get("bench"))
        metrics = [m for m in PRIMARY if sa.get(m) is not None and sb.get(m) is not None]
        try:
            paired = compare(ra[rel], rb[rel], metrics=None, force=force, seed=seed)["metrics"]
        except DoctorSunError as exc:
            if "differ in" in str(exc):
                raise
            paired = {}
        for m in metrics:
            a, b = float(sa[m]), float(sb[m])
            rows.append({"run": rel, "bench": sa.get("bench"), "domain": spec.domain if spec else "medical",
                         "metric": m, "base": a, "trained": b, "kept": b / a if a else None,
                         "difference": (paired.get(m) or {}).get("difference")})
    if not rows:
        raise DoctorSunError(f"{base} and {trained} share no benchmark runs")
    summary = {}
    for domain in ("medical", "general"):
        mine = [r for r in rows if r["domain"] == domain]
        if mine:
            kept = [r["kept"] for r in mine if r["kept"] is not None]
            summary[domain] = {"metrics": len(mine), "mean_change": fmean(r["trained"] - r["base"] for r in mine),
                               "mean_kept": fmean(kept) if kept else None}
    return {"base": str(base), "trained": str(trained), "seed": seed, "rows": rows, "summary": summary,
            "only_base": sorted(set(ra) - set(rb)), "only_trained": sorted(set(rb) - set(ra))}


def retention_markdown(result: dict[str, Any]) -> str:
    lines = [f"# Retention: {result['trained']} vs base {result['base']}", "",
             "| domain | run | bench | metric | base | trained | trained / base | trained - base, 95% CI |",
             "|---|---|---|---|---:|---:|---:|---|"]
    for r in sorted(result["rows"], key=lambda r: (r["domain"] != "medical", r["run"], r["metric"])):
        d = r["difference"]
        ci = f"{d['value']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d else "-"
        kept = "-" if r["kept"] is None else f"{r['kept']:.0%}"
        lines.append(f"| {r['domain']} | {r['run']} | {r['bench']} | {r['metric']} | {r['base']:.3f} | "
                     f"{r['trained']:.3f} | {kept} | {ci} |")
    lines.append("")
    for domain, s in result["summary"].items():
        kept = "-" if s["mean_kept"] is None else f"{s['mean_kept']:.0%}"
        lines.append(f"- {domain}: {s['metrics']} metric(s), mean change {s['mean_change']:+.3f}, "
                     f"mean share of the base score kept {kept}")
    if result["only_base"] or result["only_trained"]:
        lines.append(f"- runs in one folder only: base {result['only_base']}, trained {result['only_trained']}")
    return "\n".join(lines) + "\n"
