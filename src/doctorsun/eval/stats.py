"""Uncertainty on every number, and paired tests between two runs.

- ``bootstrap_ci``: percentile bootstrap of a mean (Efron & Tibshirani 1993, ch. 13): resample the
  questions with replacement, take the 2.5th and 97.5th percentiles of the resampled means.
- ``paired_bootstrap``: the same on the per-question differences of two runs over the questions they
  share (Koehn 2004, "Statistical significance tests for machine translation evaluation").
- ``mcnemar_exact``: McNemar's exact test on the discordant pairs of two runs' right/wrong answers
  (two-sided binomial test of b against b + c at p = 0.5).
- ``cohen_kappa``: agreement of two binary raters beyond chance (Cohen 1960).
Seeded, so a score file's intervals repeat exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

import numpy as np

RESAMPLES = 2000
"""Bootstrap resamples (1,000 or more is the usual floor for 95% percentile intervals)."""
METHOD = f"percentile bootstrap of the mean over questions, {RESAMPLES} resamples, 95%"


def _resampled_means(values: np.ndarray, seed: int, resamples: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(values)
    means = np.empty(resamples)
    for start in range(0, resamples, 250):  # chunks keep memory at 250 x n indices
        stop = min(start + 250, resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def bootstrap_ci(values: Sequence[float], seed: int = 0, resamples: int = RESAMPLES,
                 level: float = 0.95) -> dict[str, float | int | list[float] | None]:
    """``{"value", "n", "ci95"}``: the mean of ``values`` and its percentile-bootstrap interval."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {"value": None, "n": 0, "ci95": None}
    means = _resampled_means(arr, seed, resamples)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return {"value": float(arr.mean()), "n": int(arr.size), "ci95": [float(lo), float(hi)]}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], seed: int = 0,
                     resamples: int = RESAMPLES) -> dict[str, float | int | list[float] | None]:
    """``{"value", "n", "ci95"}`` of mean(b) - mean(a) over paired questions (same order in both)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    return bootstrap_ci(np.asarray(b, dtype=float) - np.asarray(a, dtype=float), seed, resamples)


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict[str, float | int]:
    """``{"b", "c", "p"}``: b = right in A only, c = right in B only; two-sided exact p-value."""
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    n = only_a + only_b
    if n == 0:
        return {"b": 0, "c": 0, "p": 1.0}
    k = min(only_a, only_b)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2**n
    return {"b": only_a, "c": only_b, "p": min(1.0, 2 * tail)}


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's kappa of two binary ratings of the same items; ``None`` without items or when chance
    agreement is already perfect (both raters constant and equal)."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    observed = sum(1 for x, y in zip(a, b, strict=True) if bool(x) == bool(y)) / n
    pa, pb = sum(map(bool, a)) / n, sum(map(bool, b)) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)
