"""Reading other projects' weight files safely and writing sharded safetensors, tensor by tensor.

safetensors only by default: a ``.bin``/``.pt``/``.pth`` file is a pickle that can run code when loaded.
With ``allow_pickle`` it is read with ``torch.load(weights_only=True)``, which refuses anything but tensors.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch

from doctorsun.errors import DoctorSunError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
MAX_SHARD_BYTES = 4 * 1024**3


class WeightFiles:
    """The tensors stored in one dir's weight files, read on demand (``keys()``, ``[name]``)."""

    def __init__(self, directory: str | Path, allow_pickle: bool = False, what: str = "checkpoint"):
        from safetensors import safe_open

        self.directory = Path(directory)
        self._where: dict[str, Path] = {}
        self._loaded: dict[str, torch.Tensor] = {}
        files = sorted(self.directory.glob("*.safetensors"))
        if files:
            for f in files:
                try:
                    with safe_open(f, framework="pt") as handle:
                        self._where.update(dict.fromkeys(handle.keys(), f))
                except Exception as exc:
                    raise DoctorSunError(f"cannot read {f}: {exc}") from None
            return
        pickles = (
            sorted(p for p in self.directory.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
            if self.directory.is_dir()
            else []
        )
        if not pickles:
            raise DoctorSunError(f"{what} {self.directory} has no weight files (*.safetensors)")
        if not allow_pickle:
            raise DoctorSunError(
                f"{what} {self.directory} holds only pickle weights ({pickles[0].name}), which can run code "
                "when loaded; convert them to safetensors, or pass --allow-pickle if you trust the source "
                "(they are then read with torch.load(weights_only=True))"
            )
        for f in pickles:
            try:
                state = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:
                raise DoctorSunError(f"cannot read {f} (only plain tensors are accepted): {exc}") from None
            if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                state = state["state_dict"]
            if not isinstance(state, dict):
                raise DoctorSunError(f"{f} does not hold a dict of tensors")
            self._loaded.update({k: v for k, v in state.items() if isinstance(v, torch.Tensor)})

    def keys(self) -> list[str]:
        return list(self._where) + list(self._loaded)

    def __contains__(self, name: str) -> bool:
        return name in self._where or name in self._loaded

    def __getitem__(self, name: str) -> torch.Tensor:
        if name in self._loaded:
            return self._loaded[name]
        from safetensors import safe_open

        with safe_open(self._where[name], framework="pt") as handle:
            return handle.get_tensor(name)

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self._loaded:
            return tuple(self._loaded[name].shape)
        from safetensors import safe_open

        with safe_open(self._where[name], framework="pt") as handle:
            return tuple(handle.get_slice(name).get_shape())


def write_sharded(
    tensors: Iterable[tuple[str, torch.Tensor]], out: Path, max_shard_bytes: int = MAX_SHARD_BYTES
) -> list[str]:
    """Write ``(name, tensor)`` pairs as ``model.safetensors`` (or numbered shards with an index), holding
    at most one shard in memory. Returns the names written."""
    from safetensors.torch import save_file

    current: dict[str, torch.Tensor] = {}
    files: list[Path] = []
    names: list[str] = []
    size = total = 0
    weight_map: dict[str, int] = {}

    def flush() -> None:
        nonlocal current, size
        path = out / f"shard-{len(files):05d}.safetensors"
        save_file(current, path, metadata={"format": "pt"})
        files.append(path)
        current, size = {}, 0

    for name, tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > max_shard_bytes:
            flush()
        current[name] = tensor.contiguous()
        weight_map[name] = len(files)
        names.append(name)
        size += nbytes
        total += nbytes
    if current or not files:
        flush()
    if len(files) == 1:
        files[0].rename(out / "model.safetensors")
        return names
    final = [f"model-{i + 1:05d}-of-{len(files):05d}.safetensors" for i in range(len(files))]
    for f, name in zip(files, final, strict=True):
        f.rename(out / name)
    index = {"metadata": {"total_size": total}, "weight_map": {k: final[i] for k, i in weight_map.items()}}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return names


ENGINE_TOWERS = ("clip_vision_model", "siglip_vision_model")
"""Vision towers whose weights are saved under ``vision_model.`` for serving engines."""
TOWER_PREFIXES = ("vision_tower.", "model.vision_tower.")


def engine_key(name: str) -> str:
    """``vision_tower.X`` -> ``vision_tower.vision_model.X`` (``model.vision_tower.`` alike); other names
    unchanged."""
    for prefix in TOWER_PREFIXES:
        if name.startswith(prefix) and not name.startswith(prefix + "vision_model."):
            return f"{prefix}vision_model.{name[len(prefix):]}"
    return name


def aspect_ratio(preprocessor: dict) -> str:
    """The ``image_aspect_ratio`` (LLaVA's and SGLang's config key) that a saved image processor implements:
    ``pad`` when it pads to a square with the mean colour first (``LlavaImageProcessor`` with ``do_pad``),
    else ``square`` (the processor's own resize, and crop if it crops, with nothing before it)."""
    return "pad" if preprocessor.get("do_pad") else "square"


def saved_image_processor(folder: str | Path) -> dict | None:
    """The image processor settings of a saved folder: ``preprocessor_config.json``, or the
    ``image_processor`` of the ``processor_config.json`` that transformers 5 writes; ``None`` without either."""
    folder = Path(folder)
    if (folder / "preprocessor_config.json").is_file():
        return json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
    if (folder / "processor_config.json").is_file():
        return json.loads((folder / "processor_config.json").read_text(encoding="utf-8")).get("image_processor")
    return None


def engine_config(folder: str | Path) -> bool:
    """Write into a saved folder's ``config.json`` what SGLang reads beyond transformers' own keys: the
    ``image_aspect_ratio`` that the folder's image processor implements (``aspect_ratio``), so that SGLang
    prepares images as DoctorSun does (``engine_layout`` calls it). Returns whether it wrote."""
    from doctorsun.files import atomic_path

    folder = Path(folder)
    config_file, pre = folder / "config.json", saved_image_processor(folder)
    if not config_file.is_file() or pre is None:
        return False
    config = json.loads(config_file.read_text(encoding="utf-8"))
    want = aspect_ratio(pre)
    if config.get("image_aspect_ratio") == want:
        return False
    config["image_aspect_ratio"] = want
    with atomic_path(config_file) as tmp:
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return True


def engine_layout(folder: str | Path) -> int:
    """Rename the vision tower's weights of a saved LLaVA folder to ``vision_tower.vision_model.*``.

    transformers 5 saves a CLIP/SigLIP tower as ``vision_tower.embeddings.*``, ``vision_tower.encoder.*``;
    vLLM's and SGLang's LLaVA loaders know only the ``vision_tower.vision_model.*`` names of transformers 4.
    transformers 5 loads the renamed files identically (its CLIP/SigLIP loading drops a ``vision_model.``
    prefix), so one folder serves both. Only the shards holding tower weights are rewritten (atomically);
    the index follows. Returns how many tensors were renamed (0 for other towers or an already renamed folder).
    The config also gets the keys SGLang reads (``engine_config``): call it once the processor is saved.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from doctorsun.files import atomic_path

    folder = Path(folder)
    if not (folder / "config.json").is_file():  # an adapter folder: peft names its own weights
        return 0
    engine_config(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if (config.get("vision_config") or {}).get("model_type") not in ENGINE_TOWERS:
        return 0
    renamed = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            keys, metadata = list(f.keys()), f.metadata()
            if all(engine_key(k) == k for k in keys):
                continue
            tensors = {engine_key(k): f.get_tensor(k) for k in keys}
        renamed += sum(engine_key(k) != k for k in keys)
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file(tensors, tmp, metadata=metadata)
        del tensors
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text(encoding="utf-8"))
        data["weight_map"] = {engine_key(k): v for k, v in data["weight_map"].items()}
        with atomic_path(index) as tmp:
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return renamed
