"""CUDA and Ascend NPU code paths on a CPU machine: the accelerator mocked (monkeypatched
``torch.cuda``, a fake ``torch_npu`` module), the device-side training step run on the
``meta`` device, which refuses every operation that would wait for an accelerator."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from smartassign.builder import build_model
from smartassign.cli import main
from smartassign.config import Config, ConfigError, config_from_dict
from smartassign.engine import devices
from smartassign.engine.devices import (
    BACKENDS,
    DeviceUnavailableError,
    autocast_dtype,
    check_device,
    ray_resources,
    resolve_device,
)
from smartassign.engine.step import NonFiniteLossError, Optimisation
from smartassign.losses import SmartAssignLoss

from .engine_fixtures import TINY_MODEL


@pytest.fixture
def cuda(monkeypatch):
    """A machine whose torch sees one CUDA device (nothing is run on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def npu(monkeypatch, no_cuda):
    """An Ascend machine: an importable ``torch_npu`` that registers ``torch.npu``."""
    monkeypatch.setitem(sys.modules, "torch_npu", types.ModuleType("torch_npu"))
    fake = types.SimpleNamespace(is_available=lambda: True, current_device=lambda: 0)
    monkeypatch.setattr(torch, "npu", fake, raising=False)


@pytest.fixture
def no_npu(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_npu", None)  # import raises ImportError


def test_each_device_has_its_process_group_backend():
    assert BACKENDS == {"cpu": "gloo", "cuda": "nccl", "npu": "hccl"}


def test_ray_resources_add_one_accelerator_per_worker_unless_a_share_is_named():
    assert ray_resources({"CPU": 8}, "cpu") == {"CPU": 8}
    assert ray_resources({"CPU": 8}, "cuda") == {"CPU": 8, "GPU": 1.0}
    assert ray_resources({"CPU": 4, "GPU": 0.5}, "cuda") == {"CPU": 4, "GPU": 0.5}
    assert ray_resources({"CPU": 8, "GPU": 0}, "npu") == {"CPU": 8, "NPU": 1.0}


def test_scaling_asks_ray_for_gpus_on_cuda(cuda):
    from smartassign.engine.run import _scaling

    cfg = Config().override({"train.device": "cuda", "train.num_workers": 2})
    scaling = _scaling(cfg)
    assert scaling.use_gpu and scaling.num_workers == 2
    assert scaling.resources_per_worker == {"CPU": 2.0, "GPU": 1.0}


@pytest.mark.usefixtures("no_cuda")
def test_cuda_asked_for_without_one_names_the_param_and_what_to_install():
    with pytest.raises(DeviceUnavailableError, match=r"train\.device is 'cuda' .* CUDA build"):
        check_device("cuda")
    with pytest.raises(DeviceUnavailableError, match=r"--device is 'cuda:1' but torch sees no"):
        resolve_device("cuda:1")


@pytest.mark.usefixtures("no_npu")
def test_npu_asked_for_without_torch_npu_names_the_param_and_what_to_install():
    with pytest.raises(DeviceUnavailableError, match=r"inference\.device is 'npu' .*\.\[npu\]"):
        resolve_device("npu", "inference.device")
    assert issubclass(DeviceUnavailableError, ConfigError)  # the CLI reports it in one line


@pytest.mark.usefixtures("no_cuda", "no_npu")
def test_the_cli_refuses_a_missing_device_in_one_line(capsys, tmp_path: Path):
    code = main(["evaluate", "--device", "cuda", "--model", str(tmp_path / "none")])
    assert code == 2
    assert "smartassign evaluate: error: --device is 'cuda'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["gpu", "cuda0", "tpu"])
def test_an_unknown_device_is_refused(name: str):
    with pytest.raises(DeviceUnavailableError, match=f"--device: unknown device '{name}'"):
        resolve_device(name)
    with pytest.raises(ConfigError, match=r"inference\.device"):
        Config().override({"inference.device": name})


def test_auto_picks_cuda_then_npu_then_cpu(monkeypatch, no_npu):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.usefixtures("npu")
def test_auto_picks_the_npu_when_torch_npu_sees_one(monkeypatch):
    # torch knows the device type "npu" only once the real torch_npu has registered it
    monkeypatch.setattr(torch, "device", lambda *where: where)
    assert resolve_device("auto") == ("npu",)
    assert devices.local_device("npu") == ("npu", 0)


@pytest.mark.usefixtures("cuda")
def test_a_loop_outside_ray_train_runs_on_the_current_cuda_device():
    assert devices.local_device("cuda") == torch.device("cuda", 0)
    assert devices.local_device("cpu") == torch.device("cpu")


def test_autocast_is_bfloat16_where_supported_else_float16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert autocast_dtype("cuda", True) is torch.bfloat16
    assert autocast_dtype("npu", True) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert autocast_dtype("cuda", True) is torch.float16
    assert autocast_dtype("cuda", True, "float16") is torch.float16
    assert autocast_dtype("cuda", True, "bfloat16") is torch.bfloat16
    assert autocast_dtype("cuda", False) is None


def test_the_cpu_autocasts_to_bfloat16_only_where_it_has_bfloat16_in_hardware(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bfloat16", lambda: True)
    assert autocast_dtype("cpu", True) is torch.bfloat16
    assert autocast_dtype("cpu", False) is None
    monkeypatch.setattr(devices, "cpu_has_native_bfloat16", lambda: False)
    assert autocast_dtype("cpu", True) is None  # emulated bfloat16 would be slower
    assert autocast_dtype("cpu", True, "bfloat16") is torch.bfloat16  # asked for by name


def _tiny(device: torch.device, amp_dtype: torch.dtype | None = None, **options) -> Optimisation:
    torch.manual_seed(0)
    cfg = config_from_dict({"model": TINY_MODEL, "train": {"ema_decay": 0.0}})
    return Optimisation.from_config(
        cfg, build_model(cfg).to(device), device, amp_dtype, total_steps=10, **options
    )


def test_a_bfloat16_autocast_step_on_the_cpu_updates_the_float32_weights():
    optimisation = _tiny(torch.device("cpu"), torch.bfloat16)
    assert not optimisation.scaler.is_enabled()  # only float16 needs a GradScaler
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(2, 3, 32, 32, generator=generator)
    degraded = (target + 0.3 * torch.rand(2, 3, 32, 32, generator=generator)).clamp(0, 1)
    before = [p.detach().clone() for p in optimisation.model.parameters()]
    values = optimisation.step(degraded, target, torch.tensor([0, 1]), index=0)
    assert torch.isfinite(values["total"])
    parameters = list(optimisation.model.parameters())
    assert all(p.dtype is torch.float32 for p in parameters)
    assert any(not torch.equal(b, a) for b, a in zip(before, parameters, strict=True))


def test_cuda_checks_finiteness_on_the_device_unless_float16_needs_a_grad_scaler():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert Optimisation.defers_checks(cuda, torch.bfloat16)
    assert Optimisation.defers_checks(cuda, None)
    assert not Optimisation.defers_checks(cuda, torch.float16)
    assert not Optimisation.defers_checks(cpu, None)
    plain = _tiny(cpu)
    assert not plain.deferred_checks and not plain.scaler.is_enabled()
    assert plain.optimizer.defaults["fused"] is None  # the CPU keeps torch's default Adam


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_training_forward_and_backward_never_wait_for_the_device(channels_last: bool):
    """On ``meta`` every data-dependent operation (``.item()``, ``bool(tensor)``, boolean
    indexing) raises, as it would make the host wait for a GPU."""
    meta = torch.device("meta")
    cfg = config_from_dict({"model": TINY_MODEL})
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    model = build_model(cfg).to(meta, memory_format=memory_format)
    criterion = SmartAssignLoss(cfg.loss).to(meta)
    image = torch.empty(4, 3, 32, 32, device=meta).contiguous(memory_format=memory_format)
    task = torch.tensor([0, 1, 1, 0], device=meta)
    output = model(image, task)
    assert output.restored is None  # both decoders ran; for_tasks selects on the device
    terms = criterion(output, image, image, task)
    terms.total.backward()
    assert all(p.grad.device == meta for p in model.parameters() if p.requires_grad)
    assert output.for_tasks(task).device == meta


def test_deferred_checks_skip_a_nonfinite_step_on_the_device_and_raise_when_read():
    optimisation = _tiny(torch.device("cpu"), deferred_checks=True)
    assert optimisation.optimizer.defaults["fused"]
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(2, 3, 32, 32, generator=generator)
    task = torch.tensor([0, 1])
    before = [p.detach().clone() for p in optimisation.model.parameters()]
    poisoned = target.clone()
    poisoned[0, 0, 0, 0] = float("nan")
    values = optimisation.step(target, poisoned, task, index=4)
    assert all(isinstance(v, torch.Tensor) for v in values.values())
    for b, a in zip(before, optimisation.model.parameters(), strict=True):
        assert torch.equal(b, a)  # the step was skipped, not applied
    with pytest.raises(NonFiniteLossError, match=r"steps 0-4: 1 step\(s\) had a non-finite"):
        optimisation.check_finite("0-4")
    optimisation.check_finite("5-5")  # counted once
    optimisation.step(target, target.clamp(0, 0.9), task, index=5)
    assert any(
        not torch.equal(b, a) for b, a in zip(before, optimisation.model.parameters(), strict=True)
    )
    optimisation.check_finite("5-5")


def test_a_checkpoint_state_loads_on_the_cpu(tmp_path: Path, monkeypatch):
    """``load_state`` maps every tensor to the CPU, whatever device saved it."""
    from smartassign.engine import checkpoint

    seen = {}
    real_load = torch.load

    def load(path, **kwargs):
        seen.update(kwargs)
        return real_load(path, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "load", load)
    optimisation = _tiny(torch.device("cpu"))
    checkpoint.save_checkpoint(
        tmp_path,
        cfg=Config(),
        progress=checkpoint.Progress(),
        parts=optimisation.state_dicts(),
    )
    state = checkpoint.load_state(tmp_path)
    assert seen["map_location"] == "cpu"
    assert state["model"].keys() == optimisation.model.state_dict().keys()
