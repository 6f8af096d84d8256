"""Model assembly, processor and chat templates, checkpoint IO and generation."""

from doctorsun.model.assemble import build_model
from doctorsun.model.config import BuildConfig, ProjectorConfig, VisionConfig
from doctorsun.model.io import load_model, save_model

__all__ = ["BuildConfig", "ProjectorConfig", "VisionConfig", "build_model", "load_model", "save_model"]
