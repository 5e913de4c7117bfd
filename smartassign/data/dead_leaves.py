"""Procedural clean training scenes: the dead-leaves model of natural images.

A dead-leaves image stacks opaque shapes of random colour, position and orientation, each
new one hiding what lies beneath, with sizes drawn from a power law. The result shares the
scale invariance and sharp occlusion edges of photographs without depicting anything, which
makes such images a useful regularising supplement to few training photographs (Achddou,
Gousseau and Ladjal, "Synthetic images as a regularity prior for image restoration neural
networks", SSVM 2021). Here they add edges of every orientation, contrast and width,
including thin bright ones, which a deraining model must learn to tell apart from streaks.

Shapes are anti-aliased ellipses (rendered at twice the size, then area-downscaled), half
of them thin and elongated (wires, twigs, straw, grass blades: thin bright lines at every
angle, the scene content a derain decoder most often mistakes for streaks), over a random
background; colours are random and partly desaturated; a slight Gaussian blur stands in
for a camera's optics. Flat shapes alone hold no texture, so each shape (and the
background) may be filled with a random texture: its colour modulated by a power-law noise
field, isotropic or oriented (grain, mottling, bark, hair, grass), the textured
dead-leaves model of Achddou, Gousseau and Ladjal ("Fully synthetic training for image
restoration tasks", CVIU 2023).
"""

from __future__ import annotations

import cv2
import numpy as np

REFERENCE_SIDE = 512
"""Side at which the constants below are stated; other sides scale sizes and counts."""
SHAPES = 1500
MAX_RADIUS = 150.0
MIN_RADIUS = 4.0
RADIUS_EXPONENT = 2.0
THIN_SHARE = 0.5
SUPERSAMPLING = 2
TEXTURE_FIELDS = 4
"""Texture fields drawn per scene; each shape is filled with one of them."""
SPECTRAL_SLOPE = (0.5, 1.5)
"""Range of ``b`` in the fields' amplitude spectra ``f^-b``: fine grain to smooth mottling."""
MAX_ORIENTATION = 3.0
"""Upper end of the orientation strength: 0 = isotropic, 3 = strongly oriented."""


def _colour(rng: np.random.Generator) -> tuple[float, float, float]:
    """A random RGB colour in ``[0, 1]``, desaturated towards its grey by 20-80 %."""
    colour = rng.uniform(0.0, 1.0, 3) ** rng.uniform(0.5, 2.0)
    grey = colour.mean()
    return tuple((grey + rng.uniform(0.2, 0.8) * (colour - grey)).tolist())


def texture_fields(side: int, rng: np.random.Generator) -> list[np.ndarray]:
    """:data:`TEXTURE_FIELDS` ``side`` x ``side`` random fields of zero mean and unit
    variance: Gaussian noise whose amplitude spectrum falls as ``f^-b`` (``b`` drawn from
    :data:`SPECTRAL_SLOPE`), weighted towards a random orientation by
    ``exp(k (cos 2(phi - theta) - 1))`` with ``k`` drawn from ``[0, MAX_ORIENTATION]``."""
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.rfftfreq(side)[None, :]
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0
    direction = np.arctan2(fy, fx)
    fields = []
    for _ in range(TEXTURE_FIELDS):
        slope = rng.uniform(*SPECTRAL_SLOPE)
        strength, theta = rng.uniform(0.0, MAX_ORIENTATION), rng.uniform(0.0, np.pi)
        amplitude = radius**-slope * np.exp(strength * (np.cos(2 * (direction - theta)) - 1))
        amplitude[0, 0] = 0.0
        noise = rng.standard_normal(radius.shape) + 1j * rng.standard_normal(radius.shape)
        field = np.fft.irfft2(noise * amplitude, s=(side, side)).astype(np.float32)
        fields.append(field / field.std())
    return fields


def _fill(colour: tuple[float, float, float], field: np.ndarray, contrast: float) -> np.ndarray:
    """``colour`` modulated by ``1 + contrast * field`` (a texture patch), within ``[0, 1]``."""
    base = np.asarray(colour, np.float32)
    return np.clip(base * (1.0 + contrast * field[..., None]), 0.0, 1.0)


def dead_leaves_image(side: int, rng: np.random.Generator, texture: float = 0.0) -> np.ndarray:
    """A ``side`` x ``side`` ``uint8`` RGB dead-leaves image (see the module docstring).

    Radii follow ``P(r > x) ~ x^-2`` above ``MIN_RADIUS`` (capped at ``MAX_RADIUS``), both
    scaled with ``side / REFERENCE_SIDE``, as is the number of shapes with the area. Each
    shape and the background take one of the scene's :func:`texture_fields` with a contrast
    drawn uniformly from ``[0, texture]`` (0: flat colours, and no fields are drawn).
    """
    scale = side / REFERENCE_SIDE
    big = side * SUPERSAMPLING
    if texture > 0:
        fields = texture_fields(big, rng)
    else:
        fields = [np.zeros((big, big), np.float32)] * TEXTURE_FIELDS
    canvas = _fill(_colour(rng), fields[0], texture * rng.uniform())
    margin = 0.04 * side
    for _ in range(max(1, round(SHAPES * scale**2))):
        colour = _colour(rng)
        centre_x, centre_y = rng.uniform(-margin, side + margin, 2) * SUPERSAMPLING
        radius = min(MAX_RADIUS, MIN_RADIUS * rng.uniform() ** (-1 / RADIUS_EXPONENT)) * scale
        if rng.random() < THIN_SHARE:
            major, minor = radius * rng.uniform(1.5, 4.0), rng.uniform(0.4, 2.5) * scale
        else:
            major, minor = radius, radius * rng.uniform(0.3, 1.0)
        axes = (max(1, int(major * SUPERSAMPLING)), max(1, int(minor * SUPERSAMPLING)))
        angle = float(rng.uniform(0.0, 180.0))
        field = fields[int(rng.integers(TEXTURE_FIELDS))]
        contrast = texture * rng.uniform()
        _paint(canvas, (int(centre_x), int(centre_y)), axes, angle, colour, field, contrast)
    image = cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA)
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(0.3, 0.8)))
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _paint(
    canvas: np.ndarray,
    centre: tuple[int, int],
    axes: tuple[int, int],
    angle: float,
    colour: tuple[float, float, float],
    field: np.ndarray,
    contrast: float,
) -> None:
    """Composite one anti-aliased, textured ellipse over ``canvas`` (in place), touching
    only its bounding square."""
    side = canvas.shape[0]
    reach = axes[0] + 2
    x0, y0 = max(0, centre[0] - reach), max(0, centre[1] - reach)
    x1, y1 = min(side, centre[0] + reach + 1), min(side, centre[1] + reach + 1)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.float32)
    local = (centre[0] - x0, centre[1] - y0)
    cv2.ellipse(mask, local, axes, angle, 0, 360, 1.0, thickness=-1, lineType=cv2.LINE_AA)
    alpha = mask[..., None]
    box = canvas[y0:y1, x0:x1]
    box[:] = alpha * _fill(colour, field[y0:y1, x0:x1], contrast) + (1.0 - alpha) * box
