"""From prediction rows to scores: each row scored once under every definition that applies, then
averaged overall and per group (answer type, language, modality, organ...).

A row is one line of ``predictions.jsonl``: ``id, question, answer, prediction, answer_type
("OPEN" | "CLOSED" | "MCQ"), lang``, plus ``options`` / ``gold`` / ``multiple`` for multiple choice and
``groups`` (e.g. ``{"modality": "CT"}``) for the breakdown. Scores can be recomputed from that file alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean
from typing import Any

from doctorsun.eval import mcq, stats
from doctorsun.eval.metrics import (
    PEER_YES_NO,
    YES_NO,
    exact_match,
    llava_med_bleu1,
    llava_med_closed_hit,
    llava_med_prf,
    multimedeval_vqa,
    normalize_vqa,
)

MCQ_METHODS = ("huatuo", "cmb", "closest", "bleu", "pubmedqa", "likelihood", "mmbench", "mmmu")
"""Multiple-choice extractors by name (see ``doctorsun.eval.mcq``); ``likelihood`` reads the option that
likelihood scoring chose (``row["choice"]``)."""

MAX_GROUPS = 50
"""A breakdown field with more distinct values than this is left out (free text, not a category)."""

HEADLINE = ("closed_accuracy", "open_recall", "mcq_accuracy", "token_f1", "bleu1", "exact_match",
            "circular_accuracy", "accuracy", "bleu_4", "rouge_l", "meteor", "cider")
"""The numbers reported at the top level and in every breakdown group."""


def mcq_correct(method: str, row: dict[str, Any]) -> bool:
    """Did the prediction pick the gold option, as ``method``'s peer decides?"""
    options: dict[str, str] = row["options"]
    gold: str = row["gold"]
    pred = row["prediction"]
    if method == "likelihood":
        return row.get("choice") == gold
    if method == "mmbench":  # the judge's match where one was asked for (``Evaluation._match_choices``)
        return (row.get("judge_choice") or mcq.mmbench_choice(pred, options)) == gold
    if method == "mmmu":
        return mcq.mmmu_choice(pred, options, row["id"]) == gold
    if method == "huatuo":
        return mcq.huatuo_choice(pred, options)[0] == gold
    if method == "cmb":
        return mcq.cmb_choice(pred, multiple=bool(row.get("multiple"))) == gold
    if method == "closest":  # OmniMedVQA compares the chosen option's text with gt_answer, not letters
        letters = list(options)
        chosen = letters[mcq.closest_option(pred, [options[k] for k in letters])]
        return options[chosen] == options[gold]
    if method == "bleu":
        return mcq.bleu_choice(pred, options) == gold
    if method == "pubmedqa":
        return mcq.pubmedqa_choice(pred) == options[gold].strip().lower()
    raise ValueError(f"unknown multiple-choice method {method!r}; known: {MCQ_METHODS}")


def score_row(row: dict[str, Any], mcq_methods: Sequence[str]) -> dict[str, Any]:
    """Every per-question score that applies to ``row`` (a report is scored on the corpus: its pair is
    kept for ``aggregate``)."""
    if row["answer_type"] == "REPORT":
        return {"report": (str(row["prediction"]), str(row["answer"]))}
    if row["answer_type"] == "MCQ":
        multiple = bool(row.get("multiple"))
        # Only CMB's extractor can return several letters; the others score single-answer questions.
        methods = [m for m in mcq_methods if m == "cmb" or not multiple]
        out_mcq: dict[str, Any] = {"mcq": {m: mcq_correct(m, row) for m in methods}}
        if row.get("circular_of"):
            out_mcq["circular_of"] = row["circular_of"]
        return out_mcq
    pred, gold = row["prediction"], row["answer"]
    closed = row["answer_type"] == "CLOSED"
    out: dict[str, Any] = {"closed": closed, "yesno": normalize_vqa(gold) in YES_NO,
                           "yesno_peer": normalize_vqa(gold) in PEER_YES_NO, "exact": exact_match(pred, gold)}
    for suffix, peer in (("", False), ("_peer", True)):  # ours, and the peers' exact rules
        out["mme" + suffix] = multimedeval_vqa(pred, gold, peer=peer)
        if closed or out["yesno"]:
            out["llava_hit" + suffix] = llava_med_closed_hit(pred, gold, peer=peer)
        if not closed:
            f1, precision, recall = llava_med_prf(pred, gold, peer=peer)
            out["llava_open" + suffix] = {"f1": f1, "precision": precision, "recall": recall,
                                          "bleu1": llava_med_bleu1(pred, gold, peer=peer)}
    if "mmmu" in mcq_methods:
        out["mmmu_open"] = mcq.mmmu_open_correct(pred, row.get("answers") or [gold])
    return out


