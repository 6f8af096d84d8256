import pytest
import torch
from PIL import Image

from doctorsun.errors import DoctorSunError
from doctorsun.model import BuildConfig, VisionConfig, build_model, load_model
from doctorsun.model.chat import user_message
from doctorsun.model.generate import Engine, GenerationSettings


def _inputs(processor, question="What is shown?", n_images=1, size=16):
    conv = [user_message(question, n_images)]
    text = processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
    images = [Image.new("RGB", (size + 5, size), (i * 40, 90, 200)) for i in range(n_images)] or None
    return processor(text=[text], images=images, return_tensors="pt")


def test_image_placeholder_expands_to_visual_token_count(tiny_model):
    model, processor = tiny_model
    inputs = _inputs(processor)
    n_image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    # 16 px / 8 px patches = 2x2 grid, CLS dropped
    assert n_image_tokens == model.config.image_seq_length == 4
    feats = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
    assert feats[0].shape == (4, model.config.text_config.hidden_size)


def test_mismatched_image_tokens_fail_loudly(tiny_model):
    model, processor = tiny_model
    inputs = _inputs(processor)
    ids = inputs["input_ids"].clone()
    ids[ids == model.config.image_token_id] = processor.tokenizer.eos_token_id  # drop the placeholders
    with pytest.raises(Exception, match="[Ii]mage features and image tokens do not match"):
        model(input_ids=ids, pixel_values=inputs["pixel_values"], attention_mask=inputs["attention_mask"])


def test_plain_transformers_loads_saved_model_with_same_logits(tiny_build_config, tmp_path):
    """The model as built in memory, against what plain transformers reads back from its saved dir."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from doctorsun.model import save_model

    ours, processor = build_model(tiny_build_config)
    save_model(ours, processor, tmp_path / "saved")
    theirs = AutoModelForImageTextToText.from_pretrained(tmp_path / "saved").eval()
    their_processor = AutoProcessor.from_pretrained(tmp_path / "saved")
    a, b = _inputs(processor), _inputs(their_processor)
    assert torch.equal(a["input_ids"], b["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(ours(**a).logits, theirs(**b).logits, rtol=0, atol=0)


def test_llm_inside_gives_same_text_logits_as_llm_alone(tiny_llm_dir, tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, _ = tiny_model
    llm = AutoModelForCausalLM.from_pretrained(tiny_llm_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    ids = tok("Chest X-ray shows a left lower lobe consolidation. 胸片显示左下叶实变。",
              return_tensors="pt").input_ids
    with torch.no_grad():
        alone = llm(ids).logits
        inside = model(input_ids=ids).logits[..., : alone.shape[-1]]
    torch.testing.assert_close(inside, alone)


def test_kv_cache_does_not_change_greedy_output(tiny_model):
    model, processor = tiny_model
    inputs = _inputs(processor)
    kw = dict(max_new_tokens=6, do_sample=False, min_new_tokens=6)
    with torch.no_grad():
        cached = model.generate(**inputs, use_cache=True, **kw)
        uncached = model.generate(**inputs, use_cache=False, **kw)
    assert torch.equal(cached, uncached)


def test_batched_generation_equals_one_at_a_time(chatty_model_dir):
    engine = Engine.load(chatty_model_dir)  # varied, input-dependent words: a mixed-up answer shows
    img_a, img_b = Image.new("RGB", (20, 16), "white"), Image.new("RGB", (16, 30), (10, 200, 30))
    convs = [[user_message("Is there a fracture?", 1)],
             [user_message("A much longer question about the scan?", 1)],
             [user_message("text only", 0)]]
    images = [[img_a], [img_b], []]
    settings = GenerationSettings(max_new_tokens=5)
    batched = engine.generate(convs, images, settings)
    single = [engine.generate([c], [i], settings)[0] for c, i in zip(convs, images, strict=True)]
    assert batched == single
    assert all(batched) and len(set(batched)) == len(batched)  # real, distinct answers were compared


def test_chat_template_places_image_and_uses_llm_format(tiny_model):
    _, processor = tiny_model
    conv = [user_message("Which organ?", 1), {"role": "assistant", "content": "Liver."}]
    text = processor.apply_chat_template(conv, tokenize=False)
    assert text == "<|im_start|>user\n<image>\nWhich organ?<|im_end|>\n<|im_start|>assistant\nLiver.<|im_end|>\n"


def test_full_strategy_keeps_cls_token(tiny_llm_dir):
    from doctorsun.model.config import ProjectorConfig
    from tests.conftest import TINY_VISION

    cfg = BuildConfig(llm=str(tiny_llm_dir), vision=VisionConfig(**TINY_VISION),
                      projector=ProjectorConfig(select_strategy="full", feature_layer=-1))
    model, processor = build_model(cfg)
    inputs = _inputs(processor)
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 5
    with torch.no_grad():
        model(**inputs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"llm": "/no/such/dir"}, "LLM not found"),
        ({"llm": "not-a-model-name"}, "LLM not found"),
        ({"vision": {"image_size": 30, "patch_size": 8}}, "not a multiple"),
        ({"dtype": "int8"}, "dtype"),
    ],
)
def test_bad_build_configs_name_the_problem(kwargs, message):
    with pytest.raises(DoctorSunError, match=message):
        build_model(BuildConfig(**kwargs))


def test_gguf_of_unsupported_architecture_is_refused(tmp_path):
    import gguf

    path = tmp_path / "bert.gguf"
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_tensor("token_embd.weight", torch.zeros(4, 4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(DoctorSunError, match="'bert'"):
        build_model(BuildConfig(llm=str(path)))


def test_load_refuses_dirs_without_safetensors(tmp_path, tiny_model_dir):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    for f in copy.glob("*.safetensors"):
        f.unlink()
    torch.save({}, copy / "pytorch_model.bin")
    with pytest.raises(DoctorSunError, match="no .safetensors"):
        load_model(copy)
    with pytest.raises(DoctorSunError, match="model not found"):
        load_model(tmp_path / "missing")
