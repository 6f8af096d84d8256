"""SunMed-VL data: medical image IO, records, converters, mixing and the mini set."""

from doctorsun.data.image import load_image

__all__ = ["load_image"]
