"""Read any image file as 8-bit RGB, fixing what is safe and naming what was fixed.

Every image the project reads goes through :func:`read_rgb`: the prepare stage, the
synthetic generator and the training dataset see identical pixels. The function decodes
the whole file (so truncation is found here, not in a DataLoader worker), applies the
EXIF orientation, and converts grey, grey+alpha, RGBA, palette, CMYK and 16-bit images to
``uint8`` ``H x W x 3``. Anything it cannot read raises :class:`DataError` with a short
``kind`` (``empty_file``, ``not_an_image``, ``unreadable``, ...) that the report counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from smartassign.data.common import DataError

_ORIENTATION_TAG = 0x0112
_GREY_MODES = {"1", "L", "LA", "La"}
_SIXTEEN_BIT_GREY = {"I;16", "I;16B", "I;16L", "I;16N"}
_ALPHA_MODES = {"LA", "La", "RGBA", "RGBa", "PA"}
_OTHER_COLOUR_MODES = {"CMYK", "YCbCr", "LAB", "HSV"}


@dataclass(frozen=True)
class RGBImage:
    """Decoded pixels (``uint8``, ``H x W x 3``) and the fixes applied to get them."""

    pixels: np.ndarray
    fixes: tuple[tuple[str, str], ...] = ()
    """``(kind, description)`` per fix, e.g. ``("grey", "grey -> RGB")``."""


def read_rgb(path: Path | str) -> RGBImage:
    """Decode ``path`` fully into 8-bit RGB.

    Raises:
        DataError: missing, empty, not an image, truncated or otherwise undecodable, or a
            pixel format with no safe 8-bit RGB meaning (e.g. floating point).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise DataError(f"cannot open ({error.strerror})", path=path, kind="missing_file") from None
    if size == 0:
        raise DataError("empty file (0 bytes)", path=path, kind="empty_file")
    try:
        with Image.open(path) as image:
            sixteen_bit = any(";16" in str(tile.args) for tile in image.tile)
            image.load()
            return _to_rgb8(image, sixteen_bit)
    except UnidentifiedImageError:
        raise DataError(
            "not an image (the content matches no known image format)",
            path=path,
            kind="not_an_image",
        ) from None
    except DataError as error:
        raise DataError(error.reason, path=path, kind=error.kind) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(
            f"unreadable or truncated ({error})", path=path, kind="unreadable"
        ) from None


def _to_rgb8(image: Image.Image, sixteen_bit: bool) -> RGBImage:
    """Orientation and mode fixes of a loaded image."""
    fixes: list[tuple[str, str]] = []
    orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    if orientation not in (1, None):
        image = ImageOps.exif_transpose(image)
        fixes.append(("exif_rotation", f"EXIF orientation {orientation} applied"))
    mode = image.mode
    if sixteen_bit or mode in _SIXTEEN_BIT_GREY:
        fixes.append(("16bit", "16-bit -> 8-bit"))
    if mode in _SIXTEEN_BIT_GREY:
        # Pillow itself keeps the high byte of 16-bit RGB; do the same for 16-bit grey.
        grey = np.asarray(image, dtype=np.int64).clip(0, 65535) >> 8
        fixes.append(("grey", "grey -> RGB"))
        return RGBImage(np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2), tuple(fixes))
    if mode in _GREY_MODES:
        fixes.append(("grey", "grey -> RGB"))
    elif mode in ("P", "PA"):
        fixes.append(("palette", "palette -> RGB"))
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    elif mode in _OTHER_COLOUR_MODES:
        fixes.append(("colour_space", f"{mode} -> RGB"))
    elif mode not in ("RGB", "RGBA", "RGBa", "RGBX"):
        raise DataError(f"unsupported pixel format {mode!r}", kind="unsupported_format")
    if mode in _ALPHA_MODES:
        fixes.append(("alpha", "alpha channel dropped"))
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return RGBImage(np.ascontiguousarray(pixels), tuple(fixes))


def split_side_by_side(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left and right halves of an ``input | target`` image (an odd last column is dropped)."""
    half = pixels.shape[1] // 2
    return pixels[:, :half], pixels[:, half : 2 * half]


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Write ``uint8`` RGB pixels as PNG (fast zlib level 1); same pixels, same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG", compress_level=1)
