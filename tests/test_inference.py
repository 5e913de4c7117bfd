"""Restoring images of any size: tiling, auto routing, files and folders, the CLI."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from smartassign.builder import build_model
from smartassign.cli import main
from smartassign.config import InferenceConfig, ModelConfig, config_from_dict, load_config
from smartassign.data.images import read_rgb, write_png
from smartassign.data.layouts import image_files
from smartassign.inference import forward_tiled, plan_tiles, restore_image, restore_paths
from smartassign.metrics import psnr
from smartassign.model import SmartAssign
from smartassign.model_io import load_model, save_model_dir
from tests.test_model import TINY

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def restoring_model(**changes: object) -> SmartAssign:
    """The tiny network with non-zero residual decoders (untrained ones return the input)
    and a veil removal whose estimate depends on the image (untrained, it does not)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(**{**TINY, **changes})).eval()
    for decoder in model.decoders.values():
        torch.nn.init.normal_(decoder.convs[-1].weight, std=0.3)
    if model.veil is not None:
        torch.nn.init.normal_(model.veil.head.weight, std=0.3)
    return model


def force_task(model: SmartAssign, task: str) -> SmartAssign:
    """Make the recognition head answer ``task`` whatever the image."""
    fc = model.recognition.fc
    torch.nn.init.zeros_(fc.weight)
    with torch.no_grad():
        fc.bias.copy_(torch.tensor([10.0, -10.0] if task == "rain" else [-10.0, 10.0]))
    return model


def pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def smooth_image(height: int, width: int) -> torch.Tensor:
    """Photo-like content: noise averaged over 2x2 blocks, 1 x 3 x H x W in [0, 1]."""
    generator = torch.Generator().manual_seed(0)
    return F.avg_pool2d(torch.rand(1, 3, 2 * height, 2 * width, generator=generator), 2)


@pytest.mark.parametrize(("height", "width"), [(37, 1000), (1500, 1100), (9, 12)])
def test_any_size_comes_back_at_its_size(height, width):
    result = restore_image(restoring_model(), pixels(height, width), task="rain")
    assert result.pixels.shape == (height, width, 3)
    assert result.pixels.dtype == np.uint8
    assert result.task == "rain"
    assert result.rain_probability is None


def test_tiles_start_on_the_size_multiple_and_their_cores_partition_the_image():
    tiles = plan_tiles(200, 304, tile=96, overlap=48, multiple=8)
    owner = np.zeros((200, 304), dtype=int)
    covered = np.zeros((200, 304))
    for tile in tiles:
        assert tile.top % 8 == 0 and tile.left % 8 == 0
        top, bottom, left, right = tile.core
        owner[tile.top + top : tile.top + bottom, tile.left + left : tile.left + right] += 1
        height, width = tile.weight.shape
        covered[tile.top : tile.top + height, tile.left : tile.left + width] += tile.weight.numpy()
    assert (owner == 1).all()
    assert covered.min() > 0


@pytest.mark.parametrize(
    ("statistics", "pool", "window"),
    [
        ("image", "max", 32),
        ("tile", "mean", 32),
        ("image", "max", 0),
        ("tile", "mean", 0),
        ("tile", "mean", 24),
    ],
)
def test_tiled_pass_matches_the_whole_image_pass(statistics, pool, window):
    model = restoring_model(recognition_pool=pool, recognition_window=window)
    image = smooth_image(200, 300)
    with torch.inference_mode():
        whole = model(image)
    single = forward_tiled(model, image, InferenceConfig(tile_size=512))
    torch.testing.assert_close(single.derain, whole.derain, rtol=0, atol=1e-6)
    tiles = InferenceConfig(
        tile_size=96, tile_overlap=48, batch_tiles=4, gate_statistics=statistics
    )
    tiled = forward_tiled(model, image, tiles)
    assert len(plan_tiles(200, 304, 96, 48, model.size_multiple)) == 4 * 6
    for head in ("derain", "desnow"):
        difference = (getattr(tiled, head) - getattr(whole, head)).abs().max().item()
        assert difference < 1e-3, f"{head}: tiled differs from whole by {difference:.2e}"
    assert (tiled.logits - whole.logits).abs().max().item() < 1e-3


@pytest.mark.parametrize("task", ["rain", "snow"])
def test_auto_routes_by_the_recognition_head(task):
    model = force_task(restoring_model(), task)
    image = pixels(40, 60)
    auto = restore_image(model, image, task="auto")
    assert auto.task == task
    assert auto.rain_probability == pytest.approx(1.0 if task == "rain" else 0.0, abs=1e-6)
    np.testing.assert_array_equal(auto.pixels, restore_image(model, image, task=task).pixels)
    other = "snow" if task == "rain" else "rain"
    assert not np.array_equal(auto.pixels, restore_image(model, image, task=other).pixels)


