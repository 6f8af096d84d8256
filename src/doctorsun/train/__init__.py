"""Training: one entry per stage on the HF Trainer / accelerate; recipes as YAML."""
