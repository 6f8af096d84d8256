"""Hybrid mixing of medical and general records at a fixed ratio.

Doctor Sun tuned on medical:general = 1:0.5 (best of 1:0, 1:0.2, 1:0.5, 1:1). Every medical record is
used once; the general part is exactly ``round(ratio * n_medical)`` records, drawn without replacement
unless asked (then with replacement, and repeated records get ``#2``, ``#3``... ids so they stay
distinguishable). The same seed gives the same mix.
"""

from __future__ import annotations

import random
from collections import Counter

from doctorsun.data.check import composition
from doctorsun.errors import DoctorSunError


def parse_ratio(ratio: str | float) -> tuple[str, float]:
    """``"1:0.5"`` or ``0.5`` -> (text form, general records per medical record)."""
    text = str(ratio).strip()
    try:
        if ":" in text:
            med, gen = (float(x) for x in text.split(":", 1))
        else:
            med, gen = 1.0, float(text)
    except ValueError as exc:
        raise DoctorSunError(f"ratio {ratio!r} must look like 1:0.5 (medical:general)") from exc
    if med <= 0 or gen < 0:
        raise DoctorSunError(f"ratio {ratio!r}: the medical part must be > 0 and the general part >= 0")
    return text, gen / med


def mix_plan(n_medical: int, n_available: int, ratio: str | float = "1:0.5", seed: int = 0,
             replace: bool = False) -> tuple[list[int], list[int], dict]:
    """The mix as positions, for callers that hold records on disk rather than in memory.

    Returns ``(picked, order, counts)``: the general records drawn (indices, sorted), the mixed order
    as a permutation of ``medical + picked`` (position ``n_medical + k`` is ``picked[k]``), and the counts.
    Raises ``DoctorSunError`` when more general records are needed than exist and ``replace`` is off.
    """
    text, per_medical = parse_ratio(ratio)
    if not n_medical:
        raise DoctorSunError("no medical records to mix")
    n_general = round(per_medical * n_medical)
    if n_general and not n_available:
        raise DoctorSunError(f"ratio {text} needs {n_general} general records but none were given")
    if n_general > n_available and not replace:
        raise DoctorSunError(f"ratio {text} needs {n_general} general records but only {n_available} exist; "
                             "lower the ratio or allow sampling with replacement (--replace)")
    rng = random.Random(seed)
    if replace:
        picked = sorted(rng.choices(range(n_available), k=n_general))
    else:
        picked = sorted(rng.sample(range(n_available), n_general))
    order = list(range(n_medical + n_general))
    rng.shuffle(order)
    counts = {"ratio": text, "seed": seed, "replace": replace, "medical": n_medical, "general": n_general,
              "general_available": n_available, "general_repeats": n_general - len(set(picked)),
              "total": n_medical + n_general}
    return picked, order, counts


def mix(medical: list[dict], general: list[dict], ratio: str | float = "1:0.5", seed: int = 0,
        replace: bool = False) -> tuple[list[dict], dict]:
    """All medical records plus ``round(ratio * len(medical))`` general ones, shuffled (``mix_plan``).

    Returns ``(records, report)``; the report gives the counts and the composition by source,
    language and task.
    """
    picked, order, counts = mix_plan(len(medical), len(general), ratio, seed, replace)
    pool = [dict(r) for r in medical] + unique_ids([general[i] for i in picked])
    records = [pool[i] for i in order]
    return records, {**counts, **composition(records)}


def unique_ids(records: list[dict]) -> list[dict]:
    """Copies of ``records`` in which the second and later uses of an id become ``id#2``, ``id#3``..."""
    return [{**r, "id": name} for r, name in zip(records, unique_names([r["id"] for r in records]), strict=True)]


def unique_names(ids: list[str]) -> list[str]:
    """``ids`` in which the second and later uses of an id become ``id#2``, ``id#3``..."""
    seen: Counter = Counter()
    out = []
    for rid in ids:
        seen[rid] += 1
        out.append(f"{rid}#{seen[rid]}" if seen[rid] > 1 else rid)
    return out


def format_report(report: dict) -> str:
    lines = [f"mixed {report['medical']} medical + {report['general']} general = {report['total']} records "
             f"(ratio {report['ratio']}, seed {report['seed']}"
             + (f", {report['general_repeats']} repeated" if report["replace"] else "") + ")"]
    for key in ("by_source", "by_lang", "by_task"):
        lines.append(f"{key.removeprefix('by_')}: " + ", ".join(f"{k} {n}" for k, n in report[key].items()))
    return "\n".join(lines)
