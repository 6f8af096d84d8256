"""Foreign checkpoint layouts as declarative key maps: how each tensor name of the original LLaVA
release, XTuner's LLaVA output or a CLIP/SigLIP checkpoint becomes a name of transformers'
``LlavaForConditionalGeneration`` (as torchtune's ``_convert_weights.py`` and transformers' conversion
scripts keep them: tables, not if-chains).

Sources: https://github.com/haotian-liu/LLaVA ``llava/model/llava_arch.py`` (``mm_projector`` is a
``Sequential`` of Linear, GELU, Linear: indices 0 and 2; the tower is ``vision_tower.vision_tower``);
XTuner ``xtuner/model/llava.py`` (``projector.model.{0,2}``, the LLM saved as a plain causal LM).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from doctorsun.errors import DoctorSunError

SKIPPED_BUFFERS = (".inv_freq", "position_ids")
"""Non-persistent buffers some checkpoints carry: recomputed by the model, never loaded."""
PROJECTOR = "model.multi_modal_projector."
TOWER = "model.vision_tower."


@dataclass(frozen=True)
class KeyMap:
    """Prefix rules, tried in order: the first whose source prefix starts a key renames that prefix.
    A rule with target ``None`` refuses the key; keys no rule matches are refused too."""

    what: str
    """What the keys belong to, for error messages."""
    rules: tuple[tuple[str, str | None], ...]
    """``(source prefix, target prefix | None)``."""
    skip: tuple[str, ...] = ()
    """Prefixes (or whole names) of tensors that are left out, e.g. a CLIP checkpoint's text half."""

    def target(self, key: str) -> str | None:
        """The new name of ``key``; ``None`` when it is left out."""
        if key.endswith(SKIPPED_BUFFERS) or key.startswith(self.skip):
            return None
        for source, target in self.rules:
            if key.startswith(source):
                if target is None:
                    break
                return target + key[len(source):]
        raise DoctorSunError(f"unexpected tensor {key} in {self.what}")

    def rename(self, keys: Iterable[str]) -> dict[str, str]:
        """``{new name: old name}`` for every key that is kept."""
        out: dict[str, str] = {}
        for key in keys:
            new = self.target(key)
            if new is not None:
                out[new] = key
        return out


def _projector(*prefixes: str) -> tuple[tuple[str, str | None], ...]:
    """mlp2x_gelu's two linear layers sit at indices 0 and 2 of a Sequential; any other index is refused."""
    rules: list[tuple[str, str | None]] = []
    for prefix in prefixes:
        rules += [(f"{prefix}0.", f"{PROJECTOR}linear_1."), (f"{prefix}2.", f"{PROJECTOR}linear_2."),
                  (prefix, None)]
    return tuple(rules)


LLAVA = KeyMap(
    "a LLaVA checkpoint",
    _projector("model.mm_projector.")
    + (
        ("model.vision_tower.vision_tower.vision_model.", TOWER),
        ("model.vision_tower.vision_tower.", TOWER),
        ("model.", "model.language_model."),
        ("lm_head.", "lm_head."),
    ),
)
"""The original LLaVA layout (``LlavaLlamaForCausalLM``), as Doctor Sun's weights are released."""

CAUSAL_LM = KeyMap("an LLM checkpoint", (("model.", "model.language_model."), ("lm_head.", "lm_head.")))
"""A plain transformers causal LM (XTuner saves its LLM this way)."""

XTUNER_PROJECTOR = KeyMap("an XTuner projector", _projector("projector.model.", "projector.", "model.", ""))
"""XTuner's ``projector/`` weights (``ProjectorModel``: ``model.0`` and ``model.2``)."""

VISION_TOWER = KeyMap(
    "a vision tower",
    (("vision_model.", TOWER), ("", TOWER)),
    skip=("text_model.", "text_projection", "visual_projection", "logit_scale", "logit_bias"),
)
"""A CLIP/SigLIP checkpoint (vision-only or full): its vision half."""
