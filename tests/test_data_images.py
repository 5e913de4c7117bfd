"""read_rgb: every bad or unusual file is either fixed to 8-bit RGB or refused with a reason."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from smartassign.data.common import DataError
from smartassign.data.images import read_rgb, split_side_by_side, write_png

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)


def _kinds(image) -> list[str]:
    return [kind for kind, _ in image.fixes]


def test_plain_rgb_round_trips_without_fixes(tmp_path):
    write_png(tmp_path / "a.png", RGB)
    image = read_rgb(tmp_path / "a.png")
    assert image.pixels.dtype == np.uint8 and image.pixels.shape == (12, 20, 3)
    assert np.array_equal(image.pixels, RGB)
    assert image.fixes == ()


def test_grey_rgba_palette_become_rgb(tmp_path):
    Image.fromarray(RGB[..., 0]).save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([RGB, RGB[..., :1]])).save(tmp_path / "rgba.png")
    Image.fromarray(RGB).convert("P").save(tmp_path / "palette.png")
    grey = read_rgb(tmp_path / "grey.png")
    assert np.array_equal(grey.pixels, np.repeat(RGB[..., :1], 3, axis=2))
    assert _kinds(grey) == ["grey"]
    rgba = read_rgb(tmp_path / "rgba.png")
    assert np.array_equal(rgba.pixels, RGB) and _kinds(rgba) == ["alpha"]
    palette = read_rgb(tmp_path / "palette.png")
    assert palette.pixels.shape == (12, 20, 3) and _kinds(palette) == ["palette"]


def test_sixteen_bit_rgb_and_grey_keep_the_high_byte(tmp_path):
    deep = RNG.integers(0, 65536, (12, 20, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), deep[..., ::-1])
    cv2.imwrite(str(tmp_path / "grey16.png"), deep[..., 0])
    rgb = read_rgb(tmp_path / "rgb16.png")
    assert np.array_equal(rgb.pixels, (deep >> 8).astype(np.uint8))
    assert _kinds(rgb) == ["16bit"]
    grey = read_rgb(tmp_path / "grey16.png")
    assert np.array_equal(grey.pixels[..., 1], (deep[..., 0] >> 8).astype(np.uint8))
    assert _kinds(grey) == ["16bit", "grey"]


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(RGB).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = read_rgb(tmp_path / "rotated.jpg")
    assert image.pixels.shape == (20, 12, 3)
    assert _kinds(image) == ["exif_rotation"]


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"", "empty_file"),
        (b"this is a text file, not a picture\n", "not_an_image"),
    ],
)
def test_unusable_files_are_refused_with_a_kind(tmp_path, content, kind):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        read_rgb(path)
    assert caught.value.kind == kind
    assert caught.value.path == str(path)


def test_truncated_and_missing_files(tmp_path):
    write_png(tmp_path / "full.png", RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="unreadable or truncated") as caught:
        read_rgb(tmp_path / "cut.png")
    assert caught.value.kind == "unreadable"
    with pytest.raises(DataError) as caught:
        read_rgb(tmp_path / "absent.png")
    assert caught.value.kind == "missing_file"


def test_side_by_side_halves_drop_an_odd_column():
    pixels = np.zeros((4, 11, 3), np.uint8)
    pixels[:, 5:] = 200
    left, right = split_side_by_side(pixels)
    assert left.shape == right.shape == (4, 5, 3)
    assert left.max() == 0 and right.min() == 200


def test_png_writing_is_byte_stable(tmp_path):
    write_png(tmp_path / "a.png", RGB)
    write_png(tmp_path / "b.png", RGB.copy())
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
