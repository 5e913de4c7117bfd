"""Veil removal: an addition to the paper's network, in front of its encoder.

Rain accumulation and snow veiling are modelled as ``I = J (1 - v) + A v`` (Li et al.,
CVPR 2019; the synthetic data of this project, docs/data.md): a smooth veil ``v`` over the
image towards an atmospheric light ``A``. The paper's residual decoders subtract what they
see locally (the paper notes that residual deraining models leave this haze-like effect,
Sec. 2), and a small training crop cannot tell a veiled image from a pale one: trained on
crops, the decoders hedge and darken every image by the mean veil of the training data.

``VeilRemoval`` looks at the whole image instead. A ``CONTEXT_SIDE`` thumbnail of the
whole input (area average; plus its dark channel, which a veil lifts) goes through a small
strided CNN with a global-average branch to a coarse ``GRID x GRID`` map of ``v`` (at most
``MAX_VEIL``) and ``A`` (RGB). The map is sampled bilinearly at the pixels of the region
being restored and inverted, ``J = (I - A v) / (1 - v)``, before the encoder. A training
crop brings the thumbnail of the image it was cut from and its box in that image
(``box``: ``x0, y0, x1, y1`` as fractions of the width and height), so it is dehazed as
the whole image will be at inference; without a context the input is its own, box
``(0, 0, 1, 1)``. The last layer starts at zero: at first ``v`` is about 0.01 everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CONTEXT_SIDE = 64
"""Side of the thumbnail the veil is estimated from (pixels)."""

GRID = CONTEXT_SIDE // 8
"""Side of the coarse veil map: three stride-2 convolutions of the thumbnail."""

MAX_VEIL = 0.5
"""Upper bound of ``v``: the inversion multiplies by at most ``1 / (1 - MAX_VEIL)``."""

_START_BIAS = (-4.0, 1.5, 1.5, 1.5)
"""Initial logits of ``v`` (0.5 * sigmoid(-4) = 0.009) and ``A`` (sigmoid(1.5) = 0.82)."""


def _window_sums(values: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums of ``values`` over the ``CONTEXT_SIDE`` windows of ``adaptive_avg_pool2d``
    along ``dim`` (window ``i`` spans ``floor(i n / S)`` to ``ceil((i + 1) n / S)``), and
    the windows' lengths, from a running sum: plain tensor operations, so the exported
    graph follows any input size (an adaptive pooling is traced for one size only)."""
    length = values.shape[dim]
    index = torch.arange(CONTEXT_SIDE, device=values.device)
    starts = index * length // CONTEXT_SIDE
    ends = ((index + 1) * length + CONTEXT_SIDE - 1) // CONTEXT_SIDE
    running = values.cumsum(dim)
    running = torch.cat([torch.zeros_like(running.narrow(dim, 0, 1)), running], dim=dim)
    sums = running.index_select(dim, ends) - running.index_select(dim, starts)
    return sums, (ends - starts).to(values.dtype)


def veil_context(image: torch.Tensor) -> torch.Tensor:
    """``B x 3 x CONTEXT_SIDE x CONTEXT_SIDE`` area-averaged thumbnail of ``B x 3 x H x W``:
    the windows and values of ``adaptive_avg_pool2d(image, CONTEXT_SIDE)``, computed so
    that it exports to ONNX for any size (:func:`_window_sums`).

    The data loader calls this on the whole image a training crop comes from, the network
    on its own input; both give the same thumbnail of the same image.
    """
    centred = image - 0.5  # running sums of values around 0 keep float32 precise
    rows, row_lengths = _window_sums(centred, dim=2)
    both, col_lengths = _window_sums(rows, dim=3)
    return both / (row_lengths[:, None] * col_lengths[None, :]) + 0.5


def whole_box(image: torch.Tensor) -> torch.Tensor:
    """``B x 4`` boxes ``(0, 0, 1, 1)``: every sample is its whole image."""
    return image.new_tensor([0.0, 0.0, 1.0, 1.0]).expand(image.shape[0], 4)


class VeilRemoval(nn.Module):
    """Estimate the veil of the whole image and invert it on a region (module docstring)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(5, width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Conv2d(2 * width, 4, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor(_START_BIAS))

    def coarse_map(self, context: torch.Tensor) -> torch.Tensor:
        """``B x 4 x GRID x GRID`` logits of ``v`` and ``A`` from a thumbnail (any size is
        first brought to ``CONTEXT_SIDE``)."""
        thumb = veil_context(context)
        dark = thumb.amin(dim=1, keepdim=True)
        darkest = -F.max_pool2d(-dark, 5, stride=1, padding=2)
        features = self.features(torch.cat([thumb, dark, darkest], dim=1))
        whole = features.mean(dim=(2, 3), keepdim=True).expand_as(features)
        return self.head(torch.cat([features, whole], dim=1))

    @staticmethod
    def sample(coarse: torch.Tensor, box: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The coarse map at the ``height x width`` pixel centres of each sample's box."""
        batch = coarse.shape[0]
        x0, y0, x1, y1 = box.to(coarse.dtype).unbind(dim=1)
        cols = (torch.arange(width, dtype=coarse.dtype, device=coarse.device) + 0.5) / width
        rows = (torch.arange(height, dtype=coarse.dtype, device=coarse.device) + 0.5) / height
        grid_x = (x0[:, None] + (x1 - x0)[:, None] * cols[None]) * 2 - 1
        grid_y = (y0[:, None] + (y1 - y0)[:, None] * rows[None]) * 2 - 1
        grid = torch.stack(
            [
                grid_x[:, None, :].expand(batch, height, width),
                grid_y[:, :, None].expand(batch, height, width),
            ],
            dim=-1,
        )
        return F.grid_sample(
            coarse, grid, mode="bilinear", padding_mode="border", align_corners=False
        )

    def forward(
        self,
        image: torch.Tensor,
        context: torch.Tensor | None = None,
        box: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``J = (I - A v) / (1 - v)`` on ``image``, the veil estimated from ``context``
        (default: the image itself) and sampled at ``box`` (default: the whole of it)."""
        if context is None:
            context = image
            box = whole_box(image)
        elif box is None:
            raise ValueError("a veil context needs the box of the input in it")
        logits = self.sample(self.coarse_map(context), box, *image.shape[-2:])
        veil = MAX_VEIL * torch.sigmoid(logits[:, :1])
        light = torch.sigmoid(logits[:, 1:])
        return (image - veil * light) / (1 - veil)