@pytest.mark.parametrize(
    ("changes", "task", "message"),
    [
        ({"variant": "V5"}, "auto", "task auto needs the recognition head.*V5.*rain or snow"),
        ({"variant": "V4", "single_task": "rain"}, "auto", "V4 lacks; choose the task: rain"),
        ({"variant": "V4", "single_task": "rain"}, "snow", "V4 has no desnow decoder.*only rain"),
        ({"variant": "V4", "single_task": "snow"}, "rain", "V4 has no derain decoder.*only snow"),
    ],
)
def test_a_variant_without_the_head_refuses_clearly(changes, task, message):
    with pytest.raises(ValueError, match=message):
        restore_image(restoring_model(**changes), pixels(32, 32), task=task)


def test_single_task_variant_restores_its_task():
    result = restore_image(
        restoring_model(variant="V4", single_task="snow"), pixels(20, 30), "snow"
    )
    assert result.pixels.shape == (20, 30, 3)


def make_inputs(root: Path) -> Path:
    """A folder with nested images, a broken file, a non-image and a name collision."""
    folder = root / "photos"
    write_png(folder / "a.png", pixels(24, 40, 1))
    write_png(folder / "street" / "b.png", pixels(50, 33, 2))
    write_png(folder / "street" / "night" / "c.png", pixels(17, 70, 3))
    from PIL import Image

    Image.fromarray(pixels(30, 30, 4)).save(folder / "d.jpg", quality=95)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")
    Image.fromarray(pixels(30, 30, 5)).save(folder / "street" / "b.jpg", quality=95)
    return folder


def test_folders_mirror_names_and_unreadable_files_are_skipped(tmp_path):
    folder = make_inputs(tmp_path)
    single = tmp_path / "single.png"
    write_png(single, pixels(16, 16, 6))
    messages: list[str] = []
    model = force_task(restoring_model(), "snow")
    report = restore_paths(
        model,
        [folder, single, tmp_path / "missing.png"],
        tmp_path / "out",
        progress=False,
        log=messages.append,
    )
    out = tmp_path / "out"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [
        "a.png",
        "d.png",
        "single.png",
        "street/b.png",
        "street/b.png.png",  # b.jpg took b.png: b.png keeps its extension in the name
        "street/night/c.png",
    ]
    assert read_rgb(out / "street" / "night" / "c.png").pixels.shape == (17, 70, 3)
    skipped = {path.name: reason for path, reason in report.skipped}
    assert set(skipped) == {"broken.png", "missing.png"}
    assert skipped["missing.png"] == "not found"
    assert report.summary() == "restored 6, skipped 2 (rain: 0, snow: 6)"
    assert any(
        m.endswith("named with its extension: b.png is another's") and "b.png.png" in m
        for m in messages
    )
    assert any(m.startswith("skipped") and "broken.png" in m for m in messages)
    assert any(m.endswith("snow (auto, P(rain) 0.00)") for m in messages)


def test_routing_near_the_threshold_is_reported_as_uncertain(tmp_path):
    """P(rain) 0.6 routes to rain but asks for ``--task``; 0.9 does not."""
    write_png(tmp_path / "in" / "a.png", pixels(24, 40, 1))
    model = restoring_model()
    torch.nn.init.zeros_(model.recognition.fc.weight)
    for probability, uncertain in ((0.6, True), (0.9, False)):
        with torch.no_grad():
            model.recognition.fc.bias.copy_(torch.tensor([probability, 1 - probability]).log())
        messages: list[str] = []
        report = restore_paths(
            model, [tmp_path / "in"], tmp_path / "out", progress=False, log=messages.append
        )
        line = f"rain (auto, P(rain) {probability:.2f})"
        assert messages[-1].endswith(line) is not uncertain, messages[-1]
        assert ("uncertain: pass --task rain or --task snow" in messages[-1]) is uncertain
        counts = "rain: 1, snow: 0" + ("; 1 uncertain, see --task" if uncertain else "")
        assert report.summary() == f"restored 1, skipped 0 ({counts})"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    config = config_from_dict({"model": TINY}).to_dict()
    save_model_dir(force_task(restoring_model(), "rain"), folder, yaml.safe_dump(config))
    return folder


