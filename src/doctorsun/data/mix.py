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


def mix(medical: list[dict], general: list[dict], ratio: str | float = "1:0.5", seed: int = 0,
        replace: bool = False) -> tuple[list[dict], dict]:
    """All medical records plus ``round(ratio * len(medical))`` general ones, shuffled.

    Raises ``DoctorSunError`` when more general records are needed than exist and ``replace`` is off.
    Returns ``(records, report)``; the report gives the counts and the composition by source,
    language and task.
    """
    text, per_medical = parse_ratio(ratio)
    if not medical:
        raise DoctorSunError("no medical records to mix")
    n_general = round(per_medical * len(medical))
    if n_general and not general:
        raise DoctorSunError(f"ratio {text} needs {n_general} general records but none were given")
    if n_general > len(general) and not replace:
        raise DoctorSunError(f"ratio {text} needs {n_general} general records but only {len(general)} exist; "
                             "lower the ratio or allow sampling with replacement (--replace)")
    rng = random.Random(seed)
    if replace:
        picked = [general[i] for i in sorted(rng.choices(range(len(general)), k=n_general))]
    else:
        picked = [general[i] for i in sorted(rng.sample(range(len(general)), n_general))]
    records = [dict(r) for r in medical] + unique_ids(picked)
    rng.shuffle(records)
    report = {"ratio": text, "seed": seed, "replace": replace, "medical": len(medical), "general": n_general,
              "general_available": len(general), "general_repeats": n_general - len({id(r) for r in picked}),
              "total": len(records), **composition(records)}
    return records, report


def unique_ids(records: list[dict]) -> list[dict]:
    """Copies of ``records`` in which the second and later uses of an id become ``id#2``, ``id#3``..."""
    seen: Counter = Counter()
    out = []
    for r in records:
        r = dict(r)
        seen[r["id"]] += 1
        if seen[r["id"]] > 1:
            r["id"] = f"{r['id']}#{seen[r['id']]}"
        out.append(r)
    return out


def format_report(report: dict) -> str:
    lines = [f"mixed {report['medical']} medical + {report['general']} general = {report['total']} records "
             f"(ratio {report['ratio']}, seed {report['seed']}"
             + (f", {report['general_repeats']} repeated" if report["replace"] else "") + ")"]
    for key in ("by_source", "by_lang", "by_task"):
        lines.append(f"{key.removeprefix('by_')}: " + ", ".join(f"{k} {n}" for k, n in report[key].items()))
    return "\n".join(lines)
