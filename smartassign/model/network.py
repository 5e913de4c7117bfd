"""The SmartAssign network (paper Sec. 3.1-3.2, Fig. 2).

``I -> Conv (Eq. 4) -> SAM (Eq. 5) -> GLSF-ViT x N (Eq. 6-10) -> F_wk``;
``F_wk -> GKFM_rk / GKFM_ck / GKFM_sk (Eq. 2, 11) -> F_rk, F_ck, F_sk``;
TKFF routing (Eq. 3, 12): ``D_dr(F_rk, F_ck)``, ``D_ds(F_sk, F_ck)``, ``D_re(F_rk, F_sk)``;
DRM reduces each knowledge tensor to a ``C x F`` matrix for the knowledge contrast (Eq. 17).
With ``model.veil_removal`` the input first passes :class:`VeilRemoval` (not in the paper).

The ablation variants of Tables 3 and 4 change only the routing table and which modules
exist (see :func:`routing_for`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from smartassign.config import Config, ModelConfig, Variant
from smartassign.model.layers import ChannelGate, GateName, GLSFViTBlock, SpatialAttention
from smartassign.model.veil import VeilRemoval

MIN_SIZE = 16
KINDS = ("rk", "ck", "sk")
HEAD_TASKS = {"derain": 0, "desnow": 1}
"""Restoration decoder -> task label it serves (0 rain, 1 snow, as in the data)."""
BACKBONE_PREFIXES = ("veil.", "encoder.", "gkfm.")
"""State-dict keys of everything before TKFF routing."""


@dataclass(frozen=True)
class Routing:
    """Which knowledge each head reads (TKFF, Eq. 3) and which parts exist in a variant."""

    derain: tuple[str, ...] | None
    desnow: tuple[str, ...] | None
    recognition: tuple[str, ...] | None
    kinds: tuple[str, ...]
    contrast: bool
    gated_cnn: bool = True
    frozen_backbone: bool = False

    @property
    def tasks(self) -> tuple[str, ...]:
        """Tasks with a restoration decoder: both, or ``model.single_task`` for V4."""
        heads = (("rain", self.derain), ("snow", self.desnow))
        return tuple(task for task, sources in heads if sources is not None)


def routing_for(cfg: ModelConfig) -> Routing:
    """The TKFF routing of a variant; each ablation removes exactly its part.

    V6 is Eq. 3. V1 drops the DRM/contrast, V2 feeds ``F_wk`` to every head (conventional
    MTL, no GKFM), V3 drops the gated CNN branch, V4 keeps only one task's GKFMs and
    decoder (the contrast then runs over that task's two kinds), V5 drops ``D_re``, K1/K2
    freeze encoder and GKFMs and feed the restoration decoders only ``F_ck`` (K1) or only
    ``F_rk`` / ``F_sk`` (K2).
    """
    variant = cfg.variant
    if variant is Variant.V2:
        return Routing(("wk",), ("wk",), ("wk",), kinds=(), contrast=False)
    if variant is Variant.V4:
        if cfg.single_task == "rain":
            return Routing(("rk", "ck"), None, None, kinds=("rk", "ck"), contrast=True)
        return Routing(None, ("sk", "ck"), None, kinds=("ck", "sk"), contrast=True)
    if variant is Variant.K1:
        return Routing(("ck",), ("ck",), ("rk", "sk"), KINDS, False, frozen_backbone=True)
    if variant is Variant.K2:
        return Routing(("rk",), ("sk",), ("rk", "sk"), KINDS, False, frozen_backbone=True)
    return Routing(
        derain=("rk", "ck"),
        desnow=("sk", "ck"),
        recognition=None if variant is Variant.V5 else ("rk", "sk"),
        kinds=KINDS,
        contrast=variant is not Variant.V1,
        gated_cnn=variant is not Variant.V3,
    )


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
    restoration by its own task's decoder.
    """

    derain: torch.Tensor | None
    desnow: torch.Tensor | None
    logits: torch.Tensor | None
    knowledge: Knowledge | None = None
    restored: torch.Tensor | None = None

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

    def __init__(self, cfg: ModelConfig, gated_cnn: bool) -> None:
        super().__init__()
        self.patch_size = cfg.patch_size
        self.project = nn.Conv2d(3, cfg.channels, 3, padding=1)
        self.sam = SpatialAttention(cfg.channels, cfg.sam_hidden)
        self.patch_embed = nn.Conv2d(
            cfg.channels, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size
        )
        self.blocks = nn.ModuleList(
            GLSFViTBlock(
                cfg.embed_dim,
                cfg.num_heads,
                cfg.mlp_ratio,
                cfg.window_size,
                shift=cfg.shift_windows and index % 2 == 1,
                gate=cfg.gate,
                gate_reduction=cfg.gate_reduction,
                gated_cnn=gated_cnn,
            )
            for index in range(cfg.num_blocks)
        )
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.unpatch = nn.Sequential(
            nn.Conv2d(cfg.embed_dim, cfg.channels * cfg.patch_size**2, 1),
            nn.PixelShuffle(cfg.patch_size),
        )
        nn.init.zeros_(self.unpatch[0].weight)
        nn.init.zeros_(self.unpatch[0].bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        sam = self.sam(self.project(image))
        tokens = self.patch_embed(sam).permute(0, 2, 3, 1)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens).permute(0, 3, 1, 2)
        return self.unpatch(tokens) + sam


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

    def forward(self, whole: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        filtered, gates = self.gate(whole)
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

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Models pickled before windows existed pool the whole image, as they did."""
        state.setdefault("window", 0)
        state.setdefault("window_features", 0)
        super().__setstate__(state)

    def forward(self, knowledge: torch.Tensor) -> torch.Tensor:
        return self.logits_from_pooled(self.pool_windows(self.convs(knowledge)))

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
        """Mean over the windows of ``FC(window)``: ``B x 2``."""
        return self.fc(pooled.flatten(2).transpose(1, 2)).mean(dim=1)

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
    output is cropped back to ``H x W``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.routing = routing_for(cfg)
        self.veil = VeilRemoval(cfg.veil_width) if cfg.veil_removal else None
        self.encoder = Encoder(cfg, gated_cnn=self.routing.gated_cnn)
        self.gkfm = nn.ModuleDict(
            {
                kind: GKFM(
                    cfg.channels, cfg.gkfm_hidden, cfg.gkfm_out, cfg.gate, cfg.gate_reduction
                )
                for kind in self.routing.kinds
            }
        )
        self.decoders = nn.ModuleDict()
        for head in ("derain", "desnow"):
            sources = getattr(self.routing, head)
            if sources is not None:
                self.decoders[head] = RestorationDecoder(
                    self._width(sources), cfg.decoder_hidden, cfg.residual
                )
        self.recognition = (
            RecognitionDecoder(
                self._width(self.routing.recognition),
                cfg.decoder_hidden,
                cfg.recognition_pool,
                cfg.recognition_window,
            )
            if self.routing.recognition is not None
            else None
        )
        self.drm = DimensionReduction(cfg.drm_grid, cfg.drm_dim) if self.routing.contrast else None
        if self.routing.frozen_backbone:
            for module in (self.veil, self.encoder, self.gkfm):
                if module is not None:
                    module.requires_grad_(False)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle (MLflow) a model saved before veil removal existed: it has none."""
        super().__setstate__(state)
        self._modules.setdefault("veil", None)

    @classmethod
    def from_config(cls, cfg: Config | ModelConfig) -> SmartAssign:
        """Build the network from the whole :class:`Config` or its ``model`` section."""
        return cls(cfg.model if isinstance(cfg, Config) else cfg)

    @property
    def size_multiple(self) -> int:
        """Input sides are padded to a multiple of this (patch size times window)."""
        return self.cfg.patch_size * max(1, self.cfg.window_size)

    def _width(self, sources: tuple[str, ...]) -> int:
        return sum(self.cfg.channels if s == "wk" else self.cfg.gkfm_out for s in sources)

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
    def check_input(image: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the problem for input the network cannot take.

        Skipped while ``torch.export``, ``torch.compile`` or ``torch.jit.trace`` capture the
        network: a graph cannot hold Python checks on the data (the finiteness test).
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
        if not bool(torch.isfinite(image).all()):
            raise ValueError("input contains NaN or infinite values")

    def _pad(self, image: torch.Tensor) -> torch.Tensor:
        multiple = self.size_multiple
        height, width = image.shape[-2:]
        pad_h = math.ceil(height / multiple) * multiple - height
        pad_w = math.ceil(width / multiple) * multiple - width
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h), mode="replicate")
        return image

    def remove_veil(
        self,
        image: torch.Tensor,
        context: torch.Tensor | None = None,
        box: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``image`` with its veil inverted (:class:`VeilRemoval`); as is without one."""
        return self.veil(image, context, box) if self.veil is not None else image

    def forward(
        self,
        image: torch.Tensor,
        task: torch.Tensor | None = None,
        *,
        context: torch.Tensor | None = None,
        box: torch.Tensor | None = None,
        veil_removed: bool = False,
    ) -> SmartAssignOutput:
        """Eq. 3 on ``image``. With ``task`` (``B`` labels, 0 rain, 1 snow) and both
        restoration decoders present, each decoder runs on its own task's samples only and
        the result is ``restored`` (training and evaluation use no other output, and the
        decoders are about a third of the network's work); without it both decoders
        restore every sample, as in auto-routed inference.

        ``context`` and ``box``: the thumbnail of the whole image a training crop was cut
        from and the crop's box in it (:mod:`smartassign.model.veil`); by default the image
        is whole. ``veil_removed``: the caller has already called :meth:`remove_veil`
        (tiled inference does, on the whole image, before cutting tiles)."""
        self.check_input(image)
        height, width = image.shape[-2:]
        if not veil_removed:
            image = self.remove_veil(image, context, box)
        padded = self._pad(image)
        whole = self.encoder(padded)
        features: dict[str, torch.Tensor] = {"wk": whole}
        gates: dict[str, torch.Tensor] = {}
        for kind, module in self.gkfm.items():
            features[kind], gates[kind] = module(whole)

        def route(sources: tuple[str, ...]) -> torch.Tensor:
            parts = [features[name] for name in sources]
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

        restored: dict[str, torch.Tensor | None] = {"derain": None, "desnow": None}
        own: torch.Tensor | None = None
        if task is not None and len(self.decoders) == len(HEAD_TASKS):
            own = self._restore_own_task(route, padded, task.view(-1))[..., :height, :width]
        else:
            for head, decoder in self.decoders.items():
                sources = getattr(self.routing, head)
                restored[head] = decoder(route(sources), padded)[..., :height, :width]
        logits = (
            self.recognition(route(self.routing.recognition))
            if self.recognition is not None
            else None
        )
        knowledge = None
        if self.routing.kinds:
            tensors = {kind: features[kind][..., :height, :width] for kind in self.routing.kinds}
            matrices = (
                {kind: self.drm(tensor) for kind, tensor in tensors.items()}
                if self.drm is not None
                else None
            )
            knowledge = Knowledge(tensors=tensors, gates=gates, matrices=matrices)
        return SmartAssignOutput(restored["derain"], restored["desnow"], logits, knowledge, own)

    def _restore_own_task(
        self,
        route: Callable[[tuple[str, ...]], torch.Tensor],
        padded: torch.Tensor,
        task: torch.Tensor,
    ) -> torch.Tensor:
        """Each sample through its own task's decoder. A decoder whose task has no sample in
        the batch still runs (on none), so it takes part in every step (DDP expects it)."""
        parts = {}
        for head, label in HEAD_TASKS.items():
            chosen = task == label
            sources = getattr(self.routing, head)
            parts[head] = (chosen, self.decoders[head](route(sources)[chosen], padded[chosen]))
        first = parts["derain"][1]
        restored = first.new_empty((padded.shape[0], *first.shape[1:]))
        for chosen, part in parts.values():
            restored[chosen] = part
        return restored
