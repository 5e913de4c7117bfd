"""``train:``: optimisation (paper Sec. 4.1) and the Ray Train run."""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from pydantic import Field, field_validator

from smartassign.config.base import ConfigError, Section, quality_metric

TRAINING_LOSS = "train/loss/total"
"""The monitor of the paper's schedule: the epoch's mean training loss (lower is better)."""


class TrainConfig(Section):
    """Optimisation (paper Sec. 4.1) and the Ray Train run."""

    seed: int = Field(0, ge=0)
    epochs: int = Field(22, ge=1)
    batch_size: int = Field(32, ge=1, description="crops per optimiser step (paper: 4)")
    lr: float = Field(2e-3, gt=0, description="Adam learning rate (paper: 4e-4)")
    lr_schedule: Literal["cosine", "plateau"] = Field(
        "cosine", description="cosine decay over the run, or plateau halving (paper)"
    )
    warmup_steps: int = Field(20, ge=0, description="linear learning-rate warm-up steps")
    lr_factor: float = Field(0.5, gt=0, lt=1, description="plateau decay factor")
    lr_patience: int = Field(2, ge=0, description="validations without improvement before decay")
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 = off")
    ema_decay: float = Field(0.99, ge=0, lt=1, description="EMA of the weights; 0 = off")
    monitor: str = Field(
        "val/psnr_y_mean",
        description="metric driving the plateau schedule: a validation metric, or "
        "train/loss/total (the paper: halve when the training loss stops falling)",
    )
    val_every: int = Field(
        10, ge=1, description="validate every N epochs and after the last (tune trials: 1)"
    )
    num_workers: int = Field(
        1, ge=0, description="Ray Train workers (DDP); 0 only inside `smartassign tune` trials"
    )
    device: Literal["cpu", "cuda", "npu"] = "cpu"
    resources_per_worker: dict[str, float] = Field(
        default_factory=lambda: {"CPU": 2.0}, description="Ray resources of one worker"
    )
    amp: bool = Field(True, description="mixed-precision autocast (train.amp_dtype)")
    amp_dtype: Literal["auto", "bfloat16", "float16"] = Field(
        "auto",
        description="auto: bfloat16 where the device has it (a CPU: in hardware), else "
        "float16 on CUDA and float32 on the CPU",
    )
    channels_last: bool = Field(False, description="channels-last memory format on CUDA / NPU")
    compile: bool = Field(False, description="torch.compile the network")
    log_every_steps: int = Field(
        25, ge=0, description="step progress line (rank 0) every N steps; 0 = epoch lines only"
    )
    checkpoint_every_steps: int = Field(0, ge=0, description="extra checkpoints; 0 = epochs only")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints Ray keeps")
    max_failures: int = Field(2, ge=0, description="worker-group restarts before giving up")
    run_name: str = Field("smartassign", min_length=1, description="Ray run name")
    storage_path: str = Field("outputs/ray", description="Ray run storage (local or URI)")
    model_dir: str = Field("models/smartassign", description="trained model output folder")
    init: str = Field(
        "",
        description="model folder or models:/ URI whose weights the run starts from (new "
        "optimiser, its own MLflow run); empty = random initialisation",
    )
    tuned_params: str = Field(
        "", description="best-params YAML of a sweep to train with; empty = params.yaml as is"
    )
    calibration_images: int = Field(
        32,
        ge=0,
        description="validation images per task that place the recognition head's routing "
        "threshold after training (engine.calibration); 0 = leave it where training put it",
    )

    @field_validator("monitor")
    @classmethod
    def _monitor_is_a_validation_metric(cls, value: str) -> str:
        if value == TRAINING_LOSS:
            return value
        return quality_metric(value, "val", ("psnr", "psnr_y"), per_dataset=False)

    @field_validator("resources_per_worker")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        negative = [key for key, amount in value.items() if amount < 0]
        if negative:
            raise ValueError(f"negative amount for {negative}")
        return value


def check_monitor(monitor: str, *, tasks: Collection[str], recognition: bool, scope: str) -> None:
    """Refuse a ``train.monitor`` that validation never measures: a per-task metric whose
    task is not among ``tasks``, or ``recognition_acc`` without the recognition head.

    The one rule for the monitored metric (its form is checked by the field validator),
    applied to the variant when the config is read and to the val split before training
    starts; ``scope`` names which (``"variant V4"``, ``"the val split (path)"``).
    """
    if monitor == TRAINING_LOSS:
        return
    if monitor.endswith("/recognition_acc") and not recognition:
        raise ConfigError(
            f"train.monitor: {monitor} is never measured: {scope} has no recognition head; "
            "monitor a restoration metric such as val/psnr_y_mean"
        )
    parts = monitor.split("/")
    if len(parts) == 3 and parts[1] not in tasks:
        raise ConfigError(
            f"train.monitor: {monitor} is never measured: {scope} covers "
            f"{' and '.join(tasks) or 'no task'} only; monitor val/psnr_y_mean or a metric of "
            "a task it covers"
        )
