"""DoctorSun: build, train, evaluate and serve bilingual medical multimodal LLMs."""

__version__ = "0.1.0"

from doctorsun.errors import DoctorSunError  # noqa: E402

__all__ = ["DoctorSunError", "__version__"]
