"""MLflow model registry: register a trained model, promote it, list versions.

- :func:`register` registers the model of a training run under ``registry.model_name``
  with the alias ``challenger``; the version's tags record its test set (the manifest's
  sha256). Its metrics are those ``evaluate`` linked to the logged model on that test set
  (:mod:`smartassign.model_metrics`), read back wherever the registry compares or lists.
- :func:`promote` moves the alias ``champion`` to a version only when it beats the
  current champion on ``registry.metric`` (higher is better, as the config enforces) over
  the same test set and, for a mean over tasks, the same tasks; when the champion was
  scored on another test set it is re-evaluated on the current one, which must be the
  candidate's. Otherwise, or when forced with a reason, nothing is compared. Every
  decision is recorded as tags on the versions involved.
- :func:`list_versions` returns every version with its metrics and aliases.

Aliases are read from the registered model: ``search_model_versions`` does not fill them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from smartassign.config import Config
from smartassign.data.common import TASKS
from smartassign.engine import tracking
from smartassign.model_metrics import metrics_of, model_id_of

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CHALLENGER = "challenger"
CHAMPION = "champion"
TEST_SET_TAG = "test_manifest_sha256"


class PromotionError(ValueError):
    """A promotion request cannot be carried out as asked."""


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as :func:`list_versions` reports it."""

    version: int
    aliases: tuple[str, ...]
    metrics: dict[str, float]
    run_id: str
    test_set: str


@dataclass(frozen=True)
class Reevaluation:
    """How :func:`promote` scores a champion evaluated on an older test set."""

    test_set: Callable[[], str]
    """The current test set's ``manifest_sha256``: re-evaluating is only worth its cost
    when the candidate was scored on this set."""
    score: Callable[[int], dict[str, float | str]]
    """A version's metrics on the current test set, with their ``manifest_sha256``."""


@dataclass(frozen=True)
class Decision:
    """Outcome of :func:`promote`."""

    promoted: bool
    candidate: int
    champion_before: int | None
    metric: str
    candidate_value: float
    champion_value: float | None
    reason: str


def _is_registered(mlflow_client: MlflowClient, name: str) -> bool:
    return bool(mlflow_client.search_registered_models(f"name = '{name}'"))


def _aliases(mlflow_client: MlflowClient, name: str) -> dict[int, list[str]]:
    registered = mlflow_client.get_registered_model(name)
    by_version: dict[int, list[str]] = {}
    for alias, version in registered.aliases.items():
        by_version.setdefault(int(version), []).append(alias)
    return by_version


def _version_metrics(source: str, test_set: str) -> dict[str, float]:
    """The metrics ``evaluate`` logged for a version's logged model on ``test_set``."""
    model_id = model_id_of(source)
    return metrics_of(model_id, test_set) if model_id and test_set else {}


def _tasks(metrics: dict[str, float]) -> tuple[str, ...]:
    """The tasks an evaluation scored (those with a ``test/<task>/count``)."""
    return tuple(task for task in TASKS if metrics.get(f"test/{task}/count", 0) > 0)


def register(cfg: Config, model_uri: str, metrics: dict[str, float | str], trained: Config) -> int:
    """Register the logged model ``model_uri`` as a new version; alias ``challenger``.

    ``metrics`` is the evaluation's ``metrics.json`` (numbers, plus ``manifest_sha256``);
    it must hold ``registry.metric``, and ``evaluate`` must have linked that metric to the
    logged model on the same test set. ``trained`` is the configuration the model was
    trained with (its ``config.yaml``), recorded in the description.
    """
    import mlflow

    metric = cfg.registry.metric
    if metric not in metrics:
        raise ValueError(
            f"registry.metric {metric!r} is not among the evaluation's metrics "
            f"({', '.join(sorted(k for k in metrics if k.startswith('test/')))}); "
            "set registry.metric to one of them (a per-task metric needs that task in the "
            "test split)"
        )
    test_set = str(metrics.get("manifest_sha256", ""))
    if metric not in _version_metrics(model_uri, test_set):
        raise ValueError(
            f"{model_uri} has no {metric} on this test set in {tracking.tracking_uri()}: "
            "run `smartassign evaluate` on it with MLflow tracking first (it links the "
            "metrics to the logged model)"
        )
    mlflow.set_tracking_uri(tracking.tracking_uri())
    mlflow_client = tracking.client()
    name = cfg.registry.model_name
    version = mlflow.register_model(model_uri, name)
    number = int(version.version)
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    mlflow_client.set_model_version_tag(name, str(number), TEST_SET_TAG, test_set)
    run_id = version.run_id or ""
    run_tags = mlflow_client.get_run(run_id).data.tags if run_id else {}
    description = (
        f"SmartAssign {trained.model.variant.value}; {metric} = {numbers[metric]:.4f}; "
        f"commit {run_tags.get('git_commit', tracking.git_commit())}; "
        f"training data manifest {run_tags.get('data_manifest_sha256', 'unknown')}; "
        f"test set {test_set}; params {json.dumps(trained.flat(), sort_keys=True)}"
    )
    mlflow_client.update_model_version(name, str(number), description=description[:5000])
    mlflow_client.set_registered_model_alias(name, CHALLENGER, str(number))
    return number


