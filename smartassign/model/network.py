"""The SmartAssign network (paper Sec. 3.1-3.2, Fig. 2).

``I -> Conv (Eq. 4) -> SAM (Eq. 5) -> GLSF-ViT x N (Eq. 6-10) -> F_wk``;
``F_wk -> GKFM_rk / GKFM_ck / GKFM_sk (Eq. 2, 11) -> F_rk, F_ck, F_sk``;
TKFF routing (Eq. 3, 12): ``D_dr(F_rk, F_ck)``, ``D_ds(F_sk, F_ck)``, ``D_re(F_rk, F_sk)``;
DRM reduces each knowledge tensor to a ``C x F`` matrix for the knowledge contrast (Eq. 17).
With ``veil_removal`` the input first passes :class:`VeilRemoval` (not in the paper).

The file depends on torch and its two sibling modules only: every setting is a keyword
argument and the ablation variants of Tables 3 and 4 are a :class:`Routing` passed in
(``smartassign.builder`` makes both from ``params.yaml``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from smartassign.model.layers import ChannelGate, GateName, GLSFViTBlock, SpatialAttention
from smartassign.model.veil import VeilRemoval

MIN_SIZE = 16
KINDS = ("rk", "ck", "sk")
HEAD_TASKS = {"derain": 0, "desnow": 1}
"""Restoration decoder -> task label it serves (0 rain, 1 snow, as in the data)."""
BACKBONE_PREFIXES = ("veil.", "encoder.", "gkfm.")
"""State-dict keys of everything before TKFF routing."""
GKFM_GATES = "gkfm"
"""Gate level of the GKFMs' gates (they share their input, F_wk); see ``gate_levels``."""

GateMeans = dict[str, torch.Tensor]
"""Gate level (``SmartAssign.gate_levels``) -> ``1 x C`` whole-image mean of its input."""


@dataclass(frozen=True)
class Routing:
    """Which knowledge each head reads (TKFF, Eq. 3) and which parts exist in a variant.

    A head's sources are kinds of knowledge (``rk``, ``ck``, ``sk``, or ``wk`` for F_wk
    itself), concatenated in that order; ``None`` leaves the head out. ``kinds`` are the
    GKFMs built, ``contrast`` builds the DRM, ``gated_cnn`` the GLSF-ViT lower branch,
    ``frozen_backbone`` freezes everything before routing. ``name`` labels the variant
    in messages.
    """

    derain: tuple[str, ...] | None = ("rk", "ck")
    desnow: tuple[str, ...] | None = ("sk", "ck")
    recognition: tuple[str, ...] | None = ("rk", "sk")
    kinds: tuple[str, ...] = KINDS
    contrast: bool = True
    gated_cnn: bool = True
    frozen_backbone: bool = False
    name: str = "V6"

    @property
    def tasks(self) -> tuple[str, ...]:
        """Tasks with a restoration decoder: both, or one for a single-task variant."""
        heads = (("rain", self.derain), ("snow", self.desnow))
        return tuple(task for task, sources in heads if sources is not None)


def pad_to_multiple(image: torch.Tensor, multiple: int, min_side: int = 0) -> torch.Tensor:
    """``image`` padded at the bottom and right (replicate) so that each side is a multiple
    of ``multiple`` and at least ``min_side``."""
    height, width = image.shape[-2:]
    target_h = math.ceil(max(height, min_side) / multiple) * multiple
    target_w = math.ceil(max(width, min_side) / multiple) * multiple
    if (target_h, target_w) == (height, width):
        return image
    return F.pad(image, (0, target_w - width, 0, target_h - height), mode="replicate")


@dataclass
class Knowledge:
    """Unique and common knowledge (Eq. 2) and, with the contrast on, their DRM matrices,
    each keyed by kind: ``rk`` (F_rk), ``ck`` (F_ck), ``sk`` (F_sk)."""

    tensors: dict[str, torch.Tensor]
    gates: dict[str, torch.Tensor]
    matrices: dict[str, torch.Tensor] | None = None


