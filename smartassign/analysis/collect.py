"""What the analysis reads from a model: per image, its GKFM gates and knowledge rows.

Each image of a split goes whole through the network (eval mode). From the knowledge of
Eq. 2 the analysis keeps, per kind (``rk``, ``ck``, ``sk``):

- the gates of the GKFM (Eq. 11), ``Gate(FC_2(Pool(F_wk)))``: one value per knowledge atom
  (channel of F_wk), ``C`` values;
- the DRM rows (``M_rk``, ``M_ck``, ``M_sk``: one row of length F per atom of the
  knowledge tensor), when the model has a DRM (not V1, K1, K2);
- the pooled raw atoms: each atom of F_xk average-pooled to ``grid x grid`` and flattened,
  the DRM's input. Every model with GKFMs has them, so models with and without a DRM
  can be compared on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from smartassign.data.manifest import Record, load_pair, manifest_path, read_manifest_and_sha256
from smartassign.data.tensors import to_tensor
from smartassign.model import SmartAssign
from smartassign.progress import progress as show


@dataclass(frozen=True)
class ImageKnowledge:
    """The knowledge of one image: ``gates[kind]`` (``C``), ``atoms[kind]`` (pooled raw
    atoms, ``C' x grid**2``) and ``drm[kind]`` (``C' x F``, ``None`` without a DRM)."""

    name: str
    task: str
    gates: dict[str, np.ndarray]
    atoms: dict[str, np.ndarray]
    drm: dict[str, np.ndarray] | None


@torch.no_grad()
def image_knowledge(
    model: SmartAssign, image: torch.Tensor, name: str, task: str, grid: int
) -> ImageKnowledge:
    """Gates, pooled atoms and DRM rows of one ``1 x 3 x H x W`` image (the model has
    GKFMs: ``model.routing.kinds`` is not empty)."""
    knowledge = model(image).knowledge
    if knowledge is None:
        raise ValueError("the model has no GKFM, so no knowledge to analyse")

    def array(tensor: torch.Tensor) -> np.ndarray:
        return tensor[0].float().cpu().numpy()

    atoms = {
        kind: array(F.adaptive_avg_pool2d(tensor, grid).flatten(2))
        for kind, tensor in knowledge.tensors.items()
    }
    drm = (
        {kind: array(matrix) for kind, matrix in knowledge.matrices.items()}
        if knowledge.matrices is not None
        else None
    )
    gates = {kind: array(gate) for kind, gate in knowledge.gates.items()}
    return ImageKnowledge(name, task, gates, atoms, drm)


def split_records(root: Path, split: str, max_images: int = 0) -> tuple[list[Record], str]:
    """The split's pairs, at most ``max_images`` per task (0 = all; in manifest order), and
    the manifest's sha256."""
    records, sha256 = read_manifest_and_sha256(manifest_path(root, split))
    taken: dict[str, int] = {}
    kept = []
    for record in records:
        if max_images and taken.get(record.task, 0) >= max_images:
            continue
        taken[record.task] = taken.get(record.task, 0) + 1
        kept.append(record)
    return kept, sha256


def degraded_images(records: Iterable[Record], root: Path) -> Iterator[tuple[str, str, np.ndarray]]:
    """``(name, task, degraded pixels)`` of each record, read one at a time."""
    for record in records:
        degraded, _ = load_pair(record, root)
        yield f"{record.dataset}/{record.name}", record.task, degraded


def collect(
    model: SmartAssign,
    images: Iterable[tuple[str, str, np.ndarray]],
    grid: int,
    *,
    total: int | None = None,
    progress: bool = True,
) -> list[ImageKnowledge]:
    """:func:`image_knowledge` of every ``(name, task, pixels)``."""
    model.eval()
    device = next(model.parameters()).device

    def each() -> Iterator[ImageKnowledge]:
        for name, task, pixels in show(
            images, desc="analyze", unit="img", total=total, enabled=progress
        ):
            yield image_knowledge(model, to_tensor(pixels)[None].to(device), name, task, grid)

    return list(each())
