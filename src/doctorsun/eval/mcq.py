"""Which option did the model choose? One extractor per peer, each returning what that peer compares.

- ``huatuo_choice``: HuatuoGPT-Vision's ``match_choice3`` (a lone letter, else the option text found in
  the output, else the closest option by difflib), used for PMC-VQA, OmniMedVQA, MedQA and most peers.
- ``closest_option``: OmniMedVQA's own scorer (the option most similar to the output, by difflib ratio).
- ``cmb_choice``: CMB's ``match_choice`` (letters after 答案/正确选项, else every A-G letter).
- ``bleu_choice``: MultiMedEval's MedQA rule (the option "key value" with the highest BLEU-1).
- ``pubmedqa_choice``: MultiMedEval's PubMedQA rule (the most frequent of yes / no / maybe).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence

from doctorsun.eval.metrics import bleu1, normalize_vqa

_LONE_LETTER = re.compile(r"(is |是|\*|\W|\ |\(|为|^|'|\"|#)(?![aA] )([abcdefghijklmnABCDEFGHIJKLMN])(\W|$)",
                          re.S)


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def most_similar_index(candidates: Sequence[str], target: str) -> int:
    """Index of the candidate with the highest difflib ratio to ``target``; ties go to the *last* one
    (the peers compare with ``>=``)."""
    best, best_index = 0.0, 0
    for i, cand in enumerate(candidates):
        sim = _similarity(cand, target)
        if sim >= best:
            best, best_index = sim, i
    return best_index


def huatuo_choice(output: str, options: Mapping[str, str]) -> tuple[str, int]:
    """``(letter, stage)`` as HuatuoGPT-Vision's ``match_choice3``.

    Stage 1: the first lone letter A-N (either case; "a "/"A " followed by a space is taken for an
    article) after the start, a space, a non-word character, "is ", 是, 为 or "(". The letter is returned
    as written, so a lower-case "b" does not equal the gold "B" (as in the reference). Stage 2: the option
    whose text occurs last in the output. Stage 3: the option most similar to the whole output.
    https://github.com/FreedomIntelligence/HuatuoGPT-Vision/blob/main/scorer.py
    """
    match = _LONE_LETTER.search(output)
    if match:
        return match.group(2), 1
    text = output.lower()
    found = [(letter, text.rindex(opt.lower())) for letter, opt in options.items() if opt.lower() in text]
    if found:
        return max(found, key=lambda x: x[1])[0], 2
    letters = list(options)
    return letters[most_similar_index([options[k].lower() for k in letters], text)], 3


def closest_option(output: str, options: Sequence[str]) -> int:
    """OmniMedVQA: index of the option most similar to the raw output (difflib ratio, last of ties); the
    question is right when that option's text equals ``gt_answer``.
    https://github.com/FreedomIntelligence/HuatuoGPT-Vision/blob/main/scorer.py (``test_OmniMedVQA``)"""
    return most_similar_index(list(options), output)


_CMB_ANSWER = re.compile(r"(答案|正确选项)(?:是|：|为|应该是|应该为)(.*?)(。|\.|$)", re.S)
_CMB_LETTERS = "ABCDEFG"


def cmb_choice(output: str, multiple: bool = False) -> str:
    """CMB: the A-G letters after 答案/正确选项 (是/：/为/应该是/应该为), else every A-G letter in the output,
    in order; a single-answer question keeps only the first. Compared with the gold string as is.
    https://github.com/FreedomIntelligence/CMB/blob/main/src/utils.py (``match_choice``, ``extract_ans``)
    """
    match = _CMB_ANSWER.search(output)
    text = match.group(2) if match else output
    letters = "".join(c for c in text if c in _CMB_LETTERS)
    if len(letters) > 1 and not multiple:
        letters = letters[0]
    return letters


def bleu_choice(output: str, options: Mapping[str, str]) -> str | None:
    """MultiMedEval MedQA: the key whose normalised "key value" has the highest BLEU-1 against the
    normalised output (first of ties); ``None`` for an empty output or no overlap at all.
    https://github.com/corentin-ryr/MultiMedEval/blob/main/multimedeval/qa.py (``MedQA.get_predicted_answer``)
    """
    pred = normalize_vqa(output)
    if not pred:
        return None
    keys = list(options)
    scores = [bleu1(pred.split(), normalize_vqa(f"{k} {options[k]}").split()) for k in keys]
    best = max(scores)
    return None if best == 0 else keys[scores.index(best)]


def pubmedqa_choice(output: str) -> str | None:
    """MultiMedEval PubMedQA: count the words yes / no / maybe in the normalised output; the most frequent
    wins (yes before no before maybe on ties); ``None`` when none occurs.
    https://github.com/corentin-ryr/MultiMedEval/blob/main/multimedeval/qa.py (``PubMedQA.get_predicted_answer``)
    """
    words = normalize_vqa(output).split(" ")
    counts = [words.count(w) for w in ("yes", "no", "maybe")]
    if max(counts) == 0:
        return None
    return ("yes", "no", "maybe")[counts.index(max(counts))]
