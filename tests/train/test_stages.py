"""Each stage on tiny models: it runs, only its trainable parts change, and the next stage loads it."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from doctorsun.train.parts import part_of
from doctorsun.train.stages import run_recipe
from tests.train.conftest import make_recipe


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        out.update(load_file(f))
    return out


def changed_parts(before: Path, after: Path) -> set[str]:
    a, b = weights(before), weights(after)
    assert a.keys() == b.keys()
    return {part_of(k) for k in a if not torch.equal(a[k], b[k])}


@pytest.fixture(scope="module")
def bad_records(tmp_path_factory, tiny_data) -> str:
    """Questions plus records that must be skipped, each for its own reason."""
    root = Path(tiny_data["root"])
    good = Path(tiny_data["questions"]).read_text(encoding="utf-8")
    long_first = "Tell me everything about this patient's long and complicated history, please. " * 2
    bad = [
        {"id": "bad-missing-image", "image": "images/nope.png", "lang": "en", "source": "t",
         "task": "vqa-closed",
         "conversations": [{"from": "human", "value": "<image>\nRed?"}, {"from": "gpt", "value": "yes"}]},
        {"id": "bad-two-placeholders", "image": "images/0.png", "lang": "en", "source": "t",
         "task": "vqa-closed",
         "conversations": [{"from": "human", "value": "<image><image>\nRed?"},
                           {"from": "gpt", "value": "yes"}]},
        {"id": "bad-image-cut", "image": "images/0.png", "lang": "en", "source": "t", "task": "dialogue",
         "conversations": [{"from": "human", "value": long_first}, {"from": "gpt", "value": "Fine."},
                           {"from": "human", "value": "<image>\nRed?"}, {"from": "gpt", "value": "yes"}]},
    ]
    path = root / "questions-with-bad.jsonl"
    path.write_text(good + "".join(json.dumps(r) + "\n" for r in bad), encoding="utf-8")
    return str(path)


def test_four_stages_chain_and_train_only_their_parts(tmp_path, tiny_model_dir, tiny_data, bad_records):
    lora = {"mode": "lora", "r": 4, "alpha": 8, "dropout": 0.0}
    text = make_recipe("text", tmp_path / "text", [tiny_data["text"]], model=tiny_model_dir,
                       parts={"llm": lora}, data={"packing": True})
    run_recipe(text)
    assert changed_parts(tiny_model_dir, tmp_path / "text" / "model") == {"llm"}

    vision = make_recipe("vision", tmp_path / "vision", [tiny_data["captions"]], model=tmp_path / "text",
                         train={"micro_batch": 6, "global_batch": 6})
    summary = run_recipe(vision)
    assert summary["loss_last"] < summary["loss_first"]
    assert changed_parts(tmp_path / "text" / "model", tmp_path / "vision" / "model") == {"vision"}

    align = make_recipe("align", tmp_path / "align", [tiny_data["captions"]], model=tmp_path / "vision")
    run_recipe(align)
    before, after = weights(tmp_path / "vision" / "model"), weights(tmp_path / "align" / "model")
    for name in before:  # the frozen-weight check: bit for bit
        if part_of(name) in ("vision", "llm"):
            assert torch.equal(before[name], after[name]), name
    assert any(not torch.equal(before[n], after[n]) for n in before if part_of(n) == "projector")

    finetune = make_recipe("finetune", tmp_path / "finetune", [bad_records], model=tmp_path / "align",
                           parts={"llm": lora, "projector": {"mode": "full"}, "vision": lora},
                           data={"general": [tiny_data["general"]], "ratio": "1:0.25", "max_length": 40,
                                 "padding_free": True},
                           train={"gradient_checkpointing": True, "group_by_length": False})
    summary = run_recipe(finetune)
    assert changed_parts(tmp_path / "align" / "model", tmp_path / "finetune" / "model") == {
        "vision", "projector", "llm"}
    skipped = [json.loads(line) for line in (tmp_path / "finetune" / "problems.jsonl").read_text().splitlines()]
    assert {s["id"] for s in skipped} == {"bad-missing-image", "bad-two-placeholders", "bad-image-cut"}
    assert summary["skipped_records"] == 3

    out = tmp_path / "finetune"
    for name in ("log.jsonl", "loss.png", "recipe.yaml", "summary.json", "model/recipe.yaml"):
        assert (out / name).is_file(), name
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3]

    from transformers import AutoModelForImageTextToText

    from doctorsun.model.chat import user_message
    from doctorsun.model.generate import Engine

    engine = Engine.load(out / "model")  # merged: a plain transformers checkpoint, no peft needed
    assert not any("lora" in k for k in weights(out / "model"))
    inputs = engine.encode([[user_message("Is the square red?", 1)]],
                           [[Image.new("RGB", (20, 20), (220, 30, 30))]])
    plain = AutoModelForImageTextToText.from_pretrained(out / "model").eval()
    with torch.no_grad():
        ours, theirs = engine.model(**inputs).logits, plain(**inputs).logits
        before = Engine.load(tmp_path / "align" / "model").model(**inputs).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)  # the merged weights are what loads
    assert (ours - before).abs().max() > 1e-4  # and fine-tuning changed what the model answers


def test_lm_loss_equals_transformers_own_loss(tmp_path, tiny_model, tiny_data):
    """Our loss (LM head only where a label is) equals LlavaForConditionalGeneration's full loss."""
    from doctorsun.train.data import Collator
    from doctorsun.train.prepare import build_sample_set
    from doctorsun.train.trainer import StageTrainer, training_arguments

    model, processor = tiny_model
    recipe = make_recipe("finetune", tmp_path, [tiny_data["questions"]], model="unused",
                         data={"general": [tiny_data["general"]], "ratio": "1:0.25"})
    dataset, problems, _ = build_sample_set(recipe.data, processor, model.config.image_seq_length, 0)
    assert not problems
    batch = Collator(processor.tokenizer.pad_token_id)([dataset[i] for i in range(len(dataset))])
    assert batch["attention_mask"].sum() < batch["attention_mask"].numel()  # some padding to mask
    trainer = StageTrainer(model=model, args=training_arguments(recipe, tmp_path), recipe=recipe)
    model.eval()
    with torch.no_grad():
        ours = trainer.compute_loss(model, dict(batch))
        theirs = model(**batch).loss
    torch.testing.assert_close(ours, theirs)


