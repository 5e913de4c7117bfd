"""The rules for setting one key of params.yaml from outside it: a sweep's search space, an
ablation study's shared overrides and the trials both run.

Both refuse the sections that describe the sweep or study itself, the keys a trial sets on
its own (:data:`TRIAL_KEYS`, with why), and any value the key's own field refuses; the
cross-key rules need the whole configuration (:func:`override_in`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from smartassign.config.base import ConfigError
from smartassign.config.data import DataConfig
from smartassign.config.evaluate import EvaluateConfig
from smartassign.config.inference import InferenceConfig
from smartassign.config.loss import LossConfig
from smartassign.config.model import ModelConfig
from smartassign.config.train import TrainConfig

if TYPE_CHECKING:
    from smartassign.config.root import Config

SETTABLE_SECTIONS: dict[str, type[BaseModel]] = {
    "model": ModelConfig,
    "loss": LossConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "inference": InferenceConfig,
    "evaluate": EvaluateConfig,
}
"""The sections a sweep or study may set keys of; ``tune``, ``ablation`` and ``registry``
describe the sweep, the study and the registry themselves."""

TRIAL_KEYS = {
    "train.checkpoint_every_steps": "trials checkpoint once per epoch",
    "train.num_workers": "a trial runs the loop in its own process (resources_per_trial)",
    "train.resources_per_worker": "a trial runs on its resources_per_trial",
    "train.run_name": "trials are named by Ray Tune",
    "train.storage_path": "trials live under the experiment's storage_path",
    "train.model_dir": "trials write no model directory",
}
"""Keys a Ray Tune trial (a sweep trial, an ablation run) sets itself, and why."""

SWEEP_RESERVED = {
    **TRIAL_KEYS,
    "train.epochs": "every trial runs tune.epochs epochs",
    "train.tuned_params": "a sweep starts from params.yaml",
}
"""Keys ``tune.search_space`` cannot sweep, and why."""

STUDY_RESERVED = {
    **TRIAL_KEYS,
    "model.variant": "each arm sets its variant (ablation.variants)",
    "model.single_task": "V4 is trained once per task",
    "train.seed": "each run sets it from ablation.seeds",
    "data.seed": "each run sets it from ablation.seeds",
    "train.tuned_params": "the study starts from params.yaml; put tuned values here instead",
}
"""Keys ``ablation.overrides`` cannot set, and why."""


def leaf_field(dotted: str) -> FieldInfo:
    """The field behind a dotted key of a settable section (``loss.lambda1``);
    ``ValueError`` naming the key if it is unknown or a whole section."""
    section, *parents, leaf = dotted.split(".") if "." in dotted else (dotted, "")
    model = SETTABLE_SECTIONS.get(section)
    if model is None:
        raise ValueError(f"{dotted}: unknown configuration key")
    if not leaf:
        raise ValueError(f"{dotted}: is a section; give one of its keys")
    for part in parents:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise ValueError(f"{dotted}: unknown configuration key")
        model = annotation
    field = model.model_fields.get(leaf)
    if field is None:
        raise ValueError(f"{dotted}: unknown configuration key")
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
        raise ValueError(f"{dotted}: is a section; give one of its keys")
    return field


def check_settable(dotted: str, refused: Mapping[str, str], verb: str) -> None:
    """``ValueError`` naming ``dotted`` unless a sweep or study may set it per trial: a key
    of a settable section, not in ``refused`` (key -> why). ``verb`` says what is refused
    (``swept``, ``overridden``)."""
    section = dotted.split(".")[0]
    if section in ("tune", "ablation", "registry"):
        raise ValueError(f"{dotted}: the {section} section cannot be {verb}")
    if dotted in refused:
        raise ValueError(f"{dotted}: cannot be {verb} ({refused[dotted]})")
    leaf_field(dotted)


def check_value(dotted: str, value: Any) -> None:
    """Check ``value`` against the own type and bounds of the field behind ``dotted``;
    ``ValueError`` naming the key."""
    field = leaf_field(dotted)
    try:
        TypeAdapter(Annotated[field.annotation, field]).validate_python(value)
    except ValidationError as error:
        reason = error.errors()[0]["msg"]
        raise ValueError(f"{dotted}: value {value!r} is invalid: {reason}") from None


def check_study_overrides(overrides: Mapping[str, Any]) -> None:
    """``ablation.overrides`` on its own: known keys, not set by the study, each value valid
    for its key. Raises ``ValueError`` starting with the offending key."""
    for key, value in overrides.items():
        check_settable(key, STUDY_RESERVED, "overridden")
        check_value(key, value)


def override_in(base: Config, updates: Mapping[str, Any], where: str) -> Config:
    """``base.override(updates)``; a cross-key rule it breaks is a :class:`ConfigError`
    that starts with ``where`` (the params key the updates came from)."""
    try:
        return base.override(updates)
    except ConfigError as error:
        detail = str(error).split("\n", 1)[-1].strip()
        raise ConfigError(f"{where}: {detail}") from None