@dataclass
class SmartAssignOutput:
    """Results of Eq. 3: restored images, recognition logits and the knowledge.

    ``derain`` / ``desnow`` are ``B x 3 x H x W`` (``None`` when the variant has no such
    head, or when the forward pass was given the tasks), ``logits`` is ``B x 2`` ordered
    (rain, snow) or ``None`` without ``D_re``. ``knowledge`` is ``None`` for V2, which has no
    GKFM. ``restored`` is set when the forward pass was given the tasks: each sample's
    restoration by its own task's decoder. ``recognition_features``: D_re's feature map
    before its Pool, when the forward pass was asked for it (tiled inference pools it).
    """

    derain: torch.Tensor | None
    desnow: torch.Tensor | None
    logits: torch.Tensor | None
    knowledge: Knowledge | None = None
    restored: torch.Tensor | None = None
    recognition_features: torch.Tensor | None = None

    def for_tasks(self, task: torch.Tensor) -> torch.Tensor:
        """Each sample's restoration by its own task's decoder (TKFF, Eq. 3): ``D_dr`` for
        rain (0), ``D_ds`` for snow (1); ``restored`` when the forward pass was given the
        tasks. A single-task model refuses samples of the task it lacks."""
        if self.restored is not None:
            return self.restored
        if self.derain is None or self.desnow is None:
            only = self.derain if self.derain is not None else self.desnow
            expected = HEAD_TASKS["derain"] if self.derain is not None else HEAD_TASKS["desnow"]
            if only is None:
                raise ValueError("the model has no restoration decoder")
            if bool((task != expected).any()):
                raise ValueError(
                    "a single-task model (variant V4) got samples of the other task; "
                    "filter the data to model.single_task"
                )
            return only
        is_snow = (task == HEAD_TASKS["desnow"]).view(-1, 1, 1, 1)
        return torch.where(is_snow, self.desnow, self.derain)


