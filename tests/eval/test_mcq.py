"""Option extraction, each peer's rule on outputs worked through by hand."""

from __future__ import annotations

import pytest

from doctorsun.eval.mcq import (
    bleu_choice,
    closest_option,
    cmb_choice,
    huatuo_choice,
    most_similar_index,
    pubmedqa_choice,
)

OPTS = {"A": "CT", "B": "MRI", "C": "Ultrasound", "D": "PET"}


@pytest.mark.parametrize("output, expected", [
    ("The answer is B.", ("B", 1)),
    ("答案是C", ("C", 1)),
    ("(D) PET", ("D", 1)),
    ("b", ("b", 1)),                                  # returned as written: "b" != gold "B"
    ("A lesion; the answer is C.", ("C", 1)),         # "A " is read as an article
    ("It looks like mri", ("B", 2)),                  # no lone letter: option text found
    ("mri rather than ct", ("A", 2)),                 # the option mentioned last wins
])
def test_huatuo_choice(output, expected):
    assert huatuo_choice(output, OPTS) == expected


def test_huatuo_choice_falls_back_to_the_closest_option():
    # "ct" shares one character with "magnetic resonance" (ratio 2/20), "mri" two (4/21)
    assert huatuo_choice("magnetic resonance", {"A": "CT", "B": "MRI"}) == ("B", 3)


def test_most_similar_index_ties_go_to_the_last():
    assert most_similar_index(["x", "y"], "z") == 1
    assert closest_option("Glaucoma is present", ["Glaucoma", "Normal", "Cataract", "Drusen"]) == 0


@pytest.mark.parametrize("output, multiple, expected", [
    ("答案是AC。B不对", True, "AC"),
    ("答案是AC。", False, "A"),                       # single-answer: the first letter
    ("正确选项：D", False, "D"),
    ("选B和D", True, "BD"),                           # no marker: every A-G letter
    ("Based on the film, C", False, "B"),             # the reference also reads the B of "Based"
    ("无法判断", False, ""),
])
def test_cmb_choice(output, multiple, expected):
    assert cmb_choice(output, multiple) == expected


def test_bleu_choice():
    options = {"A": "ibuprofen", "B": "aspirin"}
    # "b: aspirin" vs "b aspirin": 1 of 2 words, same length -> 0.5; "a ibuprofen" loses its article -> 0
    assert bleu_choice("B: aspirin", options) == "B"
    assert bleu_choice("", options) is None
    assert bleu_choice("nothing matches", options) is None


@pytest.mark.parametrize("output, expected", [
    ("Maybe. The answer is no, no.", "no"),
    ("yes or no", "yes"),           # ties: yes before no before maybe
    ("unclear", None),
])
def test_pubmedqa_choice(output, expected):
    assert pubmedqa_choice(output) == expected


def test_omnimedvqa_compares_the_chosen_options_text_not_its_letter():
    """Two options with the same text: the closest is the last "Normal" (C), but its text equals the
    gold's (A), and OmniMedVQA's scorer compares ``option text == gt_answer``."""
    from doctorsun.eval.scoring import mcq_correct

    row = {"options": {"A": "Normal", "B": "Abnormal", "C": "Normal", "D": "Unknown"}, "gold": "A",
           "prediction": "(A) Normal"}
    assert closest_option(row["prediction"], list(row["options"].values())) == 2
    assert mcq_correct("closest", row)
    assert not mcq_correct("closest", {**row, "prediction": "Abnormal"})
