"""Training engine: the Ray Train worker loop, checkpoints, validation and tracking."""
