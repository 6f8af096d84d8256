"""``doctorsun quickstart``: the embedded default, end to end, on a laptop CPU.

1. build SunMed-VL-mini (real medical images that installed packages ship, bilingual questions);
2. assemble SmolLM2-135M-Instruct + a small scratch ViT and score it on held-out questions (before);
3. run the mini recipes (``recipes/mini``): text, vision, align, then finetune (every question kind with
   reasoned yes/no and MCQ answers, everyday images and the base model's own replayed text answers);
4. score the trained model on the same questions, then again with blank images in place of the real
   ones: the gap between the two shows how much the answers come from the image.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from doctorsun.errors import DoctorSunError
from doctorsun.files import write_json, write_text

log = logging.getLogger(__name__)

STAGES = ("1-text", "2-vision", "3-align", "4-finetune")
HEADLINE = (("closed_accuracy", "closed accuracy"), ("open_recall", "open recall"),
            ("mcq_accuracy", "MCQ accuracy"))
GENERAL = (("knowledge", "general knowledge"), ("open_ended", "open-ended"), ("retention", "general retention"))
"""General-skill columns: everyday-knowledge questions (English and Chinese, likelihood scoring), the share
of open requests answered open-endedly, and the general score (their mean) relative to the base model's."""
OPEN_TOKENS = 24
"""Answer length for the open general requests."""
REPLAY_TOKENS = 80
"""Answer length for the base model's replay answers."""


def default_recipes() -> Path:
    return Path(__file__).resolve().parents[2] / "recipes" / "mini"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/quickstart", help="where data, checkpoints and reports go")
    p.add_argument("--recipes", default=None,
                   help="folder of the mini recipes (default: the repo's recipes/mini)")
    p.add_argument("--eval-limit", type=int, default=144,
                   help="held-out questions to score (a seeded sample of the test split; 0: all)")
    p.add_argument("--eval-batch", type=int, default=16, help="questions answered together")
    p.add_argument("--seed", type=int, default=0, help="seed for the data and the evaluation sample")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="STAGE.KEY=VALUE",
                   help="override a recipe value, e.g. --set 4-finetune.train.max_steps=50 (repeatable)")


def stage_overrides(out: Path, overrides: list[str]) -> dict[str, dict[str, Any]]:
    """Per-stage ``--set`` values, with every path of the recipes moved under ``out``."""
    from doctorsun.train.overrides import read_yaml

    data = out / "data"
    per: dict[str, dict[str, Any]] = {s: {"output_dir": str(out / s)} for s in STAGES}
    for prev, stage in zip(STAGES, STAGES[1:], strict=False):
        per[stage]["model"] = str(out / prev)
    per["1-text"]["data.train"] = [str(data / "text_train.jsonl")]
    per["2-vision"]["data.train"] = [str(data / "align_train.jsonl")]
    per["3-align"]["data.train"] = [str(data / "align_train.jsonl")]
    # The base model's own answers to general requests, replayed (weighted by the recipe's task_weights).
    per["4-finetune"]["data.train"] = [str(data / "instruct_train.jsonl"), str(data / "general_text.jsonl")]
    per["4-finetune"]["data.general"] = [str(data / "general.jsonl")]
    for item in overrides:
        key, sep, value = item.partition("=")
        stage, dot, rest = key.partition(".")
        if not sep or not dot or stage not in per:
            raise DoctorSunError(f"--set {item!r} must look like STAGE.KEY=VALUE with STAGE in "
                                 f"{', '.join(STAGES)}")
        per[stage][rest] = read_yaml(value) if value.strip() else None
    return per


def ensure_data(folder: Path, seed: int) -> dict:
    """SunMed-VL-mini in ``folder``: built once, reused when an earlier build with this seed is there."""
    from doctorsun.mini import build_mini
    from doctorsun.mini.build import FORMAT_VERSION

    summary_file = folder / "summary.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
        if (summary.get("seed") == seed and summary.get("format_version") == FORMAT_VERSION
                and summary.get("reasoned_answers", True)):
            log.info("reusing SunMed-VL-mini in %s", folder)
            return summary
    return build_mini(folder, seed=seed)


