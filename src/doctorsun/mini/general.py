"""The general (non-medical) part of SunMed-VL-mini: everyday photographs with captions and questions,
for mixing into training the way the reference recipe mixes general data with medical data."""

from __future__ import annotations

import numpy as np

from doctorsun.data.image import load_image
from doctorsun.data.prompts import closed_prompt, open_prompt, with_image
from doctorsun.mini.sources import GENERAL, General, skimage_file
from doctorsun.mini.views import View, augment, prepare, rng_for
from doctorsun.mini.vocab import ATTRIBUTES, GENERAL_CAPTION_INSTRUCTIONS, NO, YES

VIEWS_PER_IMAGE = 5
CROP = (0.8, 1.0)
SUBJECT_OPEN = {"en": "What is the main subject of this image?", "zh": "这张图片的主要内容是什么？"}
SUBJECT_CLOSED = {"en": "Is there {x} in this image?", "zh": "图中有{x}吗？"}
FORMS = ("subject-open", "subject-closed", "colour-closed", "colour-open")


def general_views(seed: int) -> list[tuple[General, View]]:
    views = []
    for g in GENERAL:
        rng = rng_for(seed, "general", g.key)
        base = prepare(load_image(skimage_file(g.file)), "pad", CROP[0])
        for i in range(VIEWS_PER_IMAGE):
            image, aug = augment(base, rng, CROP, rotate=5.0, mirror=g.flips)
            views.append((g, View(f"gen-{g.key}-{i:02d}", image, "train", "image", aug)))
    return views


def general_records(views: list[tuple[General, View]], seed: int) -> list[dict]:
    """Per view: a caption and one question (subject or colour, open or yes/no), in en and zh."""
    rng = rng_for(seed, "general-questions")
    forms = [FORMS[i % len(FORMS)] for i in rng.permutation(len(views))]
    closed = [i for i, f in enumerate(forms) if f.endswith("closed")]
    truths = dict(zip(closed, rng.permutation([i % 2 == 0 for i in range(len(closed))]).tolist(),
                      strict=True))
    records = []
    for i, (g, view) in enumerate(views):
        records += _caption(g, view, rng)
        records += _question(g, view, forms[i], truths.get(i, True), rng)
    return records


def _record(view: View, g: General, n: str, lang: str, task: str, human: str, answer: str) -> dict:
    return {"id": f"mini-{view.id}-{n}-{lang}", "image": f"images/{view.id}.png", "lang": lang,
            "source": "sunmed-vl-mini", "task": task,
            "conversations": [{"from": "human", "value": with_image(human)},
                              {"from": "gpt", "value": answer}],
            "meta": {"view": view.id, "domain": "general", "origin": f"scikit-image:{g.file}",
                     "subject": g.subject[0], "colour": g.colour, "augmentation": view.meta}}


def _caption(g: General, view: View, rng: np.random.Generator) -> list[dict]:
    pick = int(rng.integers(1 << 30))
    out = []
    for i, lang in enumerate(("en", "zh")):
        prompts = GENERAL_CAPTION_INSTRUCTIONS[lang]
        out.append(_record(view, g, "cap", lang, "caption", open_prompt(prompts[pick % len(prompts)]),
                           g.caption[i]))
    return out


def _question(g: General, view: View, form: str, truth: bool, rng: np.random.Generator) -> list[dict]:
    colours = ATTRIBUTES["colour"].values
    if form == "subject-closed":
        others = [o for o in GENERAL if o.key != g.key and o.key not in g.also and g.key not in o.also]
        asked = g if truth else others[int(rng.integers(len(others)))]
    elif form == "colour-closed":
        asked_colour = g.colour if truth else next(c for c in colours if c != g.colour)
    out = []
    for i, lang in enumerate(("en", "zh")):
        if form == "subject-open":
            rec = _record(view, g, "q0", lang, "vqa-open", open_prompt(SUBJECT_OPEN[lang]), g.subject[i])
        elif form == "colour-open":
            question = ATTRIBUTES["colour"].open[lang][0]
            rec = _record(view, g, "q0", lang, "vqa-open", open_prompt(question),
                          colours[g.colour].answer[lang])
        elif form == "subject-closed":
            question = SUBJECT_CLOSED[lang].format(x=asked.phrase[i])
            rec = _record(view, g, "q0", lang, "vqa-closed", closed_prompt(question, lang),
                          (YES if asked is g else NO)[lang])
        else:
            question = ATTRIBUTES["colour"].closed[lang][0].format(x=colours[asked_colour].phrase[lang])
            rec = _record(view, g, "q0", lang, "vqa-closed", closed_prompt(question, lang),
                          (YES if asked_colour == g.colour else NO)[lang])
        rec["answer_type"] = "CLOSED" if form.endswith("closed") else "OPEN"
        out.append(rec)
    return out
