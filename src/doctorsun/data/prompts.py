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


def with_image(prompt: str) -> str:
    """Put the image placeholder first, as LLaVA's data does."""
    return f"{IMAGE_TOKEN}\n{prompt}"
