"""ONNX and TorchScript export: plain-tensor outputs, dynamic sizes, parity with PyTorch."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import smartassign.export as export
from smartassign.cli import main
from smartassign.config import config_from_dict
from smartassign.export import DEFAULT_TOLERANCE, ExportError, ExportWrapper, export_model
from smartassign.model_io import load_model, save_model_dir
from tests.test_inference import restoring_model
from tests.test_model import TINY

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def model_folder(root: Path, **changes: object) -> Path:
    folder = root / "model"
    config = config_from_dict({"model": {**TINY, **changes}}).to_dict()
    save_model_dir(restoring_model(**changes), folder, yaml.safe_dump(config))
    return folder


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path, Path]:
    """One ONNX export through the CLI (the slowest step here: torch.export + ONNX)."""
    root = tmp_path_factory.mktemp("onnx")
    folder = model_folder(root)
    out = root / "model.onnx"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        args = ["export", "--format", "onnx", "--model", str(folder), "--out", str(out)]
        code = main([*args, "--height", "40", "--width", "56", "--params", str(PARAMS)])
    return code, stdout.getvalue(), folder, out


def test_onnx_export_reports_parity(onnx_export):
    code, printed, _, out = onnx_export
    assert code == 0
    assert out.is_file()
    assert f"wrote {out} (onnx): image B x 3 x H x W (dynamic; H, W >= 16)" in printed
    assert "-> derain, desnow, logits" in printed
    assert "at 1x3x40x56" in printed and "at 2x3x49x73" in printed
    assert "(tolerance 0.0001)" in printed


@pytest.mark.parametrize(
    ("batch", "height", "width"), [(1, 37, 53), (3, 100, 33), (1, 16, 16), (1, 150, 97)]
)
def test_onnx_runs_at_other_sizes_like_pytorch(onnx_export, batch, height, width):
    import onnxruntime

    _, _, folder, out = onnx_export
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["derain", "desnow", "logits"]
    image = torch.rand(batch, 3, height, width)
    with torch.inference_mode():
        expected = ExportWrapper(load_model(folder))(image)
    got = session.run(None, {"image": image.numpy()})
    for value, tensor in zip(got, expected, strict=True):
        assert value.shape == tuple(tensor.shape)
        np.testing.assert_allclose(value, tensor.numpy(), rtol=0, atol=1e-4)


def test_torchscript_has_a_fixed_size_and_a_dynamic_batch(tmp_path):
    model = restoring_model()
    out = tmp_path / "model.pt"
    result = export_model(model, out, "torchscript", height=40, width=56)
    assert result.outputs == ("derain", "desnow", "logits")
    assert set(result.differences) == {(1, 40, 56), (2, 40, 56)}
    assert result.max_difference <= 1e-4
    assert "B x 3 x 40 x 56 (fixed height and width)" in result.lines()[0]
    module = torch.jit.load(str(out))
    image = torch.rand(3, 3, 40, 56)
    with torch.no_grad():
        derain, _, logits = module(image)
        expected = model(image)
    torch.testing.assert_close(derain, expected.derain, rtol=0, atol=1e-5)
    assert logits.shape == (3, 2)
    with pytest.raises(RuntimeError, match="expanded size"):
        module(torch.rand(1, 3, 48, 56))


def test_absent_heads_are_left_out_of_the_outputs(tmp_path):
    model = restoring_model(variant="V5")
    result = export_model(model, tmp_path / "v5.pt", "torchscript", height=32, width=32)
    assert result.outputs == ("derain", "desnow")
    assert len(torch.jit.load(str(tmp_path / "v5.pt"))(torch.rand(1, 3, 32, 32))) == 2


def test_parity_failure_is_an_error_and_removes_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "max_difference", lambda *args: 0.5)
    out = tmp_path / "model.pt"
    with pytest.raises(ExportError, match=r"differs from PyTorch.*5\.00e-01.*removed"):
        export_model(restoring_model(), out, "torchscript", height=32, width=32)
    assert not out.exists()


def test_max_difference_compares_every_output():
    wrapper = ExportWrapper(restoring_model())

    def shifted(image: torch.Tensor) -> list[np.ndarray]:
        outputs = [tensor.numpy() for tensor in wrapper(image)]
        outputs[-1] = outputs[-1] + 0.25
        return outputs

    with torch.inference_mode():
        assert export.max_difference(wrapper, shifted, 1, 32, 32) == pytest.approx(0.25)


def test_cli_torchscript_and_its_errors(tmp_path, capsys):
    folder = model_folder(tmp_path)
    args = ["export", "--model", str(folder), "--params", str(PARAMS)]
    out = tmp_path / "model.pt"
    assert main([*args, "--format", "torchscript", "--out", str(out)]) == 0
    assert "parity with PyTorch: max abs difference" in capsys.readouterr().out
    assert out.is_file()
    small = ["--format", "torchscript", "--out", str(out), "--height", "8"]
    assert main([*args, *small]) == 2
    assert "error: --height/--width must be at least 16" in capsys.readouterr().err


def test_a_model_on_an_accelerator_is_exported_from_a_cpu_copy(tmp_path, monkeypatch):
    """The graph is traced from a CPU copy; the model itself stays where it is and is the
    parity reference."""
    model = restoring_model()
    real_device = export.model_device
    monkeypatch.setattr(
        export,
        "model_device",
        lambda module: torch.device("cuda") if module is model else real_device(module),
    )
    traced: list[nn.Module] = []
    real_trace = export._export_torchscript

    def trace(wrapper, *args):
        traced.append(wrapper.model)
        return real_trace(wrapper, *args)

    monkeypatch.setattr(export, "_export_torchscript", trace)
    result = export_model(model, tmp_path / "model.pt", "torchscript", height=32, width=32)
    assert traced and traced[0] is not model  # a copy was traced
    assert result.max_difference <= DEFAULT_TOLERANCE


def test_cli_export_on_a_missing_device_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    folder = model_folder(tmp_path)
    args = ["export", "--model", str(folder), "--params", str(PARAMS), "--device", "cuda"]
    assert main([*args, "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 2
    assert "smartassign export: error: --device is 'cuda'" in capsys.readouterr().err
