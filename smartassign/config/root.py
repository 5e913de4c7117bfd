"""The whole ``params.yaml``: :class:`Config`, read by :func:`load_config`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from smartassign.config.analysis import AnalysisConfig
from smartassign.config.base import ConfigError, Section
from smartassign.config.data import DataConfig
from smartassign.config.evaluate import EvaluateConfig
from smartassign.config.experiment import experiment_file, merge, read_experiment
from smartassign.config.inference import InferenceConfig
from smartassign.config.loss import LossConfig
from smartassign.config.model import ModelConfig
from smartassign.config.registry import RegistryConfig
from smartassign.config.sweeps import AblationConfig, TuneConfig
from smartassign.config.train import TrainConfig, check_monitor


class Config(Section):
    """The whole ``params.yaml``."""

    experiment: str = Field(
        "", description="named experiment laid over the params (experiments/<name>.yaml)"
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    ablation: AblationConfig = Field(default_factory=AblationConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)

    @model_validator(mode="after")
    def _recognition_window_is_the_crop(self) -> Config:
        window = self.model.recognition_window
        if window and window != self.data.crop_size:
            raise ValueError(
                f"model.recognition_window ({window}) must be data.crop_size "
                f"({self.data.crop_size}) or 0: the recognition head learns on training crops "
                "and pools windows of the same side at inference; set both together"
            )
        return self

    @model_validator(mode="after")
    def _monitor_is_measured(self) -> Config:
        check_monitor(
            self.train.monitor,
            tasks=self.model.tasks,
            recognition=self.model.recognises,
            scope=f"variant {self.model.variant.value}",
        )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (enums as strings), suitable for YAML or JSON."""
        return self.model_dump(mode="json")

    def flat(self) -> dict[str, Any]:
        """Flattened ``section.key`` view, for logging as run parameters."""
        return _flatten(self.to_dict())

    def override(self, updates: Mapping[str, Any]) -> Config:
        """A new config with dotted keys (``"loss.lambda1"``) replaced, validated again."""
        tree = self.to_dict()
        if "experiment" in updates:
            raise ConfigError(
                "experiment: an override cannot lay a named experiment over the config; "
                "choose it with --experiment or params.yaml's experiment key"
            )
        for dotted, value in updates.items():
            node = tree
            *parents, leaf = dotted.split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"{dotted}: unknown configuration key")
                node = node[part]
            if leaf not in node:
                raise ConfigError(f"{dotted}: unknown configuration key")
            node[leaf] = value
        return config_from_dict(tree)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against params.yaml's documented keys)"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def config_from_dict(tree: Mapping[str, Any] | None, source: str = "config") -> Config:
    """Validate a nested mapping into a :class:`Config`."""
    if tree is None:
        tree = {}
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(tree).__name__}")
    try:
        return Config.model_validate(dict(tree))
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_config(path: str | Path = "params.yaml", experiment: str | None = None) -> Config:
    """Read and validate ``params.yaml`` (or any YAML file with the same sections), with
    its named experiment laid over it: ``experiment`` when given, else the file's
    ``experiment`` key (:mod:`smartassign.config.experiment`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(tree, Mapping):
        return config_from_dict(tree, source=str(path))
    name = tree.get("experiment", "") if experiment is None else experiment
    if not name:
        return config_from_dict(tree, source=str(path))
    overlay = experiment_file(name, path.parent)
    tree = merge(tree, read_experiment(overlay))
    return config_from_dict({**tree, "experiment": name}, source=f"{path} with {overlay}")
