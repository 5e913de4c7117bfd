"""Conversions between 8-bit ``H x W x 3`` pixels and float ``3 x H x W`` tensors in [0, 1]."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``uint8`` ``H x W x 3`` -> ``float32`` ``3 x H x W`` in ``[0, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float().div_(255.0)


def to_pixels(image: torch.Tensor) -> np.ndarray:
    """``3 x H x W`` in ``[0, 1]`` (any float dtype, any device) -> ``uint8`` ``H x W x 3``,
    clamped and rounded to the nearest level."""
    levels = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return levels.permute(1, 2, 0).cpu().numpy()
