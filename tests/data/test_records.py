"""The SunMed-VL record schema: every reason ``validate`` gives, and the helpers around it."""

from __future__ import annotations

import copy

import pytest
from PIL import Image

from doctorsun.data.records import answer, detect_lang, image_paths, validate
from doctorsun.errors import DoctorSunError

GOOD = {"id": "r1", "image": "a.png",
        "conversations": [{"from": "human", "value": "<image>\nWhat is shown?"},
                          {"from": "gpt", "value": "A CT."}],
        "lang": "en", "source": "unit", "task": "vqa-open"}


def edited(**changes) -> dict:
    record = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def test_a_good_record_has_no_reasons(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert validate(GOOD) == []
    assert validate(GOOD, image_root=tmp_path, check_images=True) == []


@pytest.mark.parametrize("field", ["id", "conversations", "lang", "source", "task"])
def test_each_missing_field_is_named(field):
    reasons = validate(edited(**{field: None}))
    assert f"missing field {field!r}" in reasons


@pytest.mark.parametrize("changes, expected", [
    ({"lang": "fr"}, "unknown lang 'fr'"),
    ({"task": "chat"}, "unknown task 'chat'"),
    ({"answer_type": "CLOSED "}, "answer_type must be OPEN or CLOSED"),
    ({"id": "  "}, "id must be a non-empty string"),
    ({"id": 7}, "id must be a non-empty string"),
    ({"meta": ["x"]}, "meta must be an object"),
    ({"task": "mcq"}, "mcq record has no choices"),
    ({"choices": ["only one"]}, "at least 2 needed"),
    ({"choices": ["a", ""]}, "choices must be a list of non-empty strings"),
    ({"image": []}, "image must be a non-empty path"),
])
def test_field_errors(changes, expected):
    reasons = validate(edited(**changes))
    assert any(expected in r for r in reasons), reasons


@pytest.mark.parametrize("turns, expected", [
    ([], "conversations must be a non-empty list"),
    ([{"from": "gpt", "value": "hi"}, {"from": "human", "value": "<image>\nq"}],
     "first turn is not from human"),
    ([{"from": "human", "value": "<image>\nq"}, {"from": "human", "value": "q2"}], "do not alternate"),
    ([{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "  "}], "turn 2 (gpt) is empty"),
    ([{"from": "human", "value": "<image>\nq"}], "last turn is not from gpt"),
    ([{"from": "user", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}], "turn 1 needs 'from'"),
])
def test_turn_errors(turns, expected):
    reasons = validate(edited(conversations=turns))
    assert any(expected in r for r in reasons), reasons


def test_placeholders_must_match_images():
    two_images = edited(image=["a.png", "b.png"])
    assert any("1 <image> placeholder(s) for 2 image(s)" in r for r in validate(two_images))
    no_image = edited(image=None)
    assert any("1 <image> placeholder(s) for 0 image(s)" in r for r in validate(no_image))
    in_answer = edited(conversations=[{"from": "human", "value": "q"}, {"from": "gpt", "value": "<image>"}])
    assert any("placeholder in a gpt turn" in r for r in validate(in_answer))


def test_missing_and_unreadable_images(tmp_path):
    assert any("missing image a.png" in r for r in validate(GOOD, image_root=tmp_path))
    (tmp_path / "a.png").write_bytes(b"not an image at all")
    assert validate(GOOD, image_root=tmp_path) == []  # exists; decoding only when asked
    reasons = validate(GOOD, image_root=tmp_path, check_images=True)
    assert any(r.startswith("unreadable image a.png") for r in reasons), reasons


def test_not_an_object():
    assert validate(["a list"]) == ["not a JSON object but list"]


def test_all_reasons_are_reported_together():
    reasons = validate(edited(lang="fr", task="chat", source=None))
    assert len(reasons) == 3


def test_helpers():
    assert image_paths(GOOD) == ["a.png"]
    assert image_paths(edited(image=None)) == []
    assert image_paths(edited(image=["a", "b"])) == ["a", "b"]
    assert answer(GOOD) == "A CT."
    assert detect_lang("这张图片显示了什么？") == "zh"
    assert detect_lang("What does the CT show?") == "en"
    with pytest.raises(DoctorSunError, match="r1"):
        answer(edited(conversations=[{"from": "human", "value": "q"}]))