def test_sample(data: Path, limit: int, seed: int) -> list[dict]:
    """A seeded random sample of the held-out split (all of it when ``limit`` is 0)."""
    from doctorsun.data.io import read_records

    records, problems = read_records(data / "test.jsonl")
    if problems:
        log.warning("%d test record(s) unreadable; first: %s", len(problems), problems[0])
    if limit and limit < len(records):
        records = random.Random(seed).sample(records, limit)
    # Similar prompt lengths side by side: batches need less left padding (UTF-8 bytes follow the tokens
    # of both languages closely enough for this).
    return sorted(records, key=lambda r: len(r["conversations"][0]["value"].encode("utf-8")))


def score(engine, records, data: Path, out: Path, args, blank: bool = False) -> dict:
    from doctorsun.eval.config import EvalConfig
    from doctorsun.eval.runner import evaluate

    # Every quickstart run trains anew: earlier answers are stale, so no resume.
    # 16 tokens: a reasoned Chinese answer ("眼底照相，是") takes 12 of SmolLM2's tokens.
    config = EvalConfig(bench="sunmed-vl-mini", batch_size=args.eval_batch, max_new_tokens=16,
                        blank_image=blank,
                        seed=args.seed, resume=False)
    scores = evaluate(engine, records, config, image_root=data, out_dir=out, data_file=data / "test.jsonl",
                      model_name=engine.name)
    return {key: scores.get(key) for key, _ in HEADLINE}


def general_scores(engine, data: Path, out: Path, args) -> dict:
    """General skills of ``engine``'s LLM: ``knowledge`` (the mean of the English and Chinese everyday
    questions, MMLU / CMMLU layouts, likelihood scoring), ``open_ended`` (share of ``OPEN_PROMPTS``
    answered with more than a bare yes / no) and ``general`` (the mean of the two)."""
    from statistics import fmean

    from doctorsun.eval.benchmarks import load_benchmark
    from doctorsun.eval.config import EvalConfig
    from doctorsun.eval.runner import evaluate
    from doctorsun.mini.general_text import OPEN_PROMPTS, open_ended

    result: dict[str, float] = {}
    for bench, lang in (("mmlu", "en"), ("cmmlu", "zh")):
        loaded = load_benchmark(bench, data / "general-text" / bench)
        config = EvalConfig(bench=bench, batch_size=args.eval_batch, scoring="likelihood", seed=args.seed,
                            resume=False)
        scores = evaluate(engine, loaded.records, config, image_root=None, out_dir=out / bench,
                          data_file=loaded.data_path, model_name=engine.name, problems=loaded.problems)
        result[f"knowledge_{lang}"] = scores["mcq_accuracy"]
    answers = ask(engine, OPEN_PROMPTS, args.eval_batch, OPEN_TOKENS)
    rows = [{"lang": lang, "prompt": p, "answer": a, "open_ended": open_ended(a, lang)}
            for lang in OPEN_PROMPTS for p, a in zip(OPEN_PROMPTS[lang], answers[lang], strict=True)]
    write_json(out / "open_prompts.json", rows)
    result["knowledge"] = fmean([result["knowledge_en"], result["knowledge_zh"]])
    result["open_ended"] = fmean([float(r["open_ended"]) for r in rows])
    result["general"] = fmean([result["knowledge"], result["open_ended"]])
    return result


def ask(engine, prompts: dict[str, tuple[str, ...]], batch: int, max_new_tokens: int) -> dict[str, list[str]]:
    """Greedy answers to text-only prompts, per language, in order."""
    from doctorsun.model.chat import user_message
    from doctorsun.model.generate import GenerationSettings

    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    out: dict[str, list[str]] = {}
    for lang, items in prompts.items():
        out[lang] = []
        for start in range(0, len(items), batch):
            chunk = items[start:start + batch]
            out[lang] += engine.generate([[user_message(p, 0)] for p in chunk], [[] for _ in chunk], settings)
    return out


