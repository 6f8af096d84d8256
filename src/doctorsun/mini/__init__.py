"""SunMed-VL-mini: a small bilingual medical image-text set built from images that installed packages ship."""

from doctorsun.mini.build import build_mini

__all__ = ["build_mini"]
