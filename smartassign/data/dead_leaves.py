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
for a camera's optics.
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


def _colour(rng: np.random.Generator) -> tuple[float, float, float]:
    """A random RGB colour in ``[0, 1]``, desaturated towards its grey by 20-80 %."""
    colour = rng.uniform(0.0, 1.0, 3) ** rng.uniform(0.5, 2.0)
    grey = colour.mean()
    return tuple((grey + rng.uniform(0.2, 0.8) * (colour - grey)).tolist())


def dead_leaves_image(side: int, rng: np.random.Generator) -> np.ndarray:
    """A ``side`` x ``side`` ``uint8`` RGB dead-leaves image (see the module docstring).

    Radii follow ``P(r > x) ~ x^-2`` above ``MIN_RADIUS`` (capped at ``MAX_RADIUS``), both
    scaled with ``side / REFERENCE_SIDE``, as is the number of shapes with the area.
    """
    scale = side / REFERENCE_SIDE
    big = side * SUPERSAMPLING
    canvas = np.empty((big, big, 3), np.float32)
    canvas[:] = _colour(rng)
    margin = 0.04 * side
    for _ in range(max(1, round(SHAPES * scale**2))):
        colour = _colour(rng)
        centre_x, centre_y = rng.uniform(-margin, side + margin, 2) * SUPERSAMPLING
        radius = min(MAX_RADIUS, MIN_RADIUS * rng.uniform() ** (-1 / RADIUS_EXPONENT)) * scale
        if rng.random() < THIN_SHARE:
            major, minor = radius * rng.uniform(1.5, 4.0), rng.uniform(0.4, 2.5) * scale
        else:
            major, minor = radius, radius * rng.uniform(0.3, 1.0)
        cv2.ellipse(
            canvas,
            (int(centre_x), int(centre_y)),
            (max(1, int(major * SUPERSAMPLING)), max(1, int(minor * SUPERSAMPLING))),
            float(rng.uniform(0.0, 180.0)),
            0,
            360,
            colour,
            thickness=-1,
            lineType=cv2.LINE_AA,
        )
    image = cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA)
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(0.3, 0.8)))
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
