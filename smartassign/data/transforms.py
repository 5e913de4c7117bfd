"""Paired augmentation (albumentations) of degraded / clean training pairs.

The same random crop and horizontal flip hit the degraded input and its clean target: the
target is passed as an ``additional_targets`` image of one ``Compose``. No photometric
transform is used (it would change the target too).
"""

from __future__ import annotations

import os

# albumentations checks PyPI for a newer version on import (a blocking request in every
# process, DataLoader workers included) unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2


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
    return A.Compose(steps, additional_targets={"target": "image"}, seed=seed)
