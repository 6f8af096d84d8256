import re

import pytest
import torch
from PIL import Image

from doctorsun.data.tokenize import IGNORE, ChatTokenizer, SampleError, pack
from doctorsun.errors import DoctorSunError

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def record(rid="r1", question="<image>\nIs there a fracture?", answer="yes", image="a.png", turns=None):
    conv = turns or [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    rec = {"id": rid, "conversations": conv, "lang": "en", "source": "test", "task": "vqa-closed"}
    if image is not None:
        rec["image"] = image
    return rec


@pytest.fixture(scope="module")
def chatml(tiny_model_dir):
    from doctorsun.model import load_model

    model, processor = load_model(tiny_model_dir)
    return model, processor, ChatTokenizer(processor, model.config.image_seq_length, max_length=128)


@pytest.fixture(scope="module")
def llama3(tmp_path_factory, tiny_llm_dir):
    """A tiny model whose tokenizer has Llama-3's header tokens, so the llama3 template is detected."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from doctorsun.model import BuildConfig, VisionConfig, build_model
    from tests.conftest import TINY_VISION

    out = tmp_path_factory.mktemp("llama3-llm")
    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    tok.add_special_tokens({"additional_special_tokens": LLAMA3_SPECIALS})
    llm = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    llm.resize_token_embeddings(len(tok))
    llm.save_pretrained(out)
    tok.save_pretrained(out)
    model, processor = build_model(BuildConfig(llm=str(out), vision=VisionConfig(**TINY_VISION)))
    tok = ChatTokenizer(processor, model.config.image_seq_length, max_length=128)
    assert tok.format.name == "llama3"
    return model, processor, tok


def runs(processor, ids, labels):
    """Consecutive tokens with the same label status, decoded: ``[(text, counts), ...]``."""
    out, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or (labels[i] != IGNORE) != (labels[start] != IGNORE):
            out.append((processor.tokenizer.decode(ids[start:i]), labels[start] != IGNORE))
            start = i
    return out


def collapse(ids, labels, image_id):
    """Undo the visual-token expansion: one <image> id per run of them."""
    out_ids, out_labels = [], []
    for i, (t, lab) in enumerate(zip(ids, labels, strict=True)):
        if t == image_id and i and ids[i - 1] == image_id:
            continue
        out_ids.append(t)
        out_labels.append(lab)
    return out_ids, out_labels


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_only_assistant_tokens_have_labels_token_by_token(template, chatml, llama3):
    _, processor, tok = {"chatml": chatml, "llama3": llama3}[template]
    turns = [{"from": "human", "value": "<image>\nWhich organ?"}, {"from": "gpt", "value": "The liver."},
             {"from": "human", "value": "Any lesion? 有病灶吗？"}, {"from": "gpt", "value": "是的，有一个。"}]
    sample = tok(record(turns=turns))
    if template == "chatml":
        pieces = [("<|im_start|>user\n<image>\nWhich organ?<|im_end|>\n<|im_start|>assistant\n", False),
                  ("The liver.<|im_end|>", True),
                  ("\n<|im_start|>user\nAny lesion? 有病灶吗？<|im_end|>\n<|im_start|>assistant\n", False),
                  ("是的，有一个。<|im_end|>", True), ("\n", False)]
    else:
        head = "<|start_header_id|>{}<|end_header_id|>\n\n"
        pieces = [("<|begin_of_text|>" + head.format("user") + "<image>\nWhich organ?<|eot_id|>"
                   + head.format("assistant"), False),
                  ("The liver.<|eot_id|>", True),
                  (head.format("user") + "Any lesion? 有病灶吗？<|eot_id|>" + head.format("assistant"),
                   False),
                  ("是的，有一个。<|eot_id|>", True)]
    ids, labels = collapse(sample["input_ids"], sample["labels"], tok.image_token_id)
    # every token falls in one run; the runs are exactly the prompt and answer texts, alternating
    assert runs(processor, ids, labels) == pieces
    for t, lab in zip(sample["input_ids"], sample["labels"], strict=True):
        assert lab in (IGNORE, t)  # a label is the token itself (the loss shifts it) or nothing
    answer = processor.tokenizer.decode([t for t in sample["labels"] if t != IGNORE])
    stop = "<|im_end|>" if template == "chatml" else "<|eot_id|>"
    assert answer == f"The liver.{stop}是的，有一个。{stop}"


def test_image_placeholder_becomes_the_models_visual_tokens(chatml):
    model, _, tok = chatml
    sample = tok(record())
    n = sum(1 for t in sample["input_ids"] if t == tok.image_token_id)
    assert n == model.config.image_seq_length == 4
    assert all(lab == IGNORE for t, lab in zip(sample["input_ids"], sample["labels"], strict=True)
               if t == tok.image_token_id)


def test_training_prompt_is_exactly_what_inference_feeds(chatml):
    from doctorsun.model.chat import user_message
    from doctorsun.model.generate import Engine

    model, processor, tok = chatml
    sample = tok(record(question="<image>\nIs there a fracture?", answer="no"))
    engine = Engine(model, processor)
    prompt = engine.encode([[user_message("Is there a fracture?", 1)]], [[Image.new("RGB", (16, 16))]])
    ids = prompt["input_ids"][0].tolist()
    assert sample["input_ids"][: len(ids)] == ids
    assert all(lab == IGNORE for lab in sample["labels"][: len(ids)])
    assert sample["labels"][len(ids)] != IGNORE  # the answer starts right after the prompt


@pytest.mark.parametrize(
    ("rec", "max_length", "reason"),
    [
        (record(question="<image>\n<image>\nCompare."), 128, "2 <image> placeholder(s) for 1 image"),
        (record(image=None), 128, "1 <image> placeholder(s) for 0 image"),
        (record(answer="yes <image>"), 128, "2 <image> placeholder(s) for 1 image"),
        (record(turns=[{"from": "human", "value": "A long first question about the patient history?"},
                       {"from": "gpt", "value": "A long first answer."},
                       {"from": "human", "value": "<image>\nAnd this scan?"},
                       {"from": "gpt", "value": "yes"}]),
         28, "would cut its <image> tokens"),
        (record(question="<image>\n" + "Describe every detail of this scan please. " * 6), 30,
         "no assistant tokens left"),
        (record(turns=[{"from": "human", "value": "<image>\nHello"}]), 128, "no assistant turn"),
    ],
)
def test_bad_samples_are_refused_with_their_id(chatml, rec, max_length, reason):
    _, processor, _ = chatml
    tok = ChatTokenizer(processor, 4, max_length=max_length)
    with pytest.raises(SampleError, match=re.escape(reason)) as err:
        tok(rec)
    assert str(err.value).startswith("record r1:")


def test_truncation_keeps_image_and_some_answer(chatml):
    _, processor, _ = chatml
    tok = ChatTokenizer(processor, 4, max_length=20)
    sample = tok(record(answer="a long answer that will be cut somewhere in the middle"))
    assert len(sample["input_ids"]) == 20
    assert any(lab != IGNORE for lab in sample["labels"])


def test_tokenize_all_reports_bad_and_keeps_good(chatml):
    _, _, tok = chatml
    records = [record("good-1"), record("bad-1", question="<image>\n<image>\nx"),
               record("good-2", answer="no")]
    samples, problems = tok.tokenize_all(records)
    assert [s["record"]["id"] for s in samples] == ["good-1", "good-2"]
    assert [rid for rid, _ in problems] == ["bad-1"]


def test_model_without_image_token_is_refused(tiny_llm_dir):
    from transformers import AutoTokenizer, LlavaProcessor

    from doctorsun.model.vision import image_processor_for

    processor = LlavaProcessor(image_processor=image_processor_for(16),
                               tokenizer=AutoTokenizer.from_pretrained(
        tiny_llm_dir), patch_size=8, chat_template="{{ messages }}")
    with pytest.raises(DoctorSunError, match="no <image> token"):
        ChatTokenizer(processor, 4)


def test_packed_samples_do_not_see_each_other(chatml):
    """A packed row gives each sample the same logits as running it alone (block-diagonal attention)."""
    model, _, tok = chatml
    a = tok(record("a", question="<image>\nWhich organ is shown?", answer="The liver."))
    b = tok(record("b", question="<image>\nIs it normal?", answer="no"))
    c = tok(record("c", question="<image>\nModality?", answer="CT"))
    rows = pack([a, b, c], max_length=len(a["input_ids"]) + len(b["input_ids"]))
    assert [r["sources"] for r in rows] == [[0, 1], [2]]
    row = rows[0]
    starts = [i for i, p in enumerate(row["position_ids"]) if p == 0]
    assert starts == [0, len(a["input_ids"])]
    assert all(row["labels"][s] == IGNORE for s in starts)
    pixels = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        packed = model(input_ids=torch.tensor([row["input_ids"]]),
                       position_ids=torch.tensor([row["position_ids"]]),
                       pixel_values=pixels, use_cache=False).logits[0]
        alone_a = model(input_ids=torch.tensor([a["input_ids"]]), pixel_values=pixels[:1]).logits[0]
        alone_b = model(input_ids=torch.tensor([b["input_ids"]]), pixel_values=pixels[1:]).logits[0]
    torch.testing.assert_close(packed, torch.cat([alone_a, alone_b]), rtol=1e-4, atol=1e-5)
