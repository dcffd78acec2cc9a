"""Models: the backbone factory, the roadwork classifier (frozen / LoRA / full), Lightning training, ExPLoRA."""