class Encoder(nn.Module):
    """Backbone E (Eq. 1, 4-6): conv projection, SAM, N GLSF-ViT blocks on patch tokens.

    Patches of ``p x p`` pixels become tokens of width ``d``; after the blocks each token is
    mapped back to ``p x p`` pixels of ``C`` channels (pixel shuffle) and added to the SAM
    features, so F_wk keeps full-resolution detail.
    """

    def __init__(
        self,
        *,
        channels: int,
        sam_hidden: int,
        patch_size: int,
        embed_dim: int,
        num_blocks: int,
        num_heads: int,
        mlp_ratio: float,
        window_size: int,
        shift_windows: bool,
        gate: GateName,
        gate_reduction: int,
        gated_cnn: bool,
    ) -> None:
        super().__init__()
        self.project = nn.Conv2d(3, channels, 3, padding=1)
        self.sam = SpatialAttention(channels, sam_hidden)
        self.patch_embed = nn.Conv2d(channels, embed_dim, patch_size, stride=patch_size)
        self.blocks = nn.ModuleList(
            GLSFViTBlock(
                embed_dim,
                num_heads,
                mlp_ratio,
                window_size,
                shift=shift_windows and index % 2 == 1,
                gate=gate,
                gate_reduction=gate_reduction,
                gated_cnn=gated_cnn,
            )
            for index in range(num_blocks)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.unpatch = nn.Sequential(
            nn.Conv2d(embed_dim, channels * patch_size**2, 1), nn.PixelShuffle(patch_size)
        )
        nn.init.zeros_(self.unpatch[0].weight)
        nn.init.zeros_(self.unpatch[0].bias)

    @staticmethod
    def gate_level(index: int) -> str:
        """Gate level name of block ``index``'s gated CNN (Eq. 9)."""
        return f"encoder.{index}"

    def embed(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM features (Eq. 4-5) and their patch tokens, ``B x h x w x d``."""
        sam = self.sam(self.project(image))
        return sam, self.patch_embed(sam).permute(0, 2, 3, 1)

    def finish(self, tokens: torch.Tensor, sam: torch.Tensor) -> torch.Tensor:
        """F_wk from the last block's tokens and the SAM features."""
        return self.unpatch(self.norm(tokens).permute(0, 3, 1, 2)) + sam

    def forward(self, image: torch.Tensor, gate_means: GateMeans | None = None) -> torch.Tensor:
        sam, tokens = self.embed(image)
        means = gate_means or {}
        for index, block in enumerate(self.blocks):
            tokens = block(tokens, means.get(self.gate_level(index)))
        return self.finish(tokens, sam)


class GKFM(nn.Module):
    """Gated Knowledge Filtering Module, Eq. 11: ``Conv_2(F_wk * Gate(FC_2(Pool(F_wk))))``."""

    def __init__(
        self, channels: int, hidden: int, out: int, gate: GateName, reduction: int
    ) -> None:
        super().__init__()
        self.gate = ChannelGate(channels, reduction, gate)
        self.refine = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out, 3, padding=1),
        )

    def forward(
        self, whole: torch.Tensor, gate_mean: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """F_xk and its gates from F_wk; ``gate_mean``: the whole image's ``Pool(F_wk)``."""
        filtered, gates = self.gate(whole, gate_mean)
        return self.refine(filtered), gates


class RestorationDecoder(nn.Module):
    """D_dr / D_ds of Eq. 12: three convolutions on the concatenated knowledge to an image.

    With ``residual`` the decoder predicts a correction added to the input image; its last
    convolution starts at zero so an untrained decoder returns the input unchanged, and has
    no bias: a constant shift of every pixel is no local restoration, and with a bias the
    decoder learns to darken every image by the mean rain of its training data.
    """

    def __init__(self, in_channels: int, hidden: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 3, 3, padding=1, bias=not residual),
        )
        if residual:
            nn.init.zeros_(self.convs[-1].weight)

    def forward(self, knowledge: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        out = self.convs(knowledge)
        return image + out if self.residual else out


class RecognitionDecoder(nn.Module):
    """D_re of Eq. 12: ``FC(Pool(Conv_3(F_rk, F_sk)))`` -> logits (rain, snow).

    The first two convolutions have stride 2: recognition needs no full-resolution output.
    The paper does not name its global Pool. ``max`` is the default: streaks and flakes
    cover a small share of the pixels, and a mean over the image dilutes their response
    (docs/model.md, "Recognition pooling").

    The head learns on training crops, where Pool covers one crop. On a larger image one
    max over all pixels is a different statistic (it grows with the area), so with
    ``window`` (pixels, the training crop side) Pool runs over each window of that side and
    the logits are the mean of the windows' logits; a training crop is one window, so
    training computes the same logits. ``window`` 0 pools the whole image.

    ``logit_offset`` (a buffer, zero as built) is added to the logits: after training,
    :mod:`smartassign.engine.calibration` sets it so that the validation split's rain and
    snow images fall on either side of P(rain) = 0.5. Weights saved before the buffer
    existed load with it at zero.
    """

    def __init__(
        self, in_channels: int, hidden: int, pool: Literal["max", "mean"], window: int = 0
    ) -> None:
        super().__init__()
        self.pool = pool
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1),
        )
        self.fc = nn.Linear(hidden, 2)
        self.window = window
        # window side in feature-map pixels (0 = the whole map); fixed here so that
        # torch.export does not trace the stride computation
        self.window_features = max(1, round(window / self.feature_stride)) if window else 0
        self.register_buffer("logit_offset", torch.zeros(2))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object) -> None:
        state_dict.setdefault(f"{prefix}logit_offset", torch.zeros(2))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, knowledge: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.convs(knowledge))

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """``B x 2`` logits from the output of ``convs``."""
        return self.logits_from_pooled(self.pool_windows(features))

    def pool_windows(self, features: torch.Tensor) -> torch.Tensor:
        """``B x C x H x W`` features -> ``B x C x h x w`` pooled windows (border ones partial)."""
        side = self.window_features
        if not side:
            reduce = torch.amax if self.pool == "max" else torch.mean
            return reduce(features, dim=(2, 3), keepdim=True)
        kernel = (min(side, features.shape[-2]), min(side, features.shape[-1]))
        if self.pool == "max":
            return F.max_pool2d(features, kernel, kernel, ceil_mode=True)
        return F.avg_pool2d(features, kernel, kernel, ceil_mode=True, count_include_pad=False)

    def logits_from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """Mean over the windows of ``FC(window)``, plus ``logit_offset``: ``B x 2``."""
        return self.fc(pooled.flatten(2).transpose(1, 2)).mean(dim=1) + self.logit_offset

    @property
    def feature_stride(self) -> int:
        """Input pixels per feature-map pixel of ``convs`` along each side."""
        return math.prod(conv.stride[0] for conv in self.convs if isinstance(conv, nn.Conv2d))