def test_padding_free_batch_gives_the_padded_batch_loss_and_gradients(tmp_path, tiny_model, tiny_data):
    """One row with restarting positions (no padding) trains exactly as the padded batch does."""
    from doctorsun.train.data import Collator
    from doctorsun.train.parts import apply_parts
    from doctorsun.train.prepare import build_sample_set
    from doctorsun.train.trainer import StageTrainer, training_arguments

    model, processor = tiny_model
    recipe = make_recipe("finetune", tmp_path, [tiny_data["questions"]], model="unused",
                         data={"general": [tiny_data["general"]], "ratio": "1:0.25"},
                         parts={"projector": {"mode": "full"}, "llm": {"mode": "lora", "r": 4, "alpha": 8}})
    dataset, problems, _ = build_sample_set(recipe.data, processor, model.config.image_seq_length, 0)
    assert not problems
    items = [dataset[i] for i in range(len(dataset))]
    padded = Collator(processor.tokenizer.pad_token_id)(items)
    flat = Collator(processor.tokenizer.pad_token_id, padding_free=True)(items)
    assert padded["attention_mask"].sum() < padded["attention_mask"].numel()  # the padded one wastes some
    assert flat["input_ids"].shape == (1, sum(len(it["input_ids"]) for it in items))
    assert torch.equal(flat["pixel_values"], padded["pixel_values"])
    model = apply_parts(model, recipe.parts)
    trainer = StageTrainer(model=model, args=training_arguments(recipe, tmp_path), recipe=recipe)
    model.eval()  # no dropout: both passes see the same function
    results = []
    for batch in (padded, flat):
        model.zero_grad()
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((loss.detach(), grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_b, loss_a)
    assert grads_a.keys() == grads_b.keys() and any(g.abs().sum() > 0 for g in grads_a.values())
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)
    # Without restarting positions the samples would attend to each other: a different loss.
    joined = {**flat, "position_ids": torch.arange(flat["input_ids"].shape[1])[None]}
    with torch.no_grad():
        assert not torch.allclose(trainer.compute_loss(model, joined), loss_a)


def test_refused_everything_is_a_clear_error(tmp_path, tiny_model_dir, tiny_data):
    from doctorsun.errors import DoctorSunError

    recipe = make_recipe("finetune", tmp_path, [tiny_data["questions"]], model=tiny_model_dir,
                         data={"max_length": 8})
    with pytest.raises(DoctorSunError, match="every training record was refused"):
        run_recipe(recipe)


def test_a_part_can_have_its_own_learning_rate(tmp_path, tiny_model):
    from doctorsun.train.parts import apply_parts, part_of
    from doctorsun.train.trainer import StageTrainer, training_arguments

    model, _ = tiny_model
    recipe = make_recipe("finetune", tmp_path, ["unused.jsonl"], model="unused", optim={"lr": 2e-4},
                         parts={"projector": {"mode": "full", "lr": 1e-3},
                                "llm": {"mode": "lora", "r": 4, "alpha": 8}})
    model = apply_parts(model, recipe.parts)
    trainer = StageTrainer(model=model, args=training_arguments(recipe, tmp_path), recipe=recipe)
    optimizer = trainer.create_optimizer()
    by_id = {id(p): name for name, p in model.named_parameters()}
    lrs = {(part_of(by_id[id(p)]), group["lr"]) for group in optimizer.param_groups for p in group["params"]}
    assert lrs == {("projector", 1e-3), ("llm", 2e-4)}


