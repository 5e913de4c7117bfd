"""The embedded default data set: synthetic rain and snow over clean photographs.

Degradation models (all intensities in ``[0, 1]``):

* **Rain** (:func:`add_rain`): one to three streak layers, each a depth plane with its own
  share of the streak density and its own length, width and brightness around a shared
  fall angle, in the Photoshop recipe the Rain100L / Rain100H / Rain12 benchmarks were
  made with: a sparse field of seeds of random strength (noise) convolved with an
  anti-aliased line (motion blur: a drop moving during the exposure), tapered at both ends
  and blurred to the layer's width. Layers are *added* to the image and clipped at white
  (``rain.blend: add``; real benchmark residuals are grey), or screen-blended,
  ``1 - (1 - I)(1 - S)`` (``screen``). Density and length are drawn log-uniformly, from
  sparse short streaks to dense long ones that cover most of the image (Rain100H).
* **Snow** (:func:`add_snow`): flakes with power-law sizes (many small, few large),
  random opacities and soft edges (larger flakes are nearer and more defocused), smeared
  along the fall direction by motion blur, alpha-composited in near-white.
* **Veiling** (both, optional): ``I t + A (1 - t)`` with a transmission ``t`` that falls
  towards the top of the frame (distance) with low-frequency variation, ``A`` a grey
  atmospheric light, as in the rain-accumulation / snow-veiling models of Li et al. (2019)
  and JSTASR.

Every image gets its own generator seeded from ``(seed, task, photo, index)``, so the same
parameters give byte-identical files and adding a photo changes no other photo's crops.
Photos are split by source: all crops of one photo are in one split. Training-only photos
(``synthetic.train_photos``) and procedural dead-leaves scenes (``synthetic.dead_leaves``,
:mod:`smartassign.data.dead_leaves`) add scenes and textures to the training split and never
enter validation or test.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from smartassign.config import DataConfig, RainSynthesis, SnowSynthesis
from smartassign.data.common import SPLITS, TASKS, DataError, Issue, Pair
from smartassign.data.dead_leaves import dead_leaves_image
from smartassign.data.images import read_rgb, write_png
from smartassign.data.layouts import image_files

BUILTIN_PHOTOS = {
    "skimage": (
        "data/astronaut.png",
        "data/chelsea.png",
        "data/coffee.png",
        "data/motorcycle_left.png",
        "data/rocket.jpg",
    ),
    "sklearn": ("datasets/images/china.jpg", "datasets/images/flower.jpg"),
}
"""Clean colour photographs shipped inside scikit-image and scikit-learn, by package: the
pool from which the validation and test photos are drawn."""

BUILTIN_TRAIN_PHOTOS = {
    "skimage": (
        "data/brick.png",
        "data/camera.png",
        "data/cell.png",
        "data/clock_motion.png",
        "data/coins.png",
        "data/grass.png",
        "data/gravel.png",
        "data/hubble_deep_field.jpg",
        "data/ihc.png",
        "data/moon.png",
        "data/retina.jpg",
    ),
    "matplotlib": ("mpl-data/sample_data/grace_hopper.jpg",),
}
"""Further images shipped inside scikit-image and matplotlib, used for training only: grey
photographs and textures, microscopy, astronomy and a portrait. They widen the scenes the
model learns from (fine edges and textures that rain streaks must be told apart from), but
grey or scientific images make poor test scenes for colour restoration."""

TURN_STREAM = 1
"""The :func:`sample_rng` stream :func:`turn_scene` draws from, apart from the degradation."""


@dataclass(frozen=True)
class Photo:
    """A clean source photograph."""

    name: str
    path: Path


def builtin_photos(
    table: dict[str, tuple[str, ...]] = BUILTIN_PHOTOS, key: str = "synthetic.photos"
) -> list[Photo]:
    """The images of ``table`` (package -> files inside it; default: the seven colour photos
    of :data:`BUILTIN_PHOTOS`), found without importing their packages (importing
    scikit-learn alone takes seconds). ``key`` names the parameter in errors."""
    photos = []
    for package, files in table.items():
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise DataError(f"{key}: builtin needs the {package} package installed")
        folder = Path(spec.origin).parent
        photos += [Photo(Path(name).stem, folder / name) for name in files]
    return sorted(photos, key=lambda photo: photo.name)


def folder_photos(folder: Path, key: str = "synthetic.photos") -> list[Photo]:
    """Every image file in ``folder`` (recursively), named by its path inside the folder;
    ``key`` names the parameter in errors."""
    if not folder.is_dir():
        raise DataError(f"{key}: folder {folder} does not exist")
    return [
        Photo(path.relative_to(folder).with_suffix("").as_posix().replace("/", "__"), path)
        for path in image_files(folder, recursive=True)
    ]


def _photos(source: str, builtin: dict[str, tuple[str, ...]], key: str) -> list[Photo]:
    """The photos named by the value of ``key`` (``synthetic.photos`` / ``train_photos``)."""
    if source == "none":
        return []
    if source == "builtin":
        return builtin_photos(builtin, key)
    return folder_photos(Path(source).expanduser(), key)


def dead_leaves_photos(
    count: int, side: int, seed: int, folder: Path, texture: float
) -> list[tuple[Photo, np.ndarray]]:
    """``count`` seeded ``side`` x ``side`` dead-leaves scenes (shapes textured up to the
    contrast ``texture``) as training-only photos with their pixels; each is also written
    into ``folder`` (``dead_leaves_NN.png``) to look at."""
    scenes = []
    for index in range(count):
        rng = np.random.default_rng([seed, zlib.crc32(b"dead_leaves"), index])
        photo = Photo(f"dead_leaves_{index:02d}", folder / f"dead_leaves_{index:02d}.png")
        pixels = dead_leaves_image(side, rng, texture)
        write_png(photo.path, pixels)
        scenes.append((photo, pixels))
    return scenes


def split_photos(photos: list[Photo], val: int, test: int, seed: int) -> dict[str, list[Photo]]:
    """Disjoint train / val / test photo lists, drawn by a seeded shuffle."""
    if val + test >= len(photos):
        raise DataError(
            f"synthetic: {len(photos)} photos cannot give {val} val + {test} test photos "
            "and still leave one for training"
        )
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(photos))
    shuffled = [photos[i] for i in order]
    return {
        "test": sorted(shuffled[:test], key=lambda p: p.name),
        "val": sorted(shuffled[test : test + val], key=lambda p: p.name),
        "train": sorted(shuffled[test + val :], key=lambda p: p.name),
    }


def random_crop(
    photo: np.ndarray, size: int, min_scale: float, rng: np.random.Generator
) -> np.ndarray:
    """A ``size`` x ``size`` crop after downscaling by a random factor in ``[min_scale, 1]``."""
    height, width = photo.shape[:2]
    low = max(min_scale, size / min(height, width))
    scale = rng.uniform(low, 1.0) if low < 1.0 else 1.0
    if scale < 1.0:
        new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
        photo = cv2.resize(photo, new_size, interpolation=cv2.INTER_AREA)
        height, width = photo.shape[:2]
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    return np.ascontiguousarray(photo[top : top + size, left : left + size])


def turn_scene(clean: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """The clean crop turned by 90 degrees (either way) with probability ``share``.

    Rain and snow are drawn over the scene afterwards, so they still fall downwards; what
    turns is the scene's structure: horizontal edges (horizons, window rows lying down,
    shelves) become bright thin vertical lines that are not rain, and the decoders learn
    to keep them. ``rng`` is the sample's :data:`TURN_STREAM` generator, apart from the one
    its degradation draws from, so every sample keeps its rain or snow whatever the share.
    """
    if rng.random() >= share:
        return clean
    return np.ascontiguousarray(np.rot90(clean, k=1 if rng.random() < 0.5 else 3))


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _line_kernel(length: float, angle: float, width: float, taper: bool) -> np.ndarray:
    """A line of ``length`` pixels at ``angle`` degrees from vertical, blurred to ``width``.

    Peak 1 when ``taper`` (streaks keep their seed's strength); otherwise sums to 1
    (motion blur keeps the total energy).
    """
    radius = math.ceil(length / 2 + 3 * width + 1)
    side = 2 * radius + 1
    samples = max(2, math.ceil(length * 4))
    t = np.linspace(-0.5, 0.5, samples)
    theta = math.radians(angle)
    xs = radius + t * length * math.sin(theta)
    ys = radius + t * length * math.cos(theta)
    weights = np.sin(np.pi * (t + 0.5)) ** 0.5 if taper else np.ones_like(t)
    kernel = np.zeros((side, side), np.float32)
    # Bilinear splatting of the samples gives an anti-aliased line at any angle.
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, wx in ((0, 1 - fx), (1, fx)):
        for dy, wy in ((0, 1 - fy), (1, fy)):
            np.add.at(kernel, (y0 + dy, x0 + dx), weights * wx * wy)
    if width > 0:
        kernel = cv2.GaussianBlur(kernel, (0, 0), sigmaX=width, borderType=cv2.BORDER_CONSTANT)
    return kernel / (kernel.max() if taper else kernel.sum())


def _disc_kernel(radius: float) -> np.ndarray:
    """A soft disc of peak 1; the edge softness grows with the radius (defocus)."""
    softness = 0.35 + 0.25 * radius
    half = math.ceil(radius + 3 * softness)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    distance = np.sqrt(xx * xx + yy * yy, dtype=np.float32)
    return np.clip((radius + softness - distance) / (2 * softness), 0, 1).astype(np.float32)


def _veil(image: np.ndarray, strength: float, light: float, rng: np.random.Generator) -> np.ndarray:
    """``I t + A (1 - t)``: far (top) rows more veiled, with a smooth random modulation."""
    height, width = image.shape[:2]
    distance = np.linspace(1.0, 0.35, height, dtype=np.float32)[:, None]
    coarse = rng.uniform(0.7, 1.0, (4, 4)).astype(np.float32)
    modulation = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    veil = np.clip(strength * distance * modulation, 0, 1)[..., None]
    return image * (1 - veil) + light * veil


def _seeds(
    rng: np.random.Generator, shape: tuple[int, int], count: int, low: float, high: float
) -> np.ndarray:
    """``count`` random positions in an array of ``shape``, valued in ``[low, high]``."""
    field = np.zeros(shape, np.float32)
    ys = rng.integers(0, shape[0], count)
    xs = rng.integers(0, shape[1], count)
    np.add.at(field, (ys, xs), rng.uniform(low, high, count).astype(np.float32))
    return field


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def add_rain(clean: np.ndarray, rng: np.random.Generator, params: RainSynthesis) -> np.ndarray:
    """Rainy version of a ``uint8`` RGB image (see the module docstring for the model)."""
    image = clean.astype(np.float32) / 255.0
    height, width = image.shape[:2]
    angle = _uniform(rng, params.angle)
    layers = int(rng.integers(params.layers[0], params.layers[1] + 1))
    shares = rng.dirichlet(np.ones(layers))
    coverage = _log_uniform(rng, params.density)
    rain = np.zeros((height, width), np.float32)
    for share in shares:
        length = _log_uniform(rng, params.length)
        kernel = _line_kernel(
            length,
            angle + float(rng.normal(0.0, params.angle_jitter)),
            _uniform(rng, params.width),
            taper=True,
        )
        pad = kernel.shape[0]
        shape = (height + 2 * pad, width + 2 * pad)
        count = rng.poisson(share * coverage * shape[0] * shape[1] / length)
        seeds = _seeds(rng, shape, count, 0.5, 1.0)
        streaks = cv2.filter2D(seeds, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        streaks = np.clip(streaks[pad:-pad, pad:-pad], 0, 1) * _uniform(rng, params.brightness)
        if params.blend == "screen":
            image = 1 - (1 - image) * (1 - streaks[..., None])
        else:
            rain += streaks
    image = np.minimum(image + rain[..., None], 1.0)
    if rng.random() < params.haze_probability:
        image = _veil(image, _uniform(rng, params.haze), _uniform(rng, params.haze_light), rng)
    return _to_uint8(image)


def add_snow(clean: np.ndarray, rng: np.random.Generator, params: SnowSynthesis) -> np.ndarray:
    """Snowy version of a ``uint8`` RGB image (see the module docstring for the model)."""
    image = clean.astype(np.float32) / 255.0
    height, width = image.shape[:2]
    low = max(params.size[0], 0.1)
    high = max(params.size[1], low)
    count_per_pixel = _uniform(rng, params.density) / 10_000
    motion = _uniform(rng, params.motion)
    angle = _uniform(rng, params.angle)
    pad = math.ceil(2 * high + motion + 4)
    shape = (height + 2 * pad, width + 2 * pad)
    count = rng.poisson(count_per_pixel * shape[0] * shape[1])
    # Power law: radius = low * (high / low) ** (u ** 2) puts most flakes near `low`.
    radii = low * (high / low) ** (rng.random(count) ** 2)
    edges = np.geomspace(low, high, 5)
    alpha = np.zeros(shape, np.float32)
    for lower, upper in itertools.pairwise(edges):
        last = upper == edges[-1]
        members = int(np.count_nonzero((radii >= lower) & ((radii < upper) | last)))
        if members:
            seeds = _seeds(rng, shape, members, *params.opacity)
            flake = _disc_kernel(float(np.sqrt(lower * upper)))
            alpha += cv2.filter2D(seeds, -1, flake, borderType=cv2.BORDER_CONSTANT)
    alpha = np.clip(alpha, 0, 1)
    if motion >= 1.0:
        blur = _line_kernel(motion, angle, 0.0, taper=False)
        alpha = cv2.filter2D(alpha, -1, blur, borderType=cv2.BORDER_CONSTANT)
    alpha = alpha[pad:-pad, pad:-pad, None]
    colour = np.array([rng.uniform(0.9, 0.97), rng.uniform(0.93, 0.99), 1.0], np.float32)
    image = image * (1 - alpha) + colour * alpha
    if rng.random() < params.haze_probability:
        image = _veil(image, _uniform(rng, params.haze), _uniform(rng, params.haze_light), rng)
    return _to_uint8(image)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def sample_rng(
    seed: int, task: str, photo: str, index: int, stream: int | None = None
) -> np.random.Generator:
    """The generator of one synthetic sample: independent of every other sample. A
    ``stream`` gives the same sample a further generator, independent of its main one."""
    entries = [seed, TASKS.index(task), zlib.crc32(photo.encode()), index]
    return np.random.default_rng(entries if stream is None else [*entries, stream])


def generate(
    cfg: DataConfig, out_dir: Path, *, progress: bool = False
) -> tuple[list[Pair], list[Issue]]:
    """Write the synthetic pairs under ``out_dir/{split}/{task}/{input,target}/`` (and the
    dead-leaves scenes they are cut from under ``out_dir/dead_leaves/``).

    Returns the pairs (with their split) and the source photos that could not be used.
    """
    from smartassign.progress import progress as show

    synth = cfg.synthetic
    photos = _photos(synth.photos, BUILTIN_PHOTOS, "synthetic.photos")
    train_only = _photos(synth.train_photos, BUILTIN_TRAIN_PHOTOS, "synthetic.train_photos")
    clashes = sorted({p.name for p in photos} & {p.name for p in train_only})
    if clashes:
        raise DataError(
            f"synthetic.train_photos: {', '.join(clashes)} also in synthetic.photos; a training-"
            "only photo must not be a validation or test candidate (rename or remove it)"
        )
    procedural = dead_leaves_photos(
        synth.dead_leaves,
        2 * synth.size,
        cfg.seed,
        out_dir / "dead_leaves",
        synth.dead_leaves_texture,
    )
    clashes = sorted({p.name for p, _ in procedural} & {p.name for p in photos + train_only})
    if clashes:
        raise DataError(
            f"synthetic.dead_leaves: photos named {', '.join(clashes)} clash with the generated "
            "scenes of that name (rename them)"
        )
    issues: list[Issue] = []
    usable: list[tuple[Photo, np.ndarray]] = []
    for photo in photos + train_only:
        try:
            pixels = read_rgb(photo.path).pixels
        except DataError as error:
            issues.append(Issue("synthetic", str(photo.path), error.kind, error.reason, "skipped"))
            continue
        if min(pixels.shape[:2]) < synth.size:
            reason = f"photo {pixels.shape[1]}x{pixels.shape[0]} is smaller than synthetic.size"
            issues.append(Issue("synthetic", str(photo.path), "too_small", reason, "skipped"))
            continue
        usable.append((photo, pixels))
    usable += procedural
    extra = {photo.name for photo in train_only} | {photo.name for photo, _ in procedural}
    pool = [photo for photo, _ in usable if photo.name not in extra]
    splits = split_photos(pool, synth.val_photos, synth.test_photos, cfg.seed)
    splits["train"] += [photo for photo, _ in usable if photo.name in extra]
    pixels_of = {photo.name: pixels for photo, pixels in usable}
    jobs = [
        (split, task, photo, index)
        for split in SPLITS
        for task in TASKS
        for photo in splits[split]
        for index in range(getattr(synth.crops_per_photo, split))
    ]

    def make(job: tuple[str, str, Photo, int]) -> Pair:
        split, task, photo, index = job
        rng = sample_rng(cfg.seed, task, photo.name, index)
        clean = random_crop(pixels_of[photo.name], synth.size, synth.min_scale, rng)
        if split == "train" and synth.turned_scenes:
            turn_rng = sample_rng(cfg.seed, task, photo.name, index, stream=TURN_STREAM)
            clean = turn_scene(clean, synth.turned_scenes, turn_rng)
        if task == "rain":
            degraded = add_rain(clean, rng, synth.rain)
        else:
            degraded = add_snow(clean, rng, synth.snow)
        folder = out_dir / split / task
        name = f"{photo.name}_{index:03d}.png"
        write_png(folder / "input" / name, degraded)
        write_png(folder / "target" / name, clean)
        return Pair(folder / "input" / name, folder / "target" / name, task, split)

    # Samples are independent (own generator each); OpenCV and PNG encoding release the GIL.
    with ThreadPoolExecutor(max_workers=cfg.prepare_workers) as pool:
        made = pool.map(make, jobs)
        pairs = list(show(made, total=len(jobs), desc="synthetic", unit="pair", enabled=progress))
    return pairs, issues