class DimensionReduction(nn.Module):
    """DRM: one ``B x C x H x W`` knowledge tensor -> ``B x C x F`` (one row per atom).

    Each atom is average-pooled to a ``grid x grid`` map, flattened and projected by a
    linear layer shared by all three kinds of knowledge, so their rows are comparable.
    """

    def __init__(self, grid: int, dim: int) -> None:
        super().__init__()
        self.grid = grid
        self.project = nn.Linear(grid * grid, dim)

    def forward(self, knowledge: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(knowledge, self.grid).flatten(2)
        return self.project(pooled)


class SmartAssign(nn.Module):
    """Encoder, GKFMs, TKFF-routed decoders and DRM of the paper (Fig. 2).

    ``forward(x)`` takes ``B x 3 x H x W`` images in [0, 1] of any size ``>= 16`` px; the
    input is padded (replicate) to a multiple of ``patch_size * window_size`` and every
    output is cropped back to ``H x W``. The keyword arguments are ``params.yaml``'s
    ``model:`` section (its comments say what each is); ``routing`` picks the variant.
    """

    def __init__(
        self,
        *,
        channels: int = 32,
        sam_hidden: int = 16,
        patch_size: int = 4,
        embed_dim: int = 64,
        num_blocks: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        window_size: int = 8,
        shift_windows: bool = True,
        gate: GateName = "silu",
        gate_reduction: int = 4,
        gkfm_hidden: int = 32,
        gkfm_out: int = 32,
        decoder_hidden: int = 48,
        recognition_pool: Literal["max", "mean"] = "max",
        recognition_window: int = 32,
        residual: bool = True,
        drm_grid: int = 4,
        drm_dim: int = 16,
        veil_removal: bool = False,
        veil_width: int = 24,
        routing: Routing = Routing(),
    ) -> None:
        super().__init__()
        self.routing = routing
        self.size_multiple = patch_size * max(1, window_size)
        """Input sides are padded to a multiple of this (patch size times window)."""
        widths = {"wk": channels, **dict.fromkeys(KINDS, gkfm_out)}

        def width(sources: tuple[str, ...]) -> int:
            return sum(widths[source] for source in sources)

        self.veil = VeilRemoval(veil_width) if veil_removal else None
        self.encoder = Encoder(
            channels=channels,
            sam_hidden=sam_hidden,
            patch_size=patch_size,
            embed_dim=embed_dim,
            num_blocks=num_blocks,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            window_size=window_size,
            shift_windows=shift_windows,
            gate=gate,
            gate_reduction=gate_reduction,
            gated_cnn=routing.gated_cnn,
        )
        self.gkfm = nn.ModuleDict(
            {
                kind: GKFM(channels, gkfm_hidden, gkfm_out, gate, gate_reduction)
                for kind in routing.kinds
            }
        )
        self.decoders = nn.ModuleDict()
        for head in HEAD_TASKS:
            sources = getattr(routing, head)
            if sources is not None:
                self.decoders[head] = RestorationDecoder(width(sources), decoder_hidden, residual)
        self.recognition = (
            RecognitionDecoder(
                width(routing.recognition), decoder_hidden, recognition_pool, recognition_window
            )
            if routing.recognition is not None
            else None
        )
        self.drm = DimensionReduction(drm_grid, drm_dim) if routing.contrast else None
        if routing.frozen_backbone:
            for module in (self.veil, self.encoder, self.gkfm):
                if module is not None:
                    module.requires_grad_(False)

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters before TKFF (veil removal, encoder and GKFMs), e.g. to initialise K1/K2."""
        return {
            key: value
            for key, value in self.state_dict().items()
            if key.startswith(BACKBONE_PREFIXES)
        }

    def load_backbone(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load the backbone of a trained model (Table 4 freezes it)."""
        wanted = {key for key in self.state_dict() if key.startswith(BACKBONE_PREFIXES)}
        missing = sorted(wanted - set(state))
        if missing:
            raise ValueError(f"backbone state lacks {len(missing)} tensors, e.g. {missing[0]}")
        self.load_state_dict({key: state[key] for key in wanted}, strict=False)

    @staticmethod
    def check_input(image: torch.Tensor, values: bool = True) -> None:
        """Raise ``ValueError`` naming the problem for input the network cannot take.

        Skipped while ``torch.export``, ``torch.compile`` or ``torch.jit.trace`` capture the
        network: a graph cannot hold Python checks on the data (the finiteness test).
        ``values=False`` leaves out the finiteness test, which waits for an accelerator.
        """
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return
        if not isinstance(image, torch.Tensor):
            raise ValueError(f"input must be a torch.Tensor, got {type(image).__name__}")
        if image.dim() != 4:
            raise ValueError(f"input must be B x 3 x H x W, got shape {tuple(image.shape)}")
        if image.shape[1] != 3:
            raise ValueError(
                f"input must have 3 (RGB) channels, got {image.shape[1]} "
                f"(shape {tuple(image.shape)})"
            )
        height, width = image.shape[-2:]
        if min(height, width) < MIN_SIZE:
            raise ValueError(
                f"input is {height}x{width} pixels; both sides must be at least {MIN_SIZE}"
            )
        if not image.is_floating_point():
            raise ValueError(f"input must be a float tensor in [0, 1], got {image.dtype}")
        if values and not bool(torch.isfinite(image).all()):
            raise ValueError("input contains NaN or infinite values")

    def remove_veil(
        self,
        image: torch.Tensor,
        context: torch.Tensor | None = None,
        box: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``image`` with its veil inverted (:class:`VeilRemoval`); as is without one."""
        return self.veil(image, context, box) if self.veil is not None else image

    @property
    def gate_levels(self) -> tuple[str, ...]:
        """The channel gates (Eq. 9, 11) in the order their inputs are computed, by level:
        ``encoder.<i>`` for each block's gated CNN, ``gkfm`` for the GKFMs' gates (one
        level: they all pool F_wk). Each level's input depends on the gates before it."""
        blocks = [
            Encoder.gate_level(index)
            for index, block in enumerate(self.encoder.blocks)
            if block.gated_cnn
        ]
        return (*blocks, GKFM_GATES) if len(self.gkfm) else tuple(blocks)

    def gate_input(
        self, image: torch.Tensor, level: str, gate_means: GateMeans | None = None
    ) -> torch.Tensor:
        """The input of the gates of ``level`` (``B x C x h x w``) for a veil-free ``image``
        whose sides are multiples of ``size_multiple``; the gates of earlier levels use
        ``gate_means``. Averaged over a whole image, this is that image's ``gate_means``
        entry for ``level`` (tiled inference measures it tile by tile)."""
        if level not in self.gate_levels:
            raise ValueError(f"no gate level {level!r}; this model has {self.gate_levels}")
        means = gate_means or {}
        sam, tokens = self.encoder.embed(image)
        for index, block in enumerate(self.encoder.blocks):
            if Encoder.gate_level(index) == level:
                return block.gate_input(tokens)
            tokens = block(tokens, means.get(Encoder.gate_level(index)))
        return self.encoder.finish(tokens, sam)

    def forward(
        self,
        image: torch.Tensor,
        task: torch.Tensor | None = None,
        *,
        context: torch.Tensor | None = None,
        box: torch.Tensor | None = None,
        veil_removed: bool = False,
        gate_means: GateMeans | None = None,
        keep_recognition_features: bool = False,
    ) -> SmartAssignOutput:
        """Eq. 3 on ``image``. With ``task`` (``B`` labels, 0 rain, 1 snow) and both
        restoration decoders present, on the CPU each decoder runs on its own task's
        samples only and the result is ``restored`` (training and evaluation use no other
        output, and the decoders are about a third of the network's work); without it, and
        on an accelerator (picking samples by task would wait for the device), both
        decoders restore every sample and :meth:`SmartAssignOutput.for_tasks` selects.

        ``context`` and ``box``: the thumbnail of the whole image a training crop was cut
        from and the crop's box in it (:mod:`smartassign.model.veil`); by default the image
        is whole. ``veil_removed``: the caller has already called :meth:`remove_veil`.
        ``gate_means``: the channel gates pool these whole-image means instead of ``image``
        (see :meth:`gate_input`), and ``keep_recognition_features`` returns D_re's
        features before their Pool: tiled inference passes one tile at a time."""
        # a training step on an accelerator checks its loss instead (engine.step)
        self.check_input(image, values=not (self.training and image.device.type != "cpu"))
        height, width = image.shape[-2:]
        if not veil_removed:
            image = self.remove_veil(image, context, box)
        padded = pad_to_multiple(image, self.size_multiple)
        whole = self.encoder(padded, gate_means)
        features: dict[str, torch.Tensor] = {"wk": whole}
        gates: dict[str, torch.Tensor] = {}
        gkfm_mean = (gate_means or {}).get(GKFM_GATES)
        for kind, module in self.gkfm.items():
            features[kind], gates[kind] = module(whole, gkfm_mean)

        restored: dict[str, torch.Tensor | None] = {"derain": None, "desnow": None}
        own: torch.Tensor | None = None
        routed = task is not None and len(self.decoders) == len(HEAD_TASKS)
        if routed and padded.device.type == "cpu":
            own = self._restore_own_task(features, padded, task.view(-1))[..., :height, :width]
        else:
            for head, decoder in self.decoders.items():
                restored[head] = decoder(self._route(features, head), padded)[..., :height, :width]
        logits = recognition_features = None
        if self.recognition is not None:
            recognition_features = self.recognition.convs(self._route(features, "recognition"))
            logits = self.recognition.logits_from_features(recognition_features)
        knowledge = None
        if self.routing.kinds:
            tensors = {kind: features[kind][..., :height, :width] for kind in self.routing.kinds}
            matrices = (
                {kind: self.drm(tensor) for kind, tensor in tensors.items()}
                if self.drm is not None
                else None
            )
            knowledge = Knowledge(tensors=tensors, gates=gates, matrices=matrices)
        return SmartAssignOutput(
            restored["derain"],
            restored["desnow"],
            logits,
            knowledge,
            own,
            recognition_features if keep_recognition_features else None,
        )

    def _route(self, features: Mapping[str, torch.Tensor], head: str) -> torch.Tensor:
        """The knowledge ``head`` reads (TKFF, Eq. 3): its sources, concatenated."""
        parts = [features[source] for source in getattr(self.routing, head)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def _restore_own_task(
        self, features: Mapping[str, torch.Tensor], padded: torch.Tensor, task: torch.Tensor
    ) -> torch.Tensor:
        """Each sample through its own task's decoder. A decoder whose task has no sample in
        the batch still runs (on none), so it takes part in every step (DDP expects it)."""
        parts = {}
        for head, label in HEAD_TASKS.items():
            chosen = task == label
            knowledge = self._route(features, head)[chosen]
            parts[head] = (chosen, self.decoders[head](knowledge, padded[chosen]))
        first = parts["derain"][1]
        restored = first.new_empty((padded.shape[0], *first.shape[1:]))
        for chosen, part in parts.values():
            restored[chosen] = part
        return restored
