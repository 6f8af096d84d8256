"""Text pretraining, alignment and instruction tuning: next-token loss on assistant tokens.

The three differ only in their recipes: which parts train (``text``: the LLM; ``align``: the
projector; ``finetune``: projector + LLM, optionally LoRA on the vision encoder) and what data they
read (plain medical text, packed; captions; questions and answers).
"""

from __future__ import annotations

import logging

from doctorsun.train.stages.base import Stage, load_input

log = logging.getLogger(__name__)


class LanguageStage(Stage):
    """A stage trained with the language-model loss."""

    def setup(self) -> None:
        from doctorsun.train.data import Collator
        from doctorsun.train.parts import apply_parts
        from doctorsun.train.prepare import build_sample_set
        from doctorsun.train.trainer import JsonlLog, StageTrainer, training_arguments

        recipe = self.recipe
        model, self.processor = load_input(recipe, self.start)
        if recipe.data.streaming:
            from doctorsun.train.streaming import stream_set

            dataset = stream_set(recipe.data, self.processor, model.config.image_seq_length, recipe.train.seed,
                                 recipe.train.max_steps)
            self.problems, self.data_report, lengths = [], {"streaming": True}, None
            log.info("%s stage: streaming %s", recipe.stage, ", ".join(recipe.data.train + recipe.data.general))
        else:
            dataset, self.problems, self.data_report = build_sample_set(
                recipe.data, self.processor, model.config.image_seq_length, recipe.train.seed)
            lengths = dataset.lengths
            log.info("%s stage: %d rows, %d tokens, %d skipped", recipe.stage, len(dataset), dataset.tokens(),
                     len(self.problems))
        self.model = apply_parts(model, recipe.parts)
        self.model.train()
        self.trainer = StageTrainer(
            model=self.model,
            args=training_arguments(recipe, self.out),
            train_dataset=dataset,
            data_collator=Collator(self.processor.tokenizer.pad_token_id, recipe.data.padding_free,
                                   recipe.data.loss_reduction),
            callbacks=[JsonlLog(self.out / "log.jsonl", recipe.stage)],
            recipe=recipe,
            lengths=lengths,
        )
