"""How separable the three kinds of knowledge are (the knowledge contrast's aim, Eq. 17-18).

For one image the rows of the three kinds (``M_rk``, ``M_ck``, ``M_sk`` in the DRM space,
or the pooled raw atoms of F_rk, F_ck, F_sk) are points labelled by their kind. The
separation of the image is the silhouette score of those labels under the cosine
distance (the contrast compares rows by cosine similarity): near 1 when every row is
closer to the rows of its own kind than to any other kind's, near 0 when the kinds mix,
negative when rows sit closer to another kind. A model's separation is the mean over the
split's images (and over each task's images). It is computed on the vectors themselves,
never on a t-SNE map, which distorts distances.

:func:`tsne` embeds rows in 2-D for the Fig. 3 analogue (:mod:`smartassign.analysis.figures`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from smartassign.analysis.collect import ImageKnowledge

Space = Literal["atoms", "drm"]
"""``drm``: the DRM rows; ``atoms``: the pooled raw atoms (every model with GKFMs)."""


def labelled_rows(rows: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The rows of every kind stacked, and their kind labels."""
    kinds = list(rows)
    stacked = np.concatenate([rows[kind] for kind in kinds])
    labels = np.concatenate([[kind] * len(rows[kind]) for kind in kinds])
    return stacked, labels


def silhouette(rows: Mapping[str, np.ndarray]) -> float:
    """Silhouette score (cosine distance) of the kinds of ``rows`` (kind -> ``n x F``)."""
    from sklearn.metrics import silhouette_score

    if len(rows) < 2:
        raise ValueError("separation needs at least two kinds of knowledge")
    stacked, labels = labelled_rows(rows)
    return float(silhouette_score(stacked, labels, metric="cosine"))


def rows_of(record: ImageKnowledge, space: Space) -> dict[str, np.ndarray]:
    """The rows of one image in ``space``."""
    if space == "drm":
        if record.drm is None:
            raise ValueError("the model has no DRM")
        return record.drm
    return record.atoms


@dataclass(frozen=True)
class Separation:
    """Mean and standard deviation over images of the per-image silhouette, overall and
    per task."""

    space: Space
    mean: float
    std: float
    per_task: dict[str, float]


def separation(records: Sequence[ImageKnowledge], space: Space) -> Separation:
    """The separation of the kinds in ``space`` over ``records`` (module docstring)."""
    scores = [silhouette(rows_of(record, space)) for record in records]
    tasks = dict.fromkeys(record.task for record in records)
    per_task = {
        task: float(np.mean([s for s, r in zip(scores, records, strict=True) if r.task == task]))
        for task in tasks
    }
    return Separation(space, float(np.mean(scores)), float(np.std(scores)), per_task)


def tsne(rows: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """2-D t-SNE embedding of ``rows`` (cosine distance); the perplexity is lowered to what
    the number of rows allows."""
    from sklearn.manifold import TSNE

    if len(rows) < 4:
        raise ValueError(f"t-SNE needs at least 4 rows, got {len(rows)}")
    usable = min(perplexity, (len(rows) - 1) / 3)
    return TSNE(
        n_components=2, perplexity=usable, metric="cosine", init="pca", random_state=seed
    ).fit_transform(rows)
