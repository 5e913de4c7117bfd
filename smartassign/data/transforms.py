"""Paired augmentation (albumentations) of degraded / clean training pairs.

The same random crop and horizontal flip hit the degraded input and its clean target: the
target is passed as an ``additional_targets`` image of one ``Compose``. No photometric
transform is used (it would change the target too). Each call also returns the parameters
it applied; :func:`crop_box` turns them into the crop's box in the whole image (for veil
removal, smartassign/model/veil.py).
"""

from __future__ import annotations

import os

# albumentations checks PyPI for a newer version on import (a blocking request in every
# process, DataLoader workers included) unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np


def paired_train_transform(crop_size: int, *, pad: bool, seed: int) -> A.Compose:
    """Random ``crop_size`` crop and horizontal flip, shared by the pair.

    No vertical flip or rot90: rain and snow fall downwards and haze thickens towards the top
    (the horizon), so turned images show physically impossible degradations that the model
    would have to learn as well; test images are never turned.

    With ``pad``, images smaller than the crop are reflect-padded first; without it they
    must have been refused earlier (the dataset checks).
    """
    steps: list[A.BasicTransform] = []
    if pad:
        steps.append(
            A.PadIfNeeded(
                min_height=crop_size, min_width=crop_size, border_mode=cv2.BORDER_REFLECT_101
            )
        )
    steps += [
        A.RandomCrop(height=crop_size, width=crop_size),
        A.HorizontalFlip(p=0.5),
    ]
    return A.Compose(
        steps, additional_targets={"target": "image"}, seed=seed, save_applied_params=True
    )


def crop_box(
    applied: Sequence[tuple[str, dict[str, Any]]], height: int, width: int
) -> tuple[np.ndarray, bool]:
    """``(box, flipped)`` of one :func:`paired_train_transform` call on a ``height x width``
    image: ``box`` is the crop's ``x0, y0, x1, y1`` as fractions of the image's width and
    height (beyond ``[0, 1]`` where it covers padding), in the image as flipped when
    ``flipped``."""
    params = dict(applied)
    pad = params.get("PadIfNeeded", {})
    left, top = pad.get("pad_left", 0), pad.get("pad_top", 0)
    x0, y0, x1, y1 = params["RandomCrop"]["crop_coords"]
    box = np.array(
        [(x0 - left) / width, (y0 - top) / height, (x1 - left) / width, (y1 - top) / height],
        dtype=np.float32,
    )
    flipped = "HorizontalFlip" in params
    if flipped:
        box = np.array([1 - box[2], box[1], 1 - box[0], box[3]], dtype=np.float32)
    return box, flipped
