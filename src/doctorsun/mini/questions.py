"""Records of SunMed-VL-mini: captions, yes/no, open and multiple-choice questions, both languages.

Every item is written in English and Chinese from the same facts (same id stem, ``-en``/``-zh``), with
the human turn built by ``doctorsun.data.prompts`` exactly as evaluation asks. Wrong options and
"no" questions only use values that cannot also be true of the view (see ``vocab.OVERLAPS`` and each
source's ``visible`` organs). Yes and no answers are balanced per split and attribute.

Training answers to yes/no and multiple-choice questions are reasoned by default: they name what the
image shows before the verdict ("MRI, so no", "CT，B"; ``doctorsun.data.prompts.reasoned_answer``). The
held-out split keeps the bare verdict as its gold ("no", "B. CT"), which is what benchmarks score against.
``meta.verdict`` holds the bare verdict in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from doctorsun.data.prompts import (
    LETTERS,
    closed_prompt,
    mcq_answer,
    mcq_prompt,
    open_prompt,
    reasoned_answer,
    with_image,
)
from doctorsun.mini.sources import Source
from doctorsun.mini.views import View
from doctorsun.mini.vocab import ATTRIBUTES, CAPTION_INSTRUCTIONS, NO, OVERLAPS, YES

LANGS = ("en", "zh")
SOURCE = "sunmed-vl-mini"
TASK = {"closed": "vqa-closed", "open": "vqa-open", "mcq": "mcq"}
MCQ_OPTIONS = 4


@dataclass
class Item:
    """One question about one view, before its wording: the same item becomes an en and a zh record."""

    view: View
    source: Source
    attribute: str
    form: str
    gold: str
    n: int
    asked: str = ""  # closed: the value the question names; set when yes/no answers are balanced


def attributes_of(source: Source, view: View) -> dict[str, str]:
    """Attribute -> gold value for this view (plane may come from the slice)."""
    values = {"modality": source.modality, "kind": source.kind, "colour": source.colour}
    for name, value in (("region", source.region), ("organ", source.organ),
                        ("plane", view.meta.get("plane") or source.plane)):
        if value:
            values[name] = value
    return values


def wrong_values(source: Source, attribute: str, gold: str) -> list[str]:
    """Values that are certainly false for this source (so safe as "no" and as wrong options)."""
    values = ATTRIBUTES[attribute].values
    return [v for v in values if v != gold and frozenset((v, gold)) not in OVERLAPS
            and not (attribute == "organ" and v in source.visible)]


def forms_for(source: Source, attribute: str, gold: str) -> list[str]:
    n_wrong = len(wrong_values(source, attribute, gold))
    forms = ["open"]
    if n_wrong >= 1:
        forms.insert(0, "closed")
    if ATTRIBUTES[attribute].mcq and n_wrong >= 2:
        forms.append("mcq")
    return forms


def plan_items(source: Source, views: list[View], per_view: int, rng: np.random.Generator) -> list[Item]:
    """``per_view`` items per view: always one about the modality, the rest drawn from other attributes."""
    items = []
    for view in views:
        gold = attributes_of(source, view)
        modality_forms = forms_for(source, "modality", gold["modality"])
        form = modality_forms[int(rng.integers(len(modality_forms)))]
        chosen = [("modality", form)]
        others = [(a, f) for a in gold if a != "modality" for f in forms_for(source, a, gold[a])]
        for i in rng.permutation(len(others))[: per_view - 1]:
            chosen.append(others[int(i)])
        items += [Item(view, source, a, f, gold[a], n) for n, (a, f) in enumerate(chosen)]
    return items


def balance_closed(items: list[Item], rng: np.random.Generator) -> None:
    """Give each closed item the value it asks about so that yes and no are balanced per attribute
    (and, carrying odd counts across attributes, overall to within one)."""
    extra_yes = True
    for attribute in ATTRIBUTES:
        group = [it for it in items if it.form == "closed" and it.attribute == attribute]
        n_yes = len(group) // 2 + (len(group) % 2 if extra_yes else 0)
        if len(group) % 2:
            extra_yes = not extra_yes
        truths = np.array([True] * n_yes + [False] * (len(group) - n_yes))[rng.permutation(len(group))]
        for item, truth in zip(group, truths, strict=True):
            wrong = wrong_values(item.source, attribute, item.gold)
            item.asked = item.gold if truth else wrong[int(rng.integers(len(wrong)))]


def item_records(item: Item, rng: np.random.Generator, split: str, reasoned: bool = False) -> list[dict]:
    """The en and zh records of one item (same template index and option order in both); ``reasoned``:
    closed and MCQ answers name the gold finding before the verdict (the wording draws no randomness, so
    both settings give the same questions)."""
    attr = ATTRIBUTES[item.attribute]
    pick = int(rng.integers(1 << 30))
    choices_keys: list[str] = []
    if item.form == "mcq":
        wrong = wrong_values(item.source, item.attribute, item.gold)
        k = min(MCQ_OPTIONS - 1, len(wrong))
        options = [wrong[int(i)] for i in rng.choice(len(wrong), size=k, replace=False)] + [item.gold]
        choices_keys = [options[int(i)] for i in rng.permutation(len(options))]
    records = []
    for lang in LANGS:
        record = _base_record(item, split, lang)
        if item.form == "closed":
            value = attr.values[item.asked]
            stems = attr.closed[lang]
            question = stems[pick % len(stems)].format(x=value.phrase[lang], a=value.answer[lang])
            human, answer = closed_prompt(question, lang), (YES if item.asked == item.gold else NO)[lang]
            record["meta"]["verdict"] = answer
            if reasoned:
                answer = reasoned_answer(attr.values[item.gold].answer[lang], answer, lang)
            record["answer_type"] = "CLOSED"
        elif item.form == "open":
            stems = attr.open[lang]
            human, answer = open_prompt(stems[pick % len(stems)], lang), attr.values[item.gold].answer[lang]
            record["answer_type"] = "OPEN"
        else:
            stems = attr.mcq[lang]
            choices = [attr.values[c].answer[lang] for c in choices_keys]
            human = mcq_prompt(stems[pick % len(stems)], choices, lang)
            answer = mcq_answer(choices, choices_keys.index(item.gold))
            record["meta"]["verdict"] = LETTERS[choices_keys.index(item.gold)]
            if reasoned:
                answer = reasoned_answer(attr.values[item.gold].answer[lang], record["meta"]["verdict"], lang)
            record.update(answer_type="CLOSED", choices=choices)
        record["conversations"] = [{"from": "human", "value": with_image(human)},
                                   {"from": "gpt", "value": answer}]
        records.append(record)
    return records


def _base_record(item: Item, split: str, lang: str) -> dict:
    view, source = item.view, item.source
    meta = {"view": view.id, "split": split, "origin": source.origin, "base": view.base,
            "question": item.attribute, "form": item.form, "augmentation": view.meta,
            **{k: v for k, v in attributes_of(source, view).items()}}
    return {"id": f"mini-{view.id}-q{item.n}-{lang}", "image": f"images/{view.id}.png", "lang": lang,
            "source": SOURCE, "task": TASK[item.form], "meta": meta}


def caption_records(source: Source, view: View, rng: np.random.Generator) -> list[dict]:
    """One caption per language: a description of the source, with the plane and CT window of the view."""
    from doctorsun.mini.sources import window_sentence
    from doctorsun.mini.vocab import PLANE_WORDS

    which = int(rng.integers(len(source.captions)))
    instruction = int(rng.integers(1 << 30))
    plane = view.meta.get("plane")
    fill = {}
    if plane:
        fill = {"plane_en": PLANE_WORDS[plane][0], "plane_lower": plane, "plane_zh": PLANE_WORDS[plane][1]}
    window = window_sentence(view.meta.get("window"))
    records = []
    for i, lang in enumerate(LANGS):
        text = source.captions[which][i].format(**fill) + window[i]
        prompts = CAPTION_INSTRUCTIONS[lang]
        records.append({
            "id": f"mini-cap-{view.id}-{lang}", "image": f"images/{view.id}.png", "lang": lang,
            "source": SOURCE, "task": "caption",
            "conversations": [{"from": "human",
                               "value": with_image(open_prompt(prompts[instruction % len(prompts)]))},
                              {"from": "gpt", "value": text}],
            "meta": {"view": view.id, "split": "train", "origin": source.origin, "base": view.base,
                     "augmentation": view.meta, **attributes_of(source, view)},
        })
    return records