def test_layers_trains_only_the_chosen_blocks(tmp_path, tiny_model_dir, tiny_data):
    from doctorsun.errors import DoctorSunError
    from doctorsun.train.parts import block_of

    recipe = make_recipe("finetune", tmp_path / "top", [tiny_data["questions"]], model=tiny_model_dir,
                         parts={"projector": {"mode": "frozen"}, "llm": {"mode": "full", "layers": 1}})
    run_recipe(recipe)
    before, after = weights(tiny_model_dir), weights(tmp_path / "top" / "model")
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and {part_of(n) for n in changed} == {"llm"}
    assert {block_of(n) for n in changed} == {1}  # the last of the tiny LLM's 2 blocks, nothing outside it

    lora = {"mode": "lora", "r": 4, "alpha": 8, "dropout": 0.0, "layers": -1}
    recipe = make_recipe("finetune", tmp_path / "first", [tiny_data["questions"]], model=tiny_model_dir,
                         parts={"projector": {"mode": "frozen"}, "llm": lora, "vision": lora})
    run_recipe(recipe)
    after = weights(tmp_path / "first" / "model")
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert {(part_of(n), block_of(n)) for n in changed} == {("llm", 0), ("vision", 0)}

    too_many = make_recipe("finetune", tmp_path / "bad", [tiny_data["questions"]], model=tiny_model_dir,
                           parts={"llm": {"mode": "full", "layers": 3}})
    with pytest.raises(DoctorSunError, match="parts.llm.layers is 3, but the llm has 2 transformer blocks"):
        run_recipe(too_many)
    with pytest.raises(DoctorSunError, match="non-zero whole number"):
        make_recipe("finetune", tmp_path / "bad", [], model="unused",
                    parts={"llm": {"mode": "full", "layers": 0}})


@pytest.mark.parametrize("reduction", ["sample", "square"])
def test_loss_reduction_weighs_each_sample_as_intended(tmp_path, tiny_model, tiny_data, reduction):
    """``sample``: the mean of the samples' own mean losses; ``square``: samples weighted by sqrt(n), n their
    label tokens. Padded and padding-free batches agree, and so do two micro-batches accumulated."""
    from doctorsun.train.data import Collator
    from doctorsun.train.prepare import build_sample_set
    from doctorsun.train.trainer import StageTrainer, training_arguments

    model, processor = tiny_model
    recipe = make_recipe("finetune", tmp_path, [tiny_data["questions"]], model="unused",
                         data={"general": [tiny_data["general"]], "ratio": "1:0.25", "loss_reduction": reduction})
    dataset, problems, _ = build_sample_set(recipe.data, processor, model.config.image_seq_length, 0)
    assert not problems
    items = [dataset[i] for i in range(len(dataset))]
    pad = processor.tokenizer.pad_token_id
    trainer = StageTrainer(model=model, args=training_arguments(recipe, tmp_path), recipe=recipe)
    model.eval()
    with torch.no_grad():
        means, counts = [], []
        for it in items:  # each sample alone, transformers' own (token-mean) loss
            one = Collator(pad)([it])
            means.append(model(**one).loss)
            counts.append(int((one["labels"][:, 1:] != -100).sum()))
        assert len(set(counts)) > 1  # answers of different lengths, or the reductions would all agree
        w = torch.tensor([1.0 if reduction == "sample" else n ** 0.5 for n in counts])
        expected = (torch.stack(means) * w).sum() / w.sum()
        token_mean = (torch.stack(means) * torch.tensor(counts, dtype=torch.float)).sum() / sum(counts)
        assert not torch.allclose(expected, token_mean)
        for free in (False, True):
            batch = Collator(pad, padding_free=free, loss_reduction=reduction)(items)
            torch.testing.assert_close(trainer.compute_loss(model, dict(batch)), expected)
        # Gradient accumulation: each micro-batch divided by the global normaliser, then summed.
        halves = [Collator(pad, True, reduction)(items[:3]), Collator(pad, True, reduction)(items[3:])]
        total = trainer._get_num_items_in_batch(halves, torch.device("cpu"))
        torch.testing.assert_close(total, w.sum())
        summed = sum(trainer.compute_loss(model, dict(b), num_items_in_batch=total) for b in halves)
        torch.testing.assert_close(summed, expected)


def test_loss_weights_follow_sample_boundaries():
    """Hand-worked: a padding-free row of two samples (2 and 4 label tokens) and a padded row of one."""
    from doctorsun.train.data import loss_weights

    i = -100
    labels = torch.tensor([[i, 5, 6, i, i, 7, 8, 9, 4]])
    positions = torch.tensor([[0, 1, 2, 0, 1, 2, 3, 4, 5]])
    w = loss_weights(labels, positions, "sample")
    torch.testing.assert_close(w, torch.tensor([[0, .5, .5, 0, 0, .25, .25, .25, .25]]))
    w = loss_weights(labels, positions, "square")
    torch.testing.assert_close(w, torch.tensor([[0, 2 ** -.5, 2 ** -.5, 0, 0, .5, .5, .5, .5]]))
    padded = torch.tensor([[3, 5, i, i], [i, 5, 6, 7]])  # column 0 is never a target
    expected = torch.tensor([[0, 1, 0, 0], [0, 1 / 3, 1 / 3, 1 / 3]])
    torch.testing.assert_close(loss_weights(padded, None, "sample"), expected)
