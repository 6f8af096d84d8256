"""Score files a person reads: ``scores.json`` (everything), ``report.md`` (tables by definition and by
group, skipped items, how to reproduce) and ``scores.png`` (bar charts). All written atomically."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from doctorsun.files import save_figure, write_json, write_text

SCORES = "scores.json"
REPORT = "report.md"
CHART = "scores.png"

LABELS = {
    "closed_accuracy": "closed accuracy", "open_recall": "open recall", "mcq_accuracy": "MCQ accuracy",
    "token_f1": "token F1", "bleu1": "BLEU-1", "exact_match": "exact match", "judge_accuracy": "judge accuracy",
    "circular_accuracy": "circular accuracy", "accuracy": "accuracy", "bleu_4": "BLEU-4", "rouge_l": "ROUGE-L",
    "meteor": "METEOR", "cider": "CIDEr",
}
DEFINITIONS = {
    "closed_accuracy": "LLaVA-Med hit rule on questions the set marks CLOSED",
    "open_recall": "LLaVA-Med recall of gold words on OPEN questions",
    "mcq_accuracy": "option extracted as named by mcq_method",
    "token_f1": "MultiMedEval token-set F1, all VQA questions",
    "bleu1": "MultiMedEval BLEU-1, all VQA questions",
    "exact_match": "lmms-eval normalised exact match, all VQA questions",
    "judge_accuracy": "share of OPEN answers the LLM judge calls correct",
    "circular_accuracy": "MMBench circular: a question counts when every rotation of its options is right",
    "accuracy": "MMMU's rules over all questions (multiple choice parsed, open answers matched)",
    "bleu_4": "corpus BLEU-4 of the reports (pycocoevalcap; BLEU-1..3 under metrics.report)",
    "rouge_l": "ROUGE-L F (pycocoevalcap, beta 1.2)",
    "meteor": "METEOR (implementation named under metrics.report)",
    "cider": "CIDEr-D (pycocoevalcap)",
}
SOURCES = {
    "llava_med": "LLaVA-Med `llava/eval/run_eval.py` (v1.0.0)",
    "multimedeval": "MultiMedEval `VQA.evaluate`",
    "llava_med_peer": "LLaVA-Med, the peer's exact value (DoctorSun splits Chinese per character and reads "
                      "是/否 as yes/no; the peer splits on whitespace and knows English yes/no only)",
    "multimedeval_peer": "MultiMedEval, the peer's exact value (whitespace split, English yes/no only)",
    "exact_match": "lmms-eval SLAKE `normalize_answer`",
    "mcq": "multiple choice (huatuo: HuatuoGPT-Vision; cmb: CMB; closest: OmniMedVQA; "
           "bleu: MultiMedEval MedQA; pubmedqa: MultiMedEval PubMedQA)",
}


def write_all(out: Path, scores: dict[str, Any]) -> None:
    write_json(out / SCORES, scores)
    write_text(out / REPORT, markdown(scores))
    write_chart(out / CHART, scores)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _protocol_card(card: dict | None) -> list[str]:
    """Two reports with the same card measured the same thing (``protocol.json`` holds it whole)."""
    if not card:
        return []
    judge = card["eval"].get("judge")
    decoding = card.get("decoding") or {}
    return ["## Protocol", "",
            f"- benchmark `{card['bench']}`, split `{card.get('split') or 'test (default)'}`, data sha256 "
            f"`{str(card.get('data_sha256'))[:16]}`, records sha256 `{str(card.get('records_sha256'))[:16]}`",
            f"- prompt: chat template `{card['prompt'].get('chat_template')}` (sha256 "
            f"`{str(card['prompt'].get('chat_template_sha256'))[:16]}`), builder sha256 "
            f"`{str(card['prompt'].get('builder_sha256'))[:16]}`",
            f"- metrics v{card['metrics']['version']} (sha256 `{card['metrics']['sha256'][:16]}`); decoding "
            f"greedy={not decoding.get('do_sample', False)}, max_new_tokens={decoding.get('max_new_tokens')}, "
            f"seed={decoding.get('seed')}",
            f"- judge: {judge['model'] + ' (' + judge['prompt_version'] + ')' if judge else 'none'}; "
            f"DoctorSun {card.get('doctorsun_version')}", ""]


def _interval(ci: dict | None) -> str:
    if not ci or not ci.get("ci95"):
        return "-"
    lo, hi = ci["ci95"]
    return f"[{lo:.3f}, {hi:.3f}]"


def markdown(scores: dict[str, Any]) -> str:
    prov = scores.get("provenance", {})
    data = prov.get("data") or {}
    lines = [f"# Evaluation: {scores['bench']}", "", scores.get("about", ""), "",
             f"- model: `{(prov.get('model') or {}).get('path')}`",
             f"- data: `{data.get('path')}` (sha256 `{str(data.get('sha256'))[:16]}`, {data.get('files')} "
             f"file(s))"
             if data else "- data: records given in memory",
             f"- records sha256: `{str(prov.get('records_sha256'))[:16]}`",
             f"- questions scored: {scores['n']} ({scores.get('n_empty_predictions', 0)} empty answers), "
             f"skipped: {scores.get('n_skipped', 0)}"
             + (f", limit: {prov['limit']}" if prov.get("limit") else ""),
             f"- images: {'blank (text-only baseline)' if prov.get('blank_image') else 'as given'}", ""]
    lines += _protocol_card(scores.get("protocol"))
    lines += ["## Headline", ""]
    ci = scores.get("uncertainty") or {}
    head = [[LABELS[k], scores[k], _interval(ci.get(k)), (ci.get(k) or {}).get("n"), DEFINITIONS[k]]
            for k in LABELS if scores.get(k) is not None]
    if scores.get("mcq_method"):
        head = [[*r[:-1], r[-1].replace("mcq_method", scores["mcq_method"])] for r in head]
    lines += _table(["metric", "value", "95% CI", "n", "definition"], head)
    if ci:
        lines += [f"Intervals: {ci.get('method')}, seed {ci.get('seed')}.", ""]
    lines += ["## Every definition", ""]
    for group, values in scores.get("metrics", {}).items():
        lines += [f"### {SOURCES.get(group, group)}", ""]
        if group == "mcq":
            lines += _table(["method", "accuracy", "n"],
                            [[m, v["accuracy"], v["n"]] for m, v in values.items()])
        else:
            lines += _table(["metric", "value"], [[k, v] for k, v in values.items()])
    judge = scores.get("judge")
    if judge and judge.get("n_open"):
        kappa = judge.get("kappa_vs_multimedeval")
        lines += ["## LLM judge", "",
                  f"- judge: `{judge['model']}` at {judge['url']} "
                  f"(served as {', '.join(judge['served_model']) or '?'}),"
                  f" prompt {judge['prompt_version']} (sha256 `{judge['prompt_sha256'][:16]}`)",
                  f"- judged {judge['n_judged']} of {judge['n_open']} open answers ({judge['asked']} asked now, the "
                  f"rest from the cache); excluded {judge['n_excluded']} (failed or unparseable)",
                  "- verdicts: " + ", ".join(f"{k} {v}" for k, v in judge["verdicts"].items()),
                  f"- mean score (partially = 0.5): {_fmt(judge['score']['value'])}",
                  f"- agreement with MultiMedEval open correctness: Cohen's kappa "
                  f"{'-' if kappa is None else f'{kappa:.3f}'} (n = {judge['n_kappa']})", ""]
        lines += [f"  - `{e['id']}`: {e['reason']}" for e in judge["excluded"][:20]]
        lines += [""] if judge["excluded"] else []
    matching = scores.get("mmbench_matching")
    if matching:
        from doctorsun.eval.judge import MATCH_TRIES

        lines += ["## MMBench answer matching (LLM)", "",
                  f"- {matching['n_unread']} answers MMBench's exact rules could not read; the judge was asked "
                  f"for {matching['n_asked_for']} ({matching['asked']} now, the rest from the cache)",
                  f"- matched to an option or Z: {matching['matched']}; no option named in "
                  f"{MATCH_TRIES} tries, drawn at random: {matching['random']}; failed (counted wrong): "
                  f"{len(matching['failed'])}", ""]
        lines += [f"  - `{e['id']}`: {e['reason']}" for e in matching["failed"][:20]]
        lines += [""] if matching["failed"] else []
    breakdown = scores.get("breakdown", {})
    if breakdown:
        lines += ["## Breakdown", ""]
        for field, groups in breakdown.items():
            cols = [k for k in LABELS if any(k in g for g in groups.values())]
            lines += [f"### by {field}", ""]
            lines += _table([field, "n", *[LABELS[c] for c in cols]],
                            [[name, g["n"], *[g.get(c) for c in cols]] for name, g in groups.items()])
    problems = scores.get("problems") or []
    if problems:
        lines += [f"## Skipped ({len(problems)})", ""]
        lines += [f"- `{p['id']}`: {p['reason']}" for p in problems[:50]]
        if len(problems) > 50:
            lines.append(f"- ... and {len(problems) - 50} more (see {SCORES})")
        lines.append("")
    lines += ["## Reproduce", "", "```json", json.dumps({k: prov.get(k) for k in (
        "decoding", "prompt", "seed", "versions", "started", "items_per_s")}, indent=2, ensure_ascii=False),
        "```", "", f"![scores]({CHART})", ""]
    return "\n".join(lines)


MAX_PANELS = 5
CHART_METRICS = ("closed_accuracy", "open_recall", "mcq_accuracy", "token_f1")
COLOURS = {"closed_accuracy": "#3b7dd8", "open_recall": "#e0803a", "mcq_accuracy": "#4aa564",
           "token_f1": "#9467bd", "bleu1": "#8c564b", "exact_match": "#7f7f7f"}


def write_chart(path: Path, scores: dict[str, Any]) -> None:
    """One panel of the headline numbers, then one per breakdown field (language, modality...) with its
    groups' main numbers side by side. The answer-type split is left to the tables: each type has its
    own metric, so the overall panel already shows it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fields = {f: g for f, g in scores.get("breakdown", {}).items() if f != "answer_type" and len(g) > 1}
    fields = dict(list(fields.items())[:MAX_PANELS - 1])
    heights = [len([k for k in LABELS if scores.get(k) is not None]) or 1]
    heights += [min(len(g), 20) * len(_present(g)) for g in fields.values()]
    fig, axes = plt.subplots(len(heights), 1, figsize=(7, 1.0 * len(heights) + 0.1 * sum(heights)),
                             height_ratios=[h + 2 for h in heights], squeeze=False)
    overall = {LABELS[k]: {"value": scores[k]} for k in LABELS if scores.get(k) is not None}
    _bars(axes[0, 0], f"{scores['bench']}, n = {scores['n']}", overall or {"(no scores)": {"value": 0.0}},
          ["value"])
    for ax, (field, groups) in zip(axes[1:, 0], fields.items(), strict=True):
        _bars(ax, f"by {field}", dict(list(groups.items())[:20]), _present(groups))
    with warnings.catch_warnings():  # group names in Chinese may lack glyphs in the default font
        warnings.filterwarnings("ignore", message="Glyph .* missing")
        fig.tight_layout()
        save_figure(fig, path, dpi=100)


def _present(groups: dict[str, dict]) -> list[str]:
    return [k for k in CHART_METRICS if any(k in g for g in groups.values())]


def _bars(ax, title: str, groups: dict[str, dict], metrics: list[str]) -> None:
    """Horizontal bars: one row per group, one bar per metric the group has."""
    width = 0.8 / max(len(metrics), 1)
    for i, metric in enumerate(metrics):
        ys = [y + i * width for y, g in enumerate(groups.values()) if metric in g]
        values = [g[metric] for g in groups.values() if metric in g]
        ax.barh(ys, values, height=width, color=COLOURS.get(metric, "#3b7dd8"),
                label=LABELS.get(metric, metric))
        for y, v in zip(ys, values, strict=True):
            ax.text(min(v, 0.88) + 0.01, y, f"{v:.3f}", va="center", fontsize=7)
    ax.set_yticks([y + width * (len(metrics) - 1) / 2 for y in range(len(groups))], list(groups))
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    if len(metrics) > 1:
        ax.legend(fontsize=7, loc="lower right")

