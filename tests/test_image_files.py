"""restore gives back what the file had: alpha untouched, 16-bit precision, grey as grey
(smartassign.image_files through smartassign.inference.restore_paths)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from smartassign.builder import build_model
from smartassign.config import ModelConfig
from smartassign.image_files import read_source
from smartassign.inference import restore_paths
from tests.test_inference import TINY, force_task

HEIGHT, WIDTH = 24, 20


def identity_model():
    """Untrained residual decoders return their input exactly: output = input."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(**{**TINY, "veil_removal": False})).eval()
    return force_task(model, "rain")


def _random(dtype: type, channels: int, seed: int) -> np.ndarray:
    top = np.iinfo(dtype).max
    values = np.random.default_rng(seed).integers(0, top + 1, (HEIGHT, WIDTH, channels))
    return values.astype(dtype).squeeze(-1) if channels == 1 else values.astype(dtype)


def _write_pil(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def _write_cv2(path: Path, array: np.ndarray) -> None:
    order = [2, 1, 0, 3][: array.shape[2]] if array.ndim == 3 else None
    assert cv2.imwrite(str(path), array[..., order] if order else array)


def _read_cv2(path: Path) -> np.ndarray:
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return array[..., [2, 1, 0, 3][: array.shape[2]]] if array.ndim == 3 else array


CASES = {
    # name: (source array, writer, expected form on the image's line)
    "rgba8": (_random(np.uint8, 4, 1), _write_pil, "alpha"),
    "grey8": (_random(np.uint8, 1, 2), _write_pil, "grey"),
    "grey_alpha8": (_random(np.uint8, 2, 3), _write_pil, "grey + alpha"),
    "rgb16": (_random(np.uint16, 3, 4), _write_cv2, "16-bit"),
    "grey16": (_random(np.uint16, 1, 5), _write_pil, "16-bit grey"),
    "rgba16": (_random(np.uint16, 4, 6), _write_cv2, "16-bit + alpha"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_restore_writes_the_form_it_read(tmp_path: Path, name: str):
    array, write, form = CASES[name]
    source = tmp_path / "in" / f"{name}.png"
    source.parent.mkdir()
    write(source, array)
    assert read_source(source).form == form
    messages: list[str] = []
    report = restore_paths(
        identity_model(), [source], tmp_path / "out", progress=False, log=messages.append
    )
    assert report.summary() == "restored 1, skipped 0 (rain: 1, snow: 0)"
    assert messages[-1].endswith(f"rain (auto, P(rain) 1.00); kept {form}")
    restored = _read_cv2(tmp_path / "out" / f"{name}.png")
    if name == "grey_alpha8":  # PIL keeps grey + alpha as LA; OpenCV reads it as colour
        with Image.open(tmp_path / "out" / f"{name}.png") as image:
            assert image.mode == "LA"
            restored = np.asarray(image)
    assert restored.dtype == array.dtype and restored.shape == array.shape
    # the identity model gives every value back: no channel, bit or alpha value was lost
    np.testing.assert_array_equal(restored, array)


def test_plain_rgb_is_written_as_eight_bit_rgb(tmp_path: Path):
    source = tmp_path / "photo.jpg"
    Image.fromarray(_random(np.uint8, 3, 7)).save(source, quality=95)
    assert read_source(source).form == ""
    messages: list[str] = []
    restore_paths(identity_model(), [source], tmp_path / "out", progress=False, log=messages.append)
    with Image.open(tmp_path / "out" / "photo.png") as image:
        assert image.mode == "RGB"
    assert messages[-1].endswith("rain (auto, P(rain) 1.00)")