def item_values(s: dict[str, Any], mcq_method: str | None) -> dict[str, float]:
    """One question's share of each headline number (its mean over the questions is the headline)."""
    if "report" in s:
        return {}
    if "mcq" in s:
        if mcq_method not in s["mcq"]:
            return {}
        value = float(s["mcq"][mcq_method])
        return {"mcq_accuracy": value, **({"accuracy": value} if mcq_method == "mmmu" else {})}
    out = {"token_f1": s["mme"]["f1"], "bleu1": s["mme"]["bleu1"], "exact_match": float(s["exact"])}
    if s["closed"]:
        out["closed_accuracy"] = float(s["llava_hit"])
    else:
        out["open_recall"] = s["llava_open"]["recall"]
    if "mmmu_open" in s:
        out["accuracy"] = float(s["mmmu_open"])
    return out


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


def aggregate(scored: list[dict[str, Any]], mcq_methods: Sequence[str]) -> dict[str, Any]:
    """Average per-question scores into the named metric groups and the headline numbers."""
    vqa = [s for s in scored if "mcq" not in s and "report" not in s]
    closed = [s for s in vqa if s["closed"]]
    yesno = [s for s in vqa if s["yesno"]]
    open_ = [s for s in vqa if not s["closed"]]
    metrics: dict[str, Any] = {}
    if vqa:
        metrics["llava_med"] = _llava_med(closed, yesno, open_, "")
        metrics["multimedeval"] = _multimedeval(vqa, "")
        # The peers' exact values where DoctorSun deliberately differs (Chinese split per character,
        # 是/否 read as yes/no); equal to the above for English-only sets.
        metrics["llava_med_peer"] = _llava_med(closed, [s for s in vqa if s["yesno_peer"]], open_, "_peer")
        metrics["multimedeval_peer"] = _multimedeval(vqa, "_peer")
        metrics["exact_match"] = {
            "accuracy": _mean([float(s["exact"]) for s in vqa]),
            "closed_accuracy": _mean([float(s["exact"]) for s in closed]),
            "open_accuracy": _mean([float(s["exact"]) for s in open_]), "n": len(vqa),
        }
    choice = [s["mcq"] for s in scored if "mcq" in s]
    if choice:
        metrics["mcq"] = {}
        for m in mcq_methods:
            hits = [float(c[m]) for c in choice if m in c]
            if hits:
                metrics["mcq"][m] = {"accuracy": fmean(hits), "n": len(hits)}
    first = next((m for m in mcq_methods if any(m in c for c in choice)), None)
    circular = [s for s in scored if "circular_of" in s and first in s["mcq"]]
    if circular:  # MMBench: a question is right only when every rotation of its options is
        groups: dict[str, list[bool]] = {}
        for s in circular:
            groups.setdefault(s["circular_of"], []).append(bool(s["mcq"][first]))
        metrics["circular"] = {"accuracy": fmean(all(g) for g in groups.values()), "n": len(groups),
                               "passes": len(circular), "method": first}
    if "mmmu" in mcq_methods:  # MMMU: one accuracy over multiple-choice and open questions
        hits = [float(s["mcq"]["mmmu"]) for s in scored if "mmmu" in s.get("mcq", {})]
        opens = [float(s["mmmu_open"]) for s in scored if "mmmu_open" in s]
        if hits or opens:
            metrics["mmmu"] = {"accuracy": fmean(hits + opens), "n": len(hits) + len(opens),
                               "mcq_accuracy": _mean(hits), "open_accuracy": _mean(opens), "n_open": len(opens)}
    reports = [s["report"] for s in scored if "report" in s]
    if reports:
        from doctorsun.eval.report_metrics import corpus_scores

        metrics["report"] = corpus_scores([p for p, _ in reports], [r for _, r in reports])
    out: dict[str, Any] = {"n": len(scored), **_headline(metrics, mcq_methods), "metrics": metrics}
    return out


def _llava_med(closed: list[dict], yesno: list[dict], open_: list[dict], suffix: str) -> dict[str, Any]:
    hit, open_key = "llava_hit" + suffix, "llava_open" + suffix
    return {
        "closed_accuracy": _mean([float(s[hit]) for s in closed]), "n_closed": len(closed),
        "yesno_accuracy": _mean([float(s[hit]) for s in yesno]), "n_yesno": len(yesno),
        **{f"open_{k}": _mean([s[open_key][k] for s in open_]) for k in ("recall", "precision", "f1", "bleu1")},
        "n_open": len(open_),
    }