def _version(mlflow_client: MlflowClient, name: str, version: int) -> ModelVersion:
    """``version`` of model ``name``."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version(name, str(version))
    except MlflowException as error:
        raise PromotionError(f"model {name} has no version {version}") from error


def _evaluated(entry: ModelVersion, name: str, metric: str) -> dict[str, float]:
    """The metrics of ``entry`` on its test set, which must include ``metric``."""
    metrics = _version_metrics(entry.source, entry.tags.get(TEST_SET_TAG, ""))
    if metric not in metrics:
        raise PromotionError(
            f"model {name} version {entry.version} has no {metric!r} on its test set: its "
            "evaluation did not measure it (e.g. a task that version does not restore); "
            "compare on a metric both versions have (registry.metric) or --force --reason TEXT"
        )
    return metrics


def _same_tasks(metric: str, candidate: dict[str, float], champion: dict[str, float]) -> bool:
    """Whether ``metric`` means the same for both: a per-task metric always does, a mean
    over tasks only when both versions were scored on the same tasks."""
    return not metric.endswith("_mean") or _tasks(candidate) == _tasks(champion)


def promote(
    cfg: Config,
    version: int | None = None,
    *,
    force: bool = False,
    reason: str = "",
    reevaluate: Reevaluation | None = None,
) -> Decision:
    """Move ``champion`` to ``version`` (default: the ``challenger``) if it is better.

    ``reevaluate`` scores an older champion on the current test set when the two versions
    were evaluated on different test sets; the current test set must then be the
    candidate's (checked before anything is re-evaluated), and without ``reevaluate`` such
    a comparison is refused. A mean over tasks is compared only between versions scored on
    the same tasks. ``force`` requires a ``reason``, recorded on the versions; a forced
    promotion compares nothing.
    """
    if force and not reason.strip():
        raise PromotionError("--force needs --reason TEXT: say why the metric is overridden")
    mlflow_client = tracking.client()
    name, metric = cfg.registry.model_name, cfg.registry.metric
    if not _is_registered(mlflow_client, name):
        raise PromotionError(
            f"no model named {name!r} is registered in {tracking.tracking_uri()}: "
            "run `smartassign register` first (or check registry.model_name)"
        )
    aliases = _aliases(mlflow_client, name)
    if version is None:
        version = next((v for v, a in aliases.items() if CHALLENGER in a), None)
        if version is None:
            raise PromotionError(f"no version of {name} has the alias {CHALLENGER}: pass --version")
    entry = _version(mlflow_client, name, version)
    candidate = _evaluated(entry, name, metric)
    candidate_value = candidate[metric]
    candidate_set = entry.tags.get(TEST_SET_TAG)
    champion = next((v for v, a in aliases.items() if CHAMPION in a), None)
    champion_value = None
    if champion is not None and champion != version and not force:
        champion_value = _champion_value(
            mlflow_client, name, metric, (version, candidate, candidate_set), champion, reevaluate
        )
    if champion == version:
        promoted, why = False, f"v{version} already is the champion"
    elif force:
        promoted, why = True, f"forced: {reason.strip()}"
    elif champion is None:
        promoted, why = True, "no champion yet"
    elif champion_value is not None and candidate_value > champion_value:
        promoted = True
        why = f"{metric} {candidate_value:.4f} > champion v{champion} {champion_value:.4f}"
    else:
        promoted = False
        why = f"{metric} {candidate_value:.4f} <= champion v{champion} {champion_value:.4f}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    record = json.dumps(
        {
            "at": stamp,
            "candidate": version,
            "champion_before": champion,
            "metric": metric,
            "candidate_value": candidate_value,
            "champion_value": champion_value,
            "promoted": promoted,
            "forced": force,
            "reason": why,
        }
    )
    mlflow_client.set_model_version_tag(name, str(version), "promotion", record)
    if champion is not None and champion != version:
        outcome = "superseded" if promoted else "defended"
        mlflow_client.set_model_version_tag(name, str(champion), f"promotion_{outcome}", record)
    if promoted:
        mlflow_client.set_registered_model_alias(name, CHAMPION, str(version))
    return Decision(promoted, version, champion, metric, candidate_value, champion_value, why)


def _champion_value(
    mlflow_client: MlflowClient,
    name: str,
    metric: str,
    candidate: tuple[int, dict[str, float], str | None],
    champion: int,
    reevaluate: Reevaluation | None,
) -> float:
    """The champion's ``metric`` over the candidate's test set and tasks, re-evaluated
    when it was scored on another test set; ``PromotionError`` when that cannot be had."""
    version, candidate_metrics, candidate_set = candidate
    entry = _version(mlflow_client, name, champion)
    if entry.tags.get(TEST_SET_TAG) == candidate_set:
        scores = _evaluated(entry, name, metric)
    elif reevaluate is None:
        raise PromotionError(
            f"champion v{champion} was evaluated on another test set; re-evaluate it "
            "on the current one (or --force --reason TEXT)"
        )
    elif reevaluate.test_set() != candidate_set:
        raise PromotionError(
            f"v{version} was evaluated on another test set than the current one "
            f"(data/manifests/test.jsonl changed since): evaluate and register it again "
            f"to compare it with champion v{champion} (or --force --reason TEXT)"
        )
    else:
        fresh = reevaluate.score(champion)
        if fresh.get("manifest_sha256") != candidate_set:
            raise PromotionError(
                f"the test set changed while champion v{champion} was re-evaluated; "
                "run the promotion again"
            )
        scores = {k: float(v) for k, v in fresh.items() if isinstance(v, int | float)}
    if not _same_tasks(metric, candidate_metrics, scores):
        raise PromotionError(
            f"{metric} of v{version} averages {'+'.join(_tasks(candidate_metrics))} and that "
            f"of champion v{champion} {'+'.join(_tasks(scores))}: not comparable; set "
            "registry.metric to a per-task metric both have (e.g. test/rain/psnr_y) "
            "or --force --reason TEXT"
        )
    if metric not in scores:
        raise PromotionError(
            f"champion v{champion} has no {metric} on the current test set (a task it does "
            "not restore?); compare on a metric both versions have, or --force --reason TEXT"
        )
    return scores[metric]


def list_versions(cfg: Config) -> list[VersionInfo]:
    """Every version of ``registry.model_name``, newest first."""
    mlflow_client = tracking.client()
    name = cfg.registry.model_name
    if not _is_registered(mlflow_client, name):
        return []
    aliases = _aliases(mlflow_client, name)
    versions = mlflow_client.search_model_versions(f"name = '{name}'")
    infos = [
        VersionInfo(
            version=int(v.version),
            aliases=tuple(sorted(aliases.get(int(v.version), []))),
            metrics=_version_metrics(v.source, v.tags.get(TEST_SET_TAG, "")),
            run_id=v.run_id or "",
            test_set=v.tags.get(TEST_SET_TAG, ""),
        )
        for v in versions
    ]
    return sorted(infos, key=lambda info: -info.version)


def model_uri_of(model_dir: Path) -> str:
    """The MLflow URI training logged for ``model_dir`` (``mlflow_model_uri`` file)."""
    path = Path(model_dir) / tracking.MODEL_URI_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the model was trained without MLflow tracking "
            "(train without --no-mlflow to register it)"
        )
    return path.read_text().strip()