def test_cli_restores_and_reports(tmp_path, model_dir, capsys):
    folder = make_inputs(tmp_path)
    args = ["restore", str(folder), "--out", str(tmp_path / "out"), "--model", str(model_dir)]
    tiles = ["--set", "inference.tile_size=32", "--set", "inference.tile_overlap=16"]
    code = main([*args, "--params", str(PARAMS), *tiles, "--quiet"])
    captured = capsys.readouterr()
    assert code == 0
    # b.jpg and b.png both restored (b.png.png); only the broken file is skipped
    assert captured.out.splitlines()[-1] == "restored 5, skipped 1 (rain: 5, snow: 0)"
    assert "a.png: rain (auto, P(rain) 1.00)" in captured.out
    assert (tmp_path / "out" / "street" / "night" / "c.png").is_file()


def test_cli_fails_when_nothing_is_restored(tmp_path, model_dir, capsys):
    (tmp_path / "bad.png").write_bytes(b"")
    args = ["restore", str(tmp_path / "bad.png"), "--out", str(tmp_path / "out")]
    code = main([*args, "--model", str(model_dir), "--params", str(PARAMS), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert "skipped" in captured.out and "empty file" in captured.out
    assert captured.out.splitlines()[-1] == "restored 0, skipped 1 (rain: 0, snow: 0)"


def test_cli_names_a_missing_task_head(tmp_path, capsys):
    folder = tmp_path / "v5"
    config = config_from_dict({"model": {**TINY, "variant": "V5"}}).to_dict()
    save_model_dir(restoring_model(variant="V5"), folder, yaml.safe_dump(config))
    write_png(tmp_path / "x.png", pixels(20, 20))
    args = ["restore", str(tmp_path / "x.png"), "--out", str(tmp_path / "out")]
    code = main([*args, "--model", str(folder), "--params", str(PARAMS)])
    assert code == 2
    assert "smartassign restore: error: task auto needs the recognition head" in (
        capsys.readouterr().err
    )


def _run_docs_script(name: str, model: Path, data: Path, out: Path, monkeypatch) -> ModuleType:
    """Run ``docs/<name>.py`` on ``model`` and the real data with ``--out out``; the module."""
    path = Path(__file__).resolve().parents[1] / "docs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = ["--model", str(model), "--data", str(data), "--params", str(PARAMS), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
    threads = torch.get_num_threads()
    try:
        script.main()
    finally:
        torch.set_num_threads(threads)
    return script


def test_real_photos_script_routes_and_pictures_every_real_photo(
    real_data_dir, model_dir, tmp_path, monkeypatch
):
    """docs/real_photos.py, which gives the README its routing counts, on the real photos."""
    script = _run_docs_script("real_photos", model_dir, real_data_dir, tmp_path, monkeypatch)
    summary = json.loads((tmp_path / "real_photos.json").read_text())
    for folder in script.FOLDERS:
        files = image_files(real_data_dir / folder, recursive=True)
        names = {str(file.relative_to(real_data_dir / folder)) for file in files}
        assert summary[folder]["photos"] == len(files) > 0
        assert set(summary[folder]["p_rain"]) == names
        assert summary[folder]["routed"] == {"rain": len(files), "snow": 0}  # head forced to rain
        montage = Image.open(tmp_path / "images" / f"real_{folder}.jpg")
        assert montage.height == 2 * script.THUMB_HEIGHT + 4


def test_clean_images_script_scores_every_clean_target_through_the_rain_decoder(
    real_data_dir, model_dir, tmp_path, monkeypatch
):
    """docs/clean_images.py, whose table docs/results.md shows, on the real check pairs."""
    out = tmp_path / "clean_images.json"
    _run_docs_script("clean_images", model_dir, real_data_dir, out, monkeypatch)
    sets = json.loads(out.read_text())["sets"]
    images = {"Rain12": 12, "RainTrainL_10": 9, "RainTrainH_12": 12, "SPA-Data_samples": 2}
    assert {name: row["images"] for name, row in sets.items()} == images
    clean = read_rgb(real_data_dir / "Rain12" / "norain" / "norain-001.png").pixels
    model = load_model(model_dir, torch.device("cpu"))
    restored = restore_image(model, clean, "rain", load_config(PARAMS).inference).pixels
    expected = psnr(restored, clean, y_channel=True)
    assert sets["Rain12"]["psnr_y"]["rain-001"] == pytest.approx(expected, abs=0.01)
    assert expected < 60  # the test model's decoder does alter the image
    worst = sets["Rain12"]["worst"]
    assert worst["psnr_y"] == min(sets["Rain12"]["psnr_y"].values())
