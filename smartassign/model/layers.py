"""Building blocks of the SmartAssign encoder (paper Sec. 3.2).

- :class:`ChannelGate`: ``x * Gate(FC_2(Pool(x)))``, the gate shared by Eq. 9 and Eq. 11.
- :class:`SpatialAttention`: the SAM of Eq. 5.
- :class:`WindowSelfAttention`: MSA with Eq. 8 on (shifted) windows of the token grid.
- :class:`GLSFViTBlock`: the GLSF-ViT block of Eq. 7-10.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

GateName = Literal["silu", "sigmoid"]


OPEN_GATE_BIAS = {"silu": 1.2785, "sigmoid": 2.0}
"""Initial ``FC_2`` bias per gate activation: SiLU(1.2785) = 1.0, sigmoid(2.0) = 0.88."""


class ChannelGate(nn.Module):
    """Channel gate ``x * Gate(FC_2(Pool(x)))`` (Eq. 9 lower line, Eq. 11 inner term).

    Average pooling gives one value per channel, two fully-connected layers (bottleneck
    ``channels // reduction``) map it to one gate per channel, and the gate activation
    (SiLU in the paper, sigmoid selectable) scales each channel of ``x``.

    The paper does not say how the gate starts. With default initialisation ``FC_2`` outputs
    values near 0, where SiLU is near 0 too, so every channel would start almost closed and
    the knowledge tensors (and the recognition head reading them) would carry almost no
    signal for the first hundreds of steps. The bias of ``FC_2`` therefore starts at the value
    where the gate is open (SiLU 1, sigmoid 0.88); training then closes what is not needed.
    """

    def __init__(self, channels: int, reduction: int = 4, gate: GateName = "silu") -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.activation = nn.SiLU() if gate == "silu" else nn.Sigmoid()
        nn.init.constant_(self.fc2.bias, OPEN_GATE_BIAS[gate])

    def gate_values(self, pooled: torch.Tensor) -> torch.Tensor:
        """The per-channel gates, ``B x C``, for ``Pool(x)``, the ``B x C`` channel means."""
        return self.activation(self.fc2(F.relu(self.fc1(pooled))))

    def forward(
        self, x: torch.Tensor, mean: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gated ``x`` and the gates (``B x C``), so callers can report which atoms pass.

        ``mean`` (``1 x C``) replaces ``Pool(x)``: the channel means of the whole image
        when ``x`` is one tile of it (tiled inference)."""
        pooled = x.mean(dim=(2, 3)) if mean is None else mean.expand(x.shape[0], -1)
        gates = self.gate_values(pooled)
        return x * gates[:, :, None, None], gates


class SpatialAttention(nn.Module):
    """Spatial Attention Module, Eq. 5: ``F_sam = sigmoid(Conv_3(F_p)) * F_p``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 3, padding=1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.convs(features)) * features


@lru_cache(maxsize=32)
def _shift_mask(
    height: int, width: int, window: int, shift: int, device: torch.device
) -> torch.Tensor:
    """Boolean mask (``nW x N x N``, True = may attend) for cyclically shifted windows.

    After ``torch.roll`` by ``-shift``, windows at the bottom/right border hold tokens
    from opposite image borders; they may only attend within their own region. Built on
    ``device`` (no copy from the host per forward pass, no CPU work in a compiled graph).
    """
    regions = torch.zeros(height, width, dtype=torch.int64, device=device)
    label = 0
    for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for cols in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            regions[rows, cols] = label
            label += 1
    windows = (
        regions.view(height // window, window, width // window, window)
        .permute(0, 2, 1, 3)
        .reshape(-1, window * window)
    )
    return windows[:, :, None] == windows[:, None, :]


class WindowSelfAttention(nn.Module):
    """Multi-head self-attention (Eq. 8) on non-overlapping windows of the token grid.

    Global attention over all ``h*w`` tokens grows quadratically with image size; windows
    of ``window x window`` tokens keep memory linear, and shifting the windows by half in
    every other block lets information cross window borders (as in Swin). ``window = 0``
    gives global attention. Computed with ``scaled_dot_product_attention``.
    """

    def __init__(self, dim: int, num_heads: int, window: int, shift: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.shift = shift
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens``: ``B x h x w x d`` with ``h`` and ``w`` multiples of the window."""
        batch, height, width, dim = tokens.shape
        window_h = self.window or height
        window_w = self.window or width
        shift = self.window // 2 if self.shift and self.window and height > self.window else 0
        if shift and width <= self.window:
            shift = 0
        if shift:
            tokens = torch.roll(tokens, shifts=(-shift, -shift), dims=(1, 2))
        grid_h, grid_w = height // window_h, width // window_w
        windows = (
            tokens.view(batch, grid_h, window_h, grid_w, window_w, dim)
            .permute(0, 1, 3, 2, 4, 5)
            .reshape(batch, grid_h * grid_w, window_h * window_w, dim)
        )
        head_dim = dim // self.num_heads
        qkv = self.qkv(windows).view(
            batch, grid_h * grid_w, window_h * window_w, 3, self.num_heads, head_dim
        )
        query, key, value = (
            qkv.select(3, index).transpose(2, 3).contiguous() for index in range(3)
        )
        mask = None
        if shift:
            mask = _shift_mask(height, width, self.window, shift, tokens.device)[:, None]
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        attended = self.proj(attended.transpose(2, 3).reshape(windows.shape))
        out = (
            attended.view(batch, grid_h, grid_w, window_h, window_w, dim)
            .permute(0, 1, 3, 2, 4, 5)
            .reshape(batch, height, width, dim)
        )
        if shift:
            out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
        return out


class GLSFViTBlock(nn.Module):
    """Gated Long and Short range feature Fusion ViT block (Eq. 7-10).

    Upper branch (Eq. 7-8): ``F_msa = MSA(LN(F_pe)) + F_pe``; ``F_mlp = MLP(LN(F_msa)) + F_msa``.
    Lower branch (Eq. 9): ``F_cv = Conv(LN(F_pe))``; ``F_local = F_cv * Gate(FC_2(Pool(F_cv)))``.
    Output (Eq. 10): ``F_glf = F_mlp + F_local``. ``gated_cnn=False`` drops the lower branch
    (ablation V3).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        window: int,
        shift: bool,
        gate: GateName,
        gate_reduction: int,
        gated_cnn: bool = True,
    ) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = WindowSelfAttention(dim, num_heads, window, shift)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = max(1, round(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.gated_cnn = gated_cnn
        if gated_cnn:
            self.norm_conv = nn.LayerNorm(dim)
            self.conv = nn.Conv2d(dim, dim, 3, padding=1)
            self.conv_gate = ChannelGate(dim, gate_reduction, gate)

    def gate_input(self, tokens: torch.Tensor) -> torch.Tensor:
        """``F_cv = Conv(LN(F_pe))`` of Eq. 9, ``B x d x h x w``: what the gate pools."""
        return self.conv(self.norm_conv(tokens).permute(0, 3, 1, 2))

    def forward(self, tokens: torch.Tensor, gate_mean: torch.Tensor | None = None) -> torch.Tensor:
        """``tokens``: ``B x h x w x d`` (channels last). ``gate_mean``: the whole image's
        ``Pool(F_cv)`` (``1 x d``) when ``tokens`` are one tile of it."""
        msa = self.attn(self.norm_attn(tokens)) + tokens
        out = self.mlp(self.norm_mlp(msa)) + msa
        if self.gated_cnn:
            local, _ = self.conv_gate(self.gate_input(tokens), gate_mean)
            out = out + local.permute(0, 2, 3, 1)
        return out
