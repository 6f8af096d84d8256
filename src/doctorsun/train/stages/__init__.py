"""The four stages. Text pretraining, alignment and instruction tuning are one language-model stage
whose recipes differ in their parts and data; vision adaptation trains the vision encoder alone."""

from __future__ import annotations

from doctorsun.train.config import Recipe
from doctorsun.train.stages.base import Stage


def stage_for(recipe: Recipe, start=None) -> Stage:
    """The stage object that runs ``recipe`` (from ``start = (model, processor)`` when given)."""
    if recipe.stage == "vision":
        from doctorsun.train.stages.vision import VisionStage

        return VisionStage(recipe, start)
    from doctorsun.train.stages.language import LanguageStage

    return LanguageStage(recipe, start)


def run_recipe(recipe: Recipe, resume: bool = False, start=None, force_resume: bool = False) -> dict:
    """Set up, train and save one stage; returns its summary. ``force_resume`` resumes even from a
    checkpoint whose recipe, data or starting model differ from this run's."""
    return stage_for(recipe, start).run(resume=resume, force_resume=force_resume)


__all__ = ["Stage", "run_recipe", "stage_for"]