def write_replay(engine, data: Path, batch: int) -> int:
    """``general_text.jsonl``: the base model's own answers to ``REPLAY_PROMPTS``, mixed into instruction
    tuning so that it keeps answering general requests as it did. Returns the number of records."""
    from doctorsun.mini.general_text import REPLAY_PROMPTS, replay_records

    records = replay_records(ask(engine, REPLAY_PROMPTS, batch, REPLAY_TOKENS))
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    write_text(data / "general_text.jsonl", text)
    return len(records)


def trains_llm(recipe) -> bool:
    """Whether a stage changes the LLM (the general scores of the others equal their input's)."""
    return recipe.parts.llm.mode != "frozen"


def table(rows: dict[str, dict]) -> str:
    columns = HEADLINE + GENERAL
    cols = [label for key, label in columns if any(r.get(key) is not None for r in rows.values())]
    keys = [key for key, label in columns if label in cols]
    lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, r in rows.items():
        cells = ["-" if r.get(k) is None else f"{r[k]:.3f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from doctorsun.train.threads import calm_threads

    calm_threads()
    from doctorsun.model.generate import Engine
    from doctorsun.model.io import load_model
    from doctorsun.train.config import load_recipe, resolve_model_dir
    from doctorsun.train.stages import run_recipe
    from doctorsun.train.stages.base import load_input

    t0 = time.time()
    out = Path(args.out)
    recipes = Path(args.recipes) if args.recipes else default_recipes()
    if not recipes.is_dir():
        raise DoctorSunError(f"mini recipes not found in {recipes} (run from a source checkout, or give "
                             f"--recipes)")
    per = stage_overrides(out, args.overrides)
    loaded = {s: load_recipe(recipes / f"{s}.yaml", per[s]) for s in STAGES}
    timings: dict[str, float] = {}

    def lap(name: str, start: float) -> None:
        timings[name] = round(time.time() - start, 1)
        log.info("%s done in %.0f s (total %.0f s)", name, timings[name], time.time() - t0)

    start = time.time()
    data = out / "data"
    ensure_data(data, args.seed)
    records = test_sample(data, args.eval_limit, args.seed)
    lap("data", start)

    start = time.time()
    built = load_input(loaded["1-text"])
    base = Engine(*built, name="untrained")
    results = {"untrained": {**score(base, records, data, out / "eval" / "before", args),
                             **general_scores(base, data, out / "eval" / "before" / "general", args)}}
    n_replay = write_replay(base, data, args.eval_batch)
    log.info("%d replay answers of the base model in %s", n_replay, data / "general_text.jsonl")
    del base
    lap("eval before", start)

    for stage in STAGES:
        start = time.time()
        run_recipe(loaded[stage], start=built if stage == "1-text" else None)
        built = None
        lap(stage, start)
        if stage != STAGES[-1] and trains_llm(loaded[stage]):
            start = time.time()
            model_dir = resolve_model_dir(out / stage)
            results[f"after {stage}"] = general_scores(Engine(*load_model(model_dir), name=str(model_dir)), data,
                                                       out / "eval" / stage / "general", args)
            lap(f"eval {stage}", start)

    start = time.time()
    final = resolve_model_dir(out / STAGES[-1])
    engine = Engine(*load_model(final), name=str(final))
    results["trained"] = {**score(engine, records, data, out / "eval" / "after", args),
                          **general_scores(engine, data, out / "eval" / "after" / "general", args)}
    results["trained, blank images"] = score(engine, records, data, out / "eval" / "blank", args, blank=True)
    lap("eval after", start)
    base_general = results["untrained"]["general"]
    for row in results.values():
        if row.get("general") is not None and base_general:
            row["retention"] = row["general"] / base_general

    total = time.time() - t0
    report = {"results": results, "n_questions": len(records), "timings_s": timings,
              "total_s": round(total, 1),
              "model": str(final)}
    write_json(out / "quickstart.json", report)
    print()
    print(f"SunMed-VL-mini held-out questions ({len(records)}, English and Chinese), and general skills "
          f"(everyday knowledge, open requests):")
    print(table(results))
    print()
    print("stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    print(f"quickstart done in {total / 60:.1f} min; trained model in {final}")
    return 0
