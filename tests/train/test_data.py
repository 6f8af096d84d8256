import pytest

from doctorsun.data.tokenize import IGNORE, ChatTokenizer
from doctorsun.errors import DoctorSunError
from doctorsun.train.config import DataConfig
from doctorsun.train.data import merge_turns


def rec(rid, image="/d/a.png", lang="en", q="What organ is shown?", a="liver", turns=None):
    conv = turns or [{"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": a}]
    return {"id": rid, "lang": lang, "task": "vqa-open", "conversations": conv, "image": image,
            "_images": [image]}


def test_merges_questions_about_one_image_and_language_only():
    records = [rec("a1", a="A1"), rec("b1", image="/d/b.png", a="B1"), rec("a2", a="A2"),
               rec("a-zh", lang="zh", a="肝"), rec("a3", a="A3"), rec("a4", a="A4")]
    merged = merge_turns(records, max_turns=3, seed=0)
    by_first_image = [(m["_images"][0], m["lang"]) for m in merged]
    # a.png/en: 4 questions -> a conversation of 3 and one of 1; b.png and the Chinese one stay alone.
    want = [("/d/a.png", "en")] * 2 + [("/d/b.png", "en"), ("/d/a.png", "zh")]
    assert sorted(by_first_image) == sorted(want)
    en = [m for m in merged if m["_images"] == ["/d/a.png"] and m["lang"] == "en"]
    ids = sorted(i for m in en for i in m["id"].split("+"))
    assert ids == ["a1", "a2", "a3", "a4"]  # nothing lost, nothing twice
    big = max(en, key=lambda m: len(m["conversations"]))
    turns = big["conversations"]
    assert [t["from"] for t in turns] == ["human", "gpt"] * 3
    assert turns[0]["value"].startswith("<image>\n")
    assert all("<image>" not in t["value"] for t in turns[1:])
    assert all(t["value"] == "What organ is shown?" for t in turns[2::2])
    # each answer still follows its own question
    answers = [t["value"] for t in turns[1::2]]
    assert answers == [{"a1": "A1", "a2": "A2", "a3": "A3", "a4": "A4"}[i] for i in big["id"].split("+")]


def test_merge_is_seeded_and_leaves_other_shapes_alone():
    records = [rec(f"q{i}", a=str(i)) for i in range(6)]
    text_only = {"id": "t", "lang": "en",
                 "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}],
                 "_images": []}
    two_turns = rec("mt", turns=[{"from": "human", "value": "<image>\nQ1"}, {"from": "gpt", "value": "A1"},
                                 {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}])
    first = merge_turns([text_only, *records, two_turns], 3, seed=1)
    assert first == merge_turns([text_only, *records, two_turns], 3, seed=1)
    other = merge_turns([text_only, *records, two_turns], 3, seed=2)
    assert [m["id"] for m in first] != [m["id"] for m in other]
    assert first[0] is text_only and first[-1] is two_turns
    assert len(first) == 4


def test_merged_conversation_learns_every_answer_and_has_one_image(tiny_model):
    model, processor = tiny_model
    tok = ChatTokenizer(processor, model.config.image_seq_length, max_length=256)
    merged = merge_turns([rec("a1", a="liver"), rec("a2", q="Is this a CT scan?", a="no")], 3, seed=0)
    assert len(merged) == 1
    sample = tok(merged[0])
    ids, labels = sample["input_ids"], sample["labels"]
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert ids.count(image_id) == model.config.image_seq_length
    learned = processor.tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE])
    assert "liver" in learned and "no" in learned
    assert "Is this a CT scan?" not in learned and "What organ" not in learned


def test_merge_turns_must_be_positive():
    with pytest.raises(DoctorSunError, match="merge_turns"):
        DataConfig(train=["x.jsonl"], merge_turns=0)


def test_where_and_task_weights_choose_the_records_of_a_curriculum_pass(tmp_path):
    import json

    from doctorsun.train.data import read_mixed

    records = [{**rec(f"c{i}", q=f"Is this CT {i}?", a="yes"), "task": "vqa-closed",
                "meta": {"question": "modality" if i % 2 else "organ"}} for i in range(8)]
    records += [rec(f"o{i}") for i in range(6)]
    records += [{**rec(f"m{i}"), "task": "caption"} for i in range(4)]
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({**{k: v for k, v in r.items() if k != "_images"}, "image": "a.png",
                                        "source": "t"}) + "\n" for r in records))

    def chosen(**data):
        got, _, _ = read_mixed(DataConfig(train=[str(path)], **data), seed=0)
        return sorted(r["id"] for r in got)

    assert chosen(where={"task": "vqa-closed", "meta.question": ["modality"]}) == ["c1", "c3", "c5", "c7"]
    half = chosen(task_weights={"vqa-open": 0.5, "caption": 0, "vqa-closed": 2})
    opens = [i for i in half if i.startswith("o")]
    assert len(opens) == 3 and not any(i.startswith("m") for i in half)
    twice = [f"c{i}" for i in range(8)] + [f"c{i}#2" for i in range(8)]
    assert [i for i in half if i.startswith("c")] == sorted(twice)
    again = chosen(task_weights={"vqa-open": 0.5, "caption": 0})
    assert opens == [i for i in again if i.startswith("o")]  # seeded
    with pytest.raises(DoctorSunError, match="18 read, none chosen by data.where"):
        chosen(where={"meta.question": ["plane"]})
    with pytest.raises(DoctorSunError, match="task_weights must be >= 0"):
        DataConfig(task_weights={"mcq": -1})
    with pytest.raises(DoctorSunError, match="where must map fields"):
        DataConfig(where=["task"])
