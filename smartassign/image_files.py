"""Image files as ``smartassign restore`` reads and writes them: the colour the network
restores, and what the file carried besides it.

A photograph comes back in the form it came in: an alpha channel is kept untouched beside
the restored colour, 16-bit files are restored at 16-bit precision and written as 16-bit
PNG, and greyscale files are written as greyscale (the mean of the restored channels).
Everything else a file may hold (EXIF orientation, palettes, CMYK) is read as
:func:`smartassign.data.images.read_rgb` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from smartassign.data.common import DataError
from smartassign.data.images import read_rgb

_SIXTEEN_BIT_GREY = {"I;16", "I;16B", "I;16L", "I;16N"}
_GREY_MODES = {"1", "L", "LA", "La"} | _SIXTEEN_BIT_GREY


@dataclass(frozen=True)
class SourceImage:
    """``rgb``: ``H x W x 3`` ``uint8`` or ``uint16`` colour; ``alpha``: ``H x W`` of the
    same dtype or ``None``; ``grey``: the file had one colour channel."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    grey: bool = False

    @property
    def form(self) -> str:
        """What the output keeps, e.g. ``16-bit grey + alpha``; empty for 8-bit RGB."""
        parts = ["16-bit"] if self.rgb.dtype == np.uint16 else []
        parts += ["grey"] if self.grey else []
        text = " ".join(parts)
        if self.alpha is not None:
            text = f"{text} + alpha" if text else "alpha"
        return text


def _sixteen_bit(image: Image.Image) -> bool:
    return image.mode in _SIXTEEN_BIT_GREY or any(";16" in str(t.args) for t in image.tile)


def _read_sixteen_bit(path: Path, grey: bool) -> SourceImage:
    """16-bit PNG / TIFF through OpenCV, which keeps all 16 bits of every channel."""
    import cv2

    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint16:
        raise DataError("16-bit image OpenCV cannot decode", path=path, kind="unreadable")
    if pixels.ndim == 2:
        return SourceImage(np.repeat(pixels[..., None], 3, axis=2), None, True)
    alpha = pixels[..., 3].copy() if pixels.shape[2] == 4 else None
    rgb = np.ascontiguousarray(pixels[..., 2::-1])  # OpenCV's BGR(A) -> RGB
    if grey:  # grey + alpha arrives as four equal-coloured channels
        rgb = np.repeat(rgb[..., :1], 3, axis=2)
    return SourceImage(rgb, alpha, grey)


def read_source(path: Path | str) -> SourceImage:
    """Decode ``path`` for restoring: its colour as RGB (8 or 16 bits), its alpha channel
    and whether it is grey. Raises :class:`DataError` as ``read_rgb`` does."""
    path = Path(path)
    rgb = read_rgb(path).pixels  # validates the whole file and applies EXIF orientation
    with Image.open(path) as image:
        mode = image.mode
        grey = mode in _GREY_MODES
        if _sixteen_bit(image):
            return _read_sixteen_bit(path, grey)
        has_alpha = mode in ("LA", "La", "RGBA", "RGBa", "PA") or (
            mode == "P" and "transparency" in image.info
        )
        if not has_alpha:
            return SourceImage(rgb, None, grey)
        image.load()
        alpha = np.asarray(image.convert("RGBA"), dtype=np.uint8)[..., 3].copy()
    if alpha.shape != rgb.shape[:2]:  # EXIF rotation turned the colour, not this alpha
        alpha = None
    return SourceImage(rgb, alpha, grey)


def write_restored(path: Path, rgb: np.ndarray, source: SourceImage) -> None:
    """Write restored ``rgb`` (dtype of ``source.rgb``) as PNG in the source's form: grey
    as one channel (the mean of the three), the source's alpha appended untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = rgb
    if source.grey:
        mean = rgb.astype(np.float64).mean(axis=2)
        channels = np.rint(mean).astype(rgb.dtype)[..., None]
    if source.alpha is not None:
        channels = np.concatenate([channels, source.alpha[..., None]], axis=2)
    if rgb.dtype == np.uint16:
        _write_sixteen_bit(path, channels)
        return
    data = channels[..., 0] if channels.shape[2] == 1 else channels
    Image.fromarray(np.ascontiguousarray(data)).save(path, format="PNG", compress_level=1)


def _write_sixteen_bit(path: Path, channels: np.ndarray) -> None:
    """16-bit PNG through OpenCV (channels in its BGR order)."""
    import cv2

    if channels.shape[2] == 2:  # OpenCV writes no grey + alpha PNG: grey as three channels
        channels = channels[..., [0, 0, 0, 1]]
    if channels.shape[2] >= 3:
        channels = channels[..., [2, 1, 0, *range(3, channels.shape[2])]]
    if not cv2.imwrite(str(path), np.ascontiguousarray(channels)):
        raise OSError(f"{path}: OpenCV could not write the 16-bit PNG")
