"""The one prompt builder: how a question becomes the human turn of a SunMed-VL record.

Converters, the mini set and evaluation all call these, so a model is asked in training exactly as it
is asked at test time.
"""

from __future__ import annotations

import string

from doctorsun.model.chat import IMAGE_TOKEN

LETTERS = string.ascii_uppercase

# MultiMedEval adds this when the gold answer is yes/no (see DESIGN.md section 6).
CLOSED_SUFFIX = {"en": "Answer the following question with yes or no.",
                 "zh": "请用“是”或“否”回答下面的问题。"}
MCQ_SUFFIX = {"en": "Answer with the option's letter from the given choices directly.",
              "zh": "请直接回答正确选项的字母。"}
OPTIONS_HEADER = {"en": "Options:", "zh": "选项："}


CAPTION_REQUEST = {"en": "Describe this medical image.", "zh": "请描述这张医学图像。"}


REPORT_REQUEST = {"en": "Write the findings section of the radiology report for this chest X-ray.",
                  "zh": "请为这张胸部X光片撰写放射学报告的检查所见部分。"}


def report_prompt(lang: str = "en") -> str:
    """The human turn of a report-generation record (IU-Xray, MIMIC-CXR)."""
    return REPORT_REQUEST[lang]


def caption_prompt(lang: str = "en") -> str:
    """The human turn of a caption record (caption sets have no question of their own)."""
    return CAPTION_REQUEST[lang]


def closed_prompt(question: str, lang: str = "en") -> str:
    """A yes/no question, with the instruction that peers add."""
    return f"{CLOSED_SUFFIX[lang]}\n{question.strip()}"


def open_prompt(question: str, lang: str = "en") -> str:
    return question.strip()


def mcq_prompt(question: str, choices: list[str], lang: str = "en") -> str:
    """``question``, then ``A. text`` lines, then the answer-format instruction."""
    lines = [question.strip(), OPTIONS_HEADER[lang]]
    lines += [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    lines.append(MCQ_SUFFIX[lang])
    return "\n".join(lines)


def mcq_answer(choices: list[str], index: int) -> str:
    """The assistant turn for an MCQ: the letter and the option text, e.g. ``B. Ultrasound``."""
    return f"{LETTERS[index]}. {choices[index]}"


REASONED = {"en": "{finding}, so {answer}", "zh": "{finding}，{answer}"}
"""A reasoned short answer: what the image shows, then the yes/no or the option letter. Chinese joins them
with a comma only: "所以是" would put 是 in every answer, and the LLaVA-Med hit rule reads substrings."""


def reasoned_answer(finding: str, answer: str, lang: str = "en") -> str:
    """The assistant turn that names the finding before the verdict, e.g. ``MRI, so no`` or ``CT，B``.

    Trained this way, a small model compares what it has just named (text against text) instead of
    deciding yes/no from the image in one token; every closed and MCQ rule of ``doctorsun.eval`` still
    reads the verdict (LLaVA-Med's substring hit, MultiMedEval's token recall, HuatuoGPT's lone letter)."""
    return REASONED[lang].format(finding=finding.strip(), answer=answer.strip())


def with_image(prompt: str) -> str:
    """Put the image placeholder first, as LLaVA's data does."""
    return f"{IMAGE_TOKEN}\n{prompt}"


def split_prompt(value: str, lang: str) -> tuple[str, bool, str, list[str]] | None:
    """A human turn built by ``data.prompts`` taken apart: ``(kind, has image, question, options)``, or
    ``None`` when it is not one of the builders' shapes."""
    image = value.startswith(IMAGE_TOKEN + "\n")
    body = value[len(IMAGE_TOKEN) + 1:] if image else value
    if IMAGE_TOKEN in body:
        return None
    if body == CAPTION_REQUEST[lang]:
        return "caption", image, "", []
    if body.startswith(CLOSED_SUFFIX[lang] + "\n"):
        return "closed", image, body[len(CLOSED_SUFFIX[lang]) + 1:], []
    lines = body.split("\n")
    if OPTIONS_HEADER[lang] in lines and lines[-1] == MCQ_SUFFIX[lang]:
        at = lines.index(OPTIONS_HEADER[lang])
        options = lines[at + 1:-1]
        if options and all(o.startswith(f"{LETTERS[i]}. ") for i, o in enumerate(options)):
            return "mcq", image, "\n".join(lines[:at]), [o[3:] for o in options]
        return None
    return "open", image, body, []
