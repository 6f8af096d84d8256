"""MMBench, MMMU and MedXpertQA: the authors' answer rules on hand-worked cases, circular evaluation,
and the records their converters make."""

from __future__ import annotations

import pytest

from doctorsun.data.converters import convert
from doctorsun.eval import mcq
from doctorsun.eval.benchmarks import get_benchmark, load_benchmark
from doctorsun.eval.runner import prepare, rotations
from doctorsun.eval.scoring import score_rows
from tests.fixtures import public_sets

OPTIONS = {"A": "red", "B": "green", "C": "blue", "D": "yellow"}


@pytest.mark.parametrize(("output", "expected"), [
    ("C", "C"), ("The answer is (C) blue.", "C"), ("C. blue", "C"),
    ("green", "B"),                       # no letter: the one option text found
    ("red or green", None),               # two option texts: undecided (a judge would be asked)
    ("A and B", None),                    # two letters, and no option text: undecided
    ("A dog is shown", "A"),              # a lone "A" reads as the letter (the authors' rule)
    ("purple", None),
    ("Sorry, I can't help with images of people yet.", "Z"),
])
def test_mmbench_exact_matching(output, expected):
    assert mcq.mmbench_choice(output, OPTIONS) == expected


MMMU_OPTIONS = {"A": "Beta blocker", "B": "Statin", "C": "Opioid", "D": "Penicillin"}


@pytest.mark.parametrize(("output", "expected"), [
    ("(B)", "B"), ("The answer is B.", "B"), ("B", "B"),
    ("I think the drug in the picture is a statin of some kind", "B"),   # > 5 words: option text
    ("(A) is wrong, so the answer is (B)", "B"),                        # several: the last one
    ("It is not an opioid but a beta blocker for sure", "A"),           # texts: the last found
    ("statin", None),                                                   # <= 5 words, no letter: random
])
def test_mmmu_multiple_choice_parsing(output, expected):
    chosen = mcq.mmmu_choice(output, MMMU_OPTIONS, seed="q1")
    if expected is None:
        assert chosen in MMMU_OPTIONS and chosen == mcq.mmmu_choice(output, MMMU_OPTIONS, seed="q1")
    else:
        assert chosen == expected


@pytest.mark.parametrize(("output", "answers", "right"), [
    ("The heart rate is 72 bpm.", ["72"], True),
    ("about 70", ["72"], False),
    ("The total is 1,000 units", ["1000"], True),
    ("Therefore the organ is the liver", ["Liver"], True),
    ("It is 3.14159", ["3.14"], True),              # numbers compared rounded to 2 places
    ("kidney", ["liver", "kidney"], True),          # any accepted answer
    ("lung", ["liver"], False),
])
def test_mmmu_open_answers(output, answers, right):
    assert mcq.mmmu_open_correct(output, answers) is right


def test_circular_rotations_move_the_gold_with_its_option(tmp_path):
    data = load_benchmark("mmbench", public_sets.write_mmbench(tmp_path))
    record = next(r for r in data.records if r["meta"]["index"] == "1" and r["lang"] == "en")
    items = rotations(prepare(record, data.image_root, get_benchmark("mmbench")))
    assert [it.row["id"].rsplit("@", 1)[1] for it in items] == ["0", "1", "2", "3"]
    for it in items:  # the gold letter always names "blue"
        assert it.row["options"][it.row["gold"]] == "blue" and it.row["circular_of"] == record["id"]
        assert f"{it.row['gold']}. blue" in it.messages[-1]["content"][-1]["text"]
        assert it.messages[-1]["content"][0]["type"] == "image"
    assert [it.row["gold"] for it in items] == ["C", "B", "A", "D"]
    assert items[1].row["options"] == {"A": "green", "B": "blue", "C": "yellow", "D": "red"}


def _row(qid: str, k: int, gold: str, prediction: str) -> dict:
    return {"id": f"{qid}@{k}", "circular_of": qid, "answer_type": "MCQ", "options": OPTIONS, "gold": gold,
            "prediction": prediction, "lang": "en", "answer": ""}


def test_circular_accuracy_needs_every_rotation_right():
    """Question 1: right in all four passes; question 2: right in three of four -> circular 1/2, while
    the per-pass accuracy is 7/8."""
    rows = [_row("q1", k, g, g) for k, g in enumerate("CBAD")]
    rows += [_row("q2", k, g, g if k < 3 else "A") for k, g in enumerate("ABCD")]
    scores = score_rows(rows, ("mmbench", "huatuo"))
    assert scores["circular_accuracy"] == 0.5 and scores["metrics"]["circular"]["n"] == 2
    assert scores["mcq_accuracy"] == 7 / 8


def test_mmmu_accuracy_counts_choice_and_open_questions_together(tmp_path):
    data = load_benchmark("mmmu-med", public_sets.write_mmmu(tmp_path))
    spec = get_benchmark("mmmu-med")
    items = {it.row["id"].rsplit("_", 2)[-2] + it.row["id"][-1]: it
             for it in (prepare(r, data.image_root, spec) for r in data.records)}
    first = items["Medicine1"]
    assert len(first.images) == 2 and "Compare image 1 and image 2" in first.row["question"]
    assert first.row["options"]["A"] == "image 1"
    assert items["Medicine2"].row["answers"] == ["72", "72.0"]
    rows = [{**items["Medicine1"].row, "prediction": "(A)"},
            {**items["Medicine2"].row, "prediction": "The rate is 72"},
            {**items["Pharmacy1"].row, "prediction": "(B)"}]
    scores = score_rows(rows, spec.mcq_methods)
    assert scores["accuracy"] == 2 / 3
    assert scores["metrics"]["mmmu"]["open_accuracy"] == 1.0 and scores["metrics"]["mmmu"]["mcq_accuracy"] == 0.5


def test_medxpertqa_gives_its_options_once(tmp_path):
    root = public_sets.write_medxpertqa(tmp_path)
    mm = convert("medxpertqa", root)
    first = mm.records[0]
    human = first["conversations"][0]["value"]
    assert human.count("<image>") == 2 and "Answer Choices" not in human and human.count("Pleural effusion") == 1
    assert first["meta"]["answer_letters"] == "B" and first["image"] == ["MM-1-a.jpeg", "MM-1-b.jpeg"]
    assert "MM-3" in mm.problems[0][0] and "not found" in mm.problems[0][1]
    text = convert("medxpertqa", root, subset="Text")
    assert len(text.records[0]["choices"]) == 10 and "image" not in text.records[0]
