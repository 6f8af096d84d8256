"""SunMed-VL data: medical image IO, records, converters, mixing and the mini set."""
