"""Calibrating the recognition head's routing threshold on the validation split.

D_re (Eq. 12) learns on training crops, a share of them shown clean and many small enough
to hold no streak or flake, so the best it can do on such a crop is an even guess. On
whole images its logit difference ``l_rain - l_snow`` ranks rain above snow, but where
the two tasks' values lie relative to zero changes with the training seed: one seed routes
a split's snow images to the rain decoder, the next does not (docs/results.md, "Real
photographs"). ``restore --task auto`` and the recognition accuracy take the sign of
that difference.

After training, :func:`calibrate_recognition` runs validation images through the model as
``restore`` does (:func:`smartassign.inference.forward_tiled`, with the model's inference
settings), takes the mean difference over the rain images and over the snow images, and
sets D_re's ``logit_offset`` so that the midpoint of the two means becomes P(rain) = 0.5.
The midpoint of the means, not the middle of the gap between the classes, so that one
outlying image does not move the threshold.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from smartassign.config import Config
from smartassign.data import TASKS
from smartassign.data.common import seeded_subset
from smartassign.data.manifest import Record, load_pair, manifest_path, read_manifest
from smartassign.data.tensors import to_tensor
from smartassign.inference import forward_tiled
from smartassign.model import SmartAssign

CALIBRATION_FILE = "calibration.json"
"""Written into the model folder: the threshold and the accuracies around it."""


@dataclass(frozen=True)
class RecognitionCalibration:
    """What calibration found, in logit-difference units (``l_rain - l_snow``).

    ``shift``: the threshold moved by this much (the midpoint of ``rain_mean`` and
    ``snow_mean``, measured with the offset the model had before); the accuracies are over
    the calibration images, with the old and the new threshold.
    """

    images: dict[str, int]
    rain_mean: float
    snow_mean: float
    shift: float
    accuracy_before: float
    accuracy_after: float

    def describe(self) -> str:
        return (
            f"recognition calibrated on {self.images['rain']} rain and "
            f"{self.images['snow']} snow validation images: threshold moved by "
            f"{self.shift:+.3f}, accuracy {self.accuracy_before:.2f} -> {self.accuracy_after:.2f}"
        )


def _sample(records: list[Record], limit: int, seed: int) -> dict[str, list[Record]]:
    """At most ``limit`` records per task, drawn with ``seed`` (all when ``limit`` is 0)."""
    rng = np.random.default_rng(seed)
    return {
        task: seeded_subset([r for r in records if r.task == task], limit, rng) for task in TASKS
    }


def _accuracy(rain: np.ndarray, snow: np.ndarray, threshold: float) -> float:
    """Share of images routed to their own task (rain at or above ``threshold``)."""
    right = (rain >= threshold).sum() + (snow < threshold).sum()
    return float(right / (rain.size + snow.size))


@torch.inference_mode()
def logit_difference(model: SmartAssign, degraded: np.ndarray, cfg: Config) -> float:
    """``l_rain - l_snow`` of one image, from the pass ``restore`` makes."""
    device = next(model.parameters()).device
    logits = forward_tiled(model, to_tensor(degraded)[None].to(device), cfg.inference).logits
    return float(logits[0, 0] - logits[0, 1])


def calibrate_recognition(
    model: SmartAssign, cfg: Config, limit: int
) -> RecognitionCalibration | None:
    """Move D_re's threshold to the midpoint of the validation split's mean logit
    differences of rain and of snow images (at most ``limit`` per task, 0 = all).

    Returns ``None``, changing nothing, when the model has no D_re or the split lacks one
    of the tasks.
    """
    if model.recognition is None:
        return None
    root = Path(cfg.data.root)
    chosen = _sample(read_manifest(manifest_path(root, "val")), limit, cfg.data.seed)
    if not all(chosen.values()):
        return None
    model.eval()
    differences = {
        task: np.array([logit_difference(model, load_pair(r, root)[0], cfg) for r in records])
        for task, records in chosen.items()
    }
    rain, snow = differences["rain"], differences["snow"]
    shift = float(rain.mean() + snow.mean()) / 2
    offset = model.recognition.logit_offset
    offset += torch.tensor([-shift / 2, shift / 2], device=offset.device)
    return RecognitionCalibration(
        images={task: int(values.size) for task, values in differences.items()},
        rain_mean=float(rain.mean()),
        snow_mean=float(snow.mean()),
        shift=shift,
        accuracy_before=_accuracy(rain, snow, 0.0),
        accuracy_after=_accuracy(rain, snow, shift),
    )


def write_calibration(calibration: RecognitionCalibration, model_dir: Path) -> None:
    (model_dir / CALIBRATION_FILE).write_text(json.dumps(asdict(calibration), indent=2) + "\n")