def _multimedeval(vqa: list[dict], suffix: str) -> dict[str, Any]:
    mme = [s["mme" + suffix] for s in vqa]
    mme_closed, mme_open = [m for m in mme if m["closed"]], [m for m in mme if not m["closed"]]
    return {
        "bleu1": _mean([m["bleu1"] for m in mme]), "f1": _mean([m["f1"] for m in mme]),
        "recall": _mean([m["recall"] for m in mme]),
        "closed_accuracy": _mean([float(m["correct"]) for m in mme_closed]), "n_closed": len(mme_closed),
        "open_recall": _mean([m["recall"] for m in mme_open]),
        "open_accuracy": _mean([float(m["correct"]) for m in mme_open]), "n_open": len(mme_open),
    }


def _headline(metrics: dict[str, Any], mcq_methods: Sequence[str]) -> dict[str, Any]:
    """Top-level numbers: LLaVA-Med closed accuracy and open recall, MultiMedEval token F1 and BLEU-1
    (the Doctor Sun paper's numbers), lmms-eval exact match, and the benchmark's first MCQ definition."""
    head: dict[str, Any] = {"closed_accuracy": None, "open_recall": None}
    if "llava_med" in metrics:
        head["closed_accuracy"] = metrics["llava_med"]["closed_accuracy"]
        head["open_recall"] = metrics["llava_med"]["open_recall"]
        head["token_f1"] = metrics["multimedeval"]["f1"]
        head["bleu1"] = metrics["multimedeval"]["bleu1"]
        head["exact_match"] = metrics["exact_match"]["accuracy"]
    for m in mcq_methods:
        if m in metrics.get("mcq", {}):
            head["mcq_accuracy"] = metrics["mcq"][m]["accuracy"]
            head["mcq_method"] = m
            break
    if "circular" in metrics:
        head["circular_accuracy"] = metrics["circular"]["accuracy"]
    if "mmmu" in metrics:
        head["accuracy"] = metrics["mmmu"]["accuracy"]
    if "report" in metrics:
        head.update({k: metrics["report"][k] for k in ("bleu_4", "rouge_l", "meteor", "cider")})
    return head


def headline_values(scored: Sequence[dict[str, Any]], mcq_method: str | None) -> dict[str, list[float]]:
    """Per headline metric, the per-question values whose mean it is (in question order)."""
    values: dict[str, list[float]] = {}
    for s in scored:
        for metric, value in item_values(s, mcq_method).items():
            values.setdefault(metric, []).append(value)
    return values


def score_rows(rows: Sequence[dict[str, Any]], mcq_methods: Sequence[str] = ("huatuo",),
               group_fields: Sequence[str] = (), seed: int = 0) -> dict[str, Any]:
    """Scores of a whole run: overall numbers, each with n and a seeded 95% bootstrap interval
    (``uncertainty``), plus a ``breakdown`` by answer type, language and each field of ``group_fields``
    that the rows carry (in ``row["groups"]``)."""
    scored = [score_row(r, mcq_methods) for r in rows]
    result = aggregate(scored, mcq_methods)
    values = headline_values(scored, result.get("mcq_method"))
    result["uncertainty"] = {"method": stats.METHOD, "seed": seed,
                             **{m: stats.bootstrap_ci(v, seed) for m, v in values.items() if m in result}}
    # Peers still score an empty answer (the closest-option rules even pick an option for it): count them.
    result["n_empty_predictions"] = sum(not str(r["prediction"]).strip() for r in rows)
    keys: dict[str, Any] = {"answer_type": lambda r: r["answer_type"], "lang": lambda r: r.get("lang") or "?"}
    for field in group_fields:
        keys[field] = lambda r, f=field: (r.get("groups") or {}).get(f)
    breakdown: dict[str, Any] = {}
    for name, key in keys.items():
        groups: dict[str, list[dict[str, Any]]] = {}
        for row, s in zip(rows, scored, strict=True):
            value = key(row)
            if value not in (None, ""):
                groups.setdefault(str(value), []).append(s)
        if groups and (name in ("answer_type", "lang") or len(groups) <= MAX_GROUPS):
            breakdown[name] = {v: _brief(aggregate(g, mcq_methods)) for v, g in sorted(groups.items())}
    result["breakdown"] = breakdown
    return result


def _brief(agg: dict[str, Any]) -> dict[str, Any]:
    return {"n": agg["n"], **{k: agg[k] for k in HEADLINE if agg.get(k) is not None}}
