"""Veil removal (smartassign/model/veil.py): the inversion, and crops dehazed as their image."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from smartassign.model.veil import MAX_VEIL, VeilRemoval, veil_context


def _trained_looking(seed: int = 0) -> VeilRemoval:
    """A veil removal with random weights everywhere (its last layer starts at zero)."""
    torch.manual_seed(seed)
    module = VeilRemoval(width=8)
    nn.init.normal_(module.head.weight, std=0.3)
    return module.eval()


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_a_known_uniform_veil_is_inverted_exactly():
    veil, light = 0.3, torch.tensor([0.9, 0.85, 0.8])
    module = VeilRemoval(width=4)
    with torch.no_grad():
        module.head.bias.copy_(
            torch.tensor([_logit(veil / MAX_VEIL), *(_logit(float(a)) for a in light)])
        )
    clear = torch.rand(2, 3, 40, 56)
    veiled = clear * (1 - veil) + light[None, :, None, None] * veil
    torch.testing.assert_close(module(veiled), clear, atol=1e-5, rtol=0)


def test_a_crop_with_its_context_and_box_is_dehazed_as_the_whole_image_dehazes_it():
    module = _trained_looking()
    image = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        whole = module(image)
        context = veil_context(image)
        for top, left, side in [(0, 0, 32), (40, 72, 32), (64, 96, 32), (10, 20, 48)]:
            crop = image[..., top : top + side, left : left + side]
            box = torch.tensor([[left / 128, top / 96, (left + side) / 128, (top + side) / 96]])
            torch.testing.assert_close(
                module(crop, context, box),
                whole[..., top : top + side, left : left + side],
                atol=1e-5,
                rtol=0,
            )
        # a flipped training crop (the data loader's box and thumbnail) is a crop of the
        # mirrored image
        mirrored = module(image.flip(-1))
        mirrored_box = torch.tensor([[1 - 104 / 128, 40 / 96, 1 - 72 / 128, 72 / 96]])
        torch.testing.assert_close(
            module(image[..., 40:72, 72:104].flip(-1), context.flip(-1), mirrored_box),
            mirrored[..., 40:72, 128 - 104 : 128 - 72],
            atol=1e-5,
            rtol=0,
        )


def test_the_estimate_depends_on_the_whole_image_not_only_the_crop():
    module = _trained_looking(seed=1)
    image = torch.rand(1, 3, 64, 64)
    veiled_elsewhere = image.clone()
    veiled_elsewhere[..., 32:, :] = 0.5 * veiled_elsewhere[..., 32:, :] + 0.45
    box = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    crop = image[..., :32, :32]
    with torch.no_grad():
        alone = module(crop, veil_context(image), box)
        in_veiled_image = module(crop, veil_context(veiled_elsewhere), box)
    assert not torch.allclose(alone, in_veiled_image, atol=1e-4)


@pytest.mark.parametrize(("height", "width"), [(256, 256), (37, 1000), (1500, 1100), (16, 20)])
def test_the_thumbnail_is_the_adaptive_average_pool(height, width):
    image = torch.rand(1, 3, height, width)
    torch.testing.assert_close(
        veil_context(image), F.adaptive_avg_pool2d(image, 64), atol=2e-6, rtol=0
    )


def test_a_context_without_a_box_is_refused():
    module = VeilRemoval(width=4)
    with pytest.raises(ValueError, match="needs the box"):
        module(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 64, 64))
