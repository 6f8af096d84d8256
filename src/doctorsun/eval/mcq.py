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


_MMBENCH_REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
                     "I'm sorry, but without the image provided", "Cannot determine the answer")


def mmbench_choice(output: str, options: Mapping[str, str]) -> str | None:
    """MMBench's exact-matching step (VLMEvalKit ``can_infer``): the one option letter that stands alone
    in the output once ``.()[],:;!*#{}`` become spaces; else the one option whose text occurs in the
    lower-cased output; else ``None`` (the authors then ask a judge LLM; without one it counts wrong).
    https://github.com/open-compass/VLMEvalKit/blob/main/vlmeval/utils/matching_util.py"""
    if any(refusal in output for refusal in _MMBENCH_REFUSALS):
        return "Z"
    mod = output
    for c in ".()[],:;!*#{}":
        mod = mod.replace(c, " ")
    splits = [x.strip() for x in mod.split()]
    hits = [k for k in options if k in splits]
    if len(hits) == 1:
        return hits[0]
    if not hits and sum(z in splits for z in ("Z", "")) == 1:
        return "Z"  # the authors' "cannot answer" mark: never a gold letter
    text = output.lower()
    found = [k for k, v in options.items() if str(v).lower() in text]
    return found[0] if len(found) == 1 else None


def mmmu_choice(output: str, options: Mapping[str, str], seed: str = "") -> str:
    """MMMU's ``parse_multi_choice_response``: "(B)" letters, else " B " letters, else (for answers longer
    than five words) option texts found in the output; several candidates: the one found last; none: a
    random letter, drawn here from a generator seeded by ``seed`` (the question id) so a rerun agrees.
    https://github.com/MMMU-Benchmark/MMMU/blob/main/mmmu/utils/eval_utils.py"""
    import random

    response = output
    for char in (",", ".", "!", "?", ";", ":", "'"):
        response = response.strip(char)
    response = " " + response + " "
    letters = list(options)
    candidates = [c for c in letters if f"({c})" in response]
    bracket, by_index = bool(candidates), True
    if not candidates:
        candidates = [c for c in letters if f" {c} " in response]
    if not candidates and len(response.split()) > 5:
        candidates = [k for k in letters if options[k].lower() in response.lower()]
        by_index = False
    if not candidates:
        return random.Random(f"mmmu:{seed}").choice(letters)
    if len(candidates) == 1:
        return candidates[0]
    if by_index:
        starts = [response.rfind(f"({c})" if bracket else f" {c} ") for c in candidates]
    else:
        starts = [response.lower().rfind(options[c].lower()) for c in candidates]
    return candidates[starts.index(max(starts))]


_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+)(?![eE][+-]?\d+)(?![,\d])")
_KEYS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")


def _mmmu_normalise(value: str) -> list:
    value = value.strip()
    try:
        return [round(float(value.replace(",", "")), 2)]
    except ValueError:
        value = value.lower()
        return [" " + value, value + " "] if len(value) == 1 else [value]


def mmmu_open_predictions(output: str) -> list:
    """MMMU's ``parse_open_response``: the shortest text after a key phrase ("is ", "therefore "...; "="
    in the last sentence) of each sentence, the numbers in those, normalised (numbers rounded to 2
    places, text lower-cased)."""
    response = output.strip().strip(".").lower()
    subs = re.split(r"\.\s(?=[A-Z])|\n", response)
    keys: list[str] = []
    for i, sub in enumerate(subs):
        indicators = [*_KEYS, "="] if i == len(subs) - 1 else list(_KEYS)
        shortest = None
        for ind in indicators:
            if ind in sub:
                tail = sub.split(ind)[-1].strip()
                if shortest is None or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(shortest)
    if not keys:
        keys = [response]
    preds = list(keys)
    for key in keys:
        preds += _COMMAS.findall(key) + _SCIENTIFIC.findall(key) + _SIMPLE.findall(key)
    out: list = []
    for p in preds:
        for v in _mmmu_normalise(p):
            if v not in out:
                out.append(v)
    return out


def mmmu_open_correct(output: str, answers: Sequence[str]) -> bool:
    """MMMU's ``eval_open``: a normalised gold text inside a predicted text, or a gold number equal to a
    predicted number."""
    golds = [v for a in answers for v in _mmmu_normalise(str(a))]
    for pred in mmmu_open_predictions(output):
        if isinstance(pred, str):
            if any(isinstance(g, str) and g in pred for g in golds):
                return True
        elif pred in golds:
            return True
    return False
