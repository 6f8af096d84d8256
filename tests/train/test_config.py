"""Recipes: every shipped YAML loads and validates; overrides and mistakes are handled clearly."""

from pathlib import Path

import pytest
import yaml

from doctorsun.errors import DoctorSunError
from doctorsun.train.config import STAGE_PARTS, load_recipe, recipe_from_dict

ROOT = Path(__file__).resolve().parents[2]
# data manifests (``doctorsun data build``) ship beside the recipes; tests/data/test_build.py loads them
SHIPPED = sorted(p for p in (ROOT / "recipes").glob("*/*.yaml") if "sources" not in yaml.safe_load(p.read_text()))
LAUNCH = sorted((ROOT / "src" / "doctorsun" / "train" / "configs").glob("*.yaml"))


def test_recipes_are_shipped():
    names = {f"{p.parent.name}/{p.name}" for p in SHIPPED}
    assert {"mini/1-text.yaml", "mini/2-vision.yaml", "mini/3-align.yaml", "mini/4-finetune.yaml",
            "doctor-sun-8b/1-text.yaml", "doctor-sun-8b/2-align.yaml",
            "doctor-sun-8b/3-finetune.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_recipe_loads_and_validates(path):
    recipe = load_recipe(path)
    assert recipe.stage in STAGE_PARTS
    again = recipe_from_dict(recipe.to_dict())  # the resolved form written beside checkpoints reloads
    assert again == recipe
    if recipe.architecture.llm_config:
        assert recipe.arch_path(recipe.architecture.llm_config).is_file()


def test_reference_recipe_matches_the_design():
    r8 = {p.stem: load_recipe(p) for p in SHIPPED if p.parent.name == "doctor-sun-8b"}
    align, tune = r8["2-align"], r8["3-finetune"]
    assert (align.optim.lr, tune.optim.lr) == (1e-3, 5e-6)
    modes = [[r.parts.vision.mode, r.parts.projector.mode, r.parts.llm.mode] for r in (align, tune)]
    assert modes == [["frozen", "full", "frozen"], ["lora", "full", "full"]]
    assert (tune.parts.vision.r, tune.parts.vision.alpha, tune.parts.vision.dropout) == (64, 16, 0.05)
    assert (align.data.ratio, tune.data.ratio) == ("1:1", "1:0.5")
    for r in r8.values():
        assert (r.train.global_batch, r.data.max_length, r.optim.warmup_ratio, r.optim.scheduler) == (
            16, 4096, 0.03, "cosine")


def test_overrides_win_and_are_typed(tmp_path):
    path = ROOT / "recipes" / "mini" / "4-finetune.yaml"
    r = load_recipe(path, ["train.max_steps=7", "optim.lr=3e-4", "parts.llm.mode=full", "data.ratio=1:0.5",
                           f"output_dir={tmp_path}"])
    assert (r.train.max_steps, r.optim.lr, r.parts.llm.mode, r.data.ratio) == (7, 3e-4, "full", "1:0.5")
    assert r.output_dir == str(tmp_path)



def test_null_takes_the_general_data_off(tmp_path):
    path = ROOT / "recipes" / "mini" / "4-finetune.yaml"
    assert load_recipe(path).data.general  # the recipe mixes in everyday images
    r = load_recipe(path, ["data.general=null", "data.ratio=null", f"output_dir={tmp_path}"])
    assert (r.data.general, r.data.ratio, r.data.train) == ([], "1:0", load_recipe(path).data.train)

@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.max_step=3"], "unknown recipe key.*train.max_step"),
        (["parts.llm.mode=qlora"], "part mode must be one of"),
        (["train.global_batch=10"], "not a multiple of train.micro_batch"),
        (["stage=pretrain"], "stage must be one of"),
        (["optim.scheduler=step"], "cosine, linear or constant"),
        (["parts.projector.mode=frozen", "parts.llm.mode=frozen"], "every part is frozen"),
        (["maxsteps"], "must look like key=value"),
        (["build={llm: smollm2-135m}"], "exactly one of 'model'"),
        (["data.loss_reduction=mean"], "loss_reduction must be one of token, sample, square"),
    ],
)
def test_mistakes_name_the_setting(overrides, message):
    with pytest.raises(DoctorSunError, match=message):
        load_recipe(ROOT / "recipes" / "mini" / "4-finetune.yaml", overrides)


def test_missing_recipe_and_bad_yaml(tmp_path):
    with pytest.raises(DoctorSunError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: [unclosed\n")
    with pytest.raises(DoctorSunError, match="not valid YAML"):
        load_recipe(bad)


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_shipped_accelerate_configs_parse(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes >= 2
    kind = str(config.distributed_type)
    expected = {"zero2.yaml": "DEEPSPEED", "zero3.yaml": "DEEPSPEED", "fsdp.yaml": "FSDP",
                "cpu2.yaml": "MULTI_GPU"}
    assert expected[path.name] in kind
    if "zero" in path.name:
        assert config.deepspeed_config["zero_stage"] == int(path.name[4])


def test_cli_prints_a_launch_config(capsys):
    from doctorsun.cli import main

    assert main(["train", "--config", "zero2"]) == 0
    assert Path(capsys.readouterr().out.strip()).name == "zero2.yaml"


def test_yaml_ratios_stay_text_and_exponents_are_numbers(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("stage: align\nmodel: m\noutput_dir: o\ndata: {train: [a.jsonl], ratio: 1:0.5}\n"
                    "optim: {lr: 1e-3}\n")
    r = load_recipe(path, ["data.general=[g.jsonl]"])
    assert r.data.ratio == "1:0.5"  # YAML 1.1 would have read 60.5 (base 60)
    assert r.optim.lr == 1e-3
    assert r.data.general == ["g.jsonl"]


def test_quickstart_moves_every_path_under_its_out_dir(tmp_path):
    from doctorsun.quickstart import STAGES, default_recipes, stage_overrides

    per = stage_overrides(tmp_path, ["4-finetune.train.max_steps=2", "4-finetune.data.ratio=1:0.5",
                                     "4-finetune.optim.lr=1e-3"])
    recipes = {s: load_recipe(default_recipes() / f"{s}.yaml", per[s]) for s in STAGES}
    for s, r in recipes.items():
        assert r.output_dir == str(tmp_path / s)
        assert all(f.startswith(str(tmp_path / "data")) for f in r.data.train + r.data.general)
    assert recipes["4-finetune"].model == str(tmp_path / "3-align")
    assert recipes["3-align"].model == str(tmp_path / "2-vision")  # the stages chain in order
    # the base model's replayed answers train with the medical questions, weighted by task
    assert recipes["4-finetune"].data.train == [str(tmp_path / "data" / n)
                                                for n in ("instruct_train.jsonl", "general_text.jsonl")]
    assert recipes["4-finetune"].data.task_weights["text"] > 1
    assert recipes["4-finetune"].train.max_steps == 2
    # the recipes' own YAML rules: a ratio stays text (not base-60 60.5), 1e-3 is a float
    assert recipes["4-finetune"].data.ratio == "1:0.5"
    assert recipes["4-finetune"].optim.lr == 1e-3
    with pytest.raises(DoctorSunError, match="STAGE.KEY=VALUE"):
        stage_overrides(tmp_path, ["train.max_steps=2"])
