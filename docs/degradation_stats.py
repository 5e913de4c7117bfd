"""Rain and snow statistics of the real check images next to the synthetic generator's.

Measures every rain pair of the real check folders (Rain12, RainTrainL_10, RainTrainH_12,
SPA-Data samples; identical pairs are left out) and the snowy photos without ground truth
with :mod:`smartassign.data.statistics`, then the same numbers on pairs the generator of
``params.yaml`` makes from the builtin photos (in memory, as the prepare stage would).
Also measures, per real set, what an oracle that removes only rain would gain
(:func:`~smartassign.data.statistics.removal_bounds`, mean PSNR-Y per set), and which pairs
even a perfect streak remover makes worse than their input. Writes
``docs/degradation_stats.json`` (median and 10th / 90th percentile per source, the bounds,
those pairs) and prints the markdown tables of docs/data.md::

    python docs/degradation_stats.py --real ../shared/data/real --params params.yaml
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from smartassign.config import REAL_CHECK_SETS, load_config
from smartassign.data.images import read_rgb
from smartassign.data.layouts import image_files
from smartassign.data.real_checks import CheckPair, load_check_sets
from smartassign.data.statistics import (
    rain_statistics,
    removal_bounds,
    residual_luma,
    snow_statistics,
)
from smartassign.data.synthetic import (
    BUILTIN_PHOTOS,
    BUILTIN_TRAIN_PHOTOS,
    add_rain,
    add_snow,
    builtin_photos,
    random_crop,
    sample_rng,
)

SNOW_FOLDERS = ("snow_unpaired/Snow100K_realistic", "snow_unpaired/CSD_snowy_noGT")
RAIN_KEYS = (
    "brightening",
    "veil",
    "coverage",
    "contrast",
    "contrast_p95",
    "angle",
    "angle_spread",
    "width",
    "length",
    "transmission",
    "veil_light",
    "greyness",
    "darker",
    "shift",
)
SNOW_KEYS = (
    "flake_density",
    "coverage",
    "flake_radius_median",
    "flake_radius_p90",
    "flake_contrast",
)


def synthetic_pairs(params: Path, count: int, task: str) -> Iterator[tuple[np.ndarray, ...]]:
    """``count`` generated pairs of ``task`` over the builtin photos (seeded)."""
    cfg = load_config(params).data
    photos = builtin_photos(BUILTIN_PHOTOS) + builtin_photos(
        BUILTIN_TRAIN_PHOTOS, "synthetic.train_photos"
    )
    pixels = [read_rgb(photo.path).pixels for photo in photos]
    for index in range(count):
        photo = index % len(photos)
        rng = sample_rng(cfg.seed, task, photos[photo].name, 1000 + index)
        clean = random_crop(pixels[photo], cfg.synthetic.size, cfg.synthetic.min_scale, rng)
        if task == "rain":
            yield add_rain(clean, rng, cfg.synthetic.rain), clean
        else:
            yield (add_snow(clean, rng, cfg.synthetic.snow),)


def summarise(rows: list[dict[str, float]], keys: tuple[str, ...]) -> dict[str, list[float | None]]:
    """``key -> [p10, median, p90]`` over the rows that measured ``key`` (``None`` if none
    did: the veil light of unveiled pairs)."""
    summary: dict[str, list[float | None]] = {}
    for key in keys:
        values = [row[key] for row in rows if not math.isnan(row[key])]
        summary[key] = [
            round(float(np.percentile(values, q)), 3) if values else None for q in (10, 50, 90)
        ]
    return summary


def _cell(low: float | None, median: float | None, high: float | None) -> str:
    return "-" if median is None else f"{median:.3g} ({low:.3g}-{high:.3g})"


def table(summaries: dict[str, dict[str, list[float | None]]], keys: tuple[str, ...]) -> str:
    """Markdown: one row per source, ``median (p10-p90)`` per statistic."""
    lines = ["| source | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for source, summary in summaries.items():
        cells = [_cell(*summary[k]) for k in keys]
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean(values: list[float]) -> float | None:
    """Mean PSNR-Y, or ``None`` where an oracle restored a target exactly (infinite)."""
    return None if math.inf in values else round(float(np.mean(values)), 2)


def bounds_table(
    bounds: dict[str, dict[str, float | None]], worse: dict[str, dict[str, dict[str, float]]]
) -> str:
    """Markdown: per real set, the mean input PSNR-Y, each oracle's mean and gain, and the
    pairs that the streak oracle leaves below their input (its gain, the target's lift)."""
    keys = ("streaks_removed", "veil_removed", "brightening_removed", "veil_and_streaks_removed")
    header = ["real pairs", "input", *keys, "worse with streaks removed"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, row in bounds.items():
        cells = [
            "exact" if row[k] is None else f"{row[k]:.2f} ({row[k] - row['input']:+.2f})"
            for k in keys
        ]
        below = ", ".join(
            f"{pair} ({entry['gain']:+.2f}; target {entry['target_brighter']:+.1f} grey levels)"
            for pair, entry in worse[name].items()
        )
        lines.append(
            f"| {name} | {row['input']:.2f} | " + " | ".join(cells) + f" | {below or 'none'} |"
        )
    return "\n".join(lines)


def worse_with_streaks_removed(
    pairs: list[CheckPair], oracle: list[dict[str, float]]
) -> dict[str, dict[str, float]]:
    """The pairs whose input the streak oracle makes worse, with its gain (dB) and how much
    brighter the target is than the input (mean luma, grey levels): their target differs
    from the input by more than rain (a grading, a veil), so removing the streaks loses."""
    return {
        pair.name: {
            "gain": round(row["streaks_removed"] - row["input"], 2),
            "target_brighter": round(
                -255.0 * float(residual_luma(pair.degraded, pair.clean).mean()), 1
            ),
        }
        for pair, row in zip(pairs, oracle, strict=True)
        if row["streaks_removed"] < row["input"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", default="../shared/data/real", type=Path)
    parser.add_argument("--params", default="params.yaml", type=Path)
    parser.add_argument("--samples", type=int, default=48, help="generated images per task")
    parser.add_argument("--out", default="docs/degradation_stats.json", type=Path)
    args = parser.parse_args()

    rain: dict[str, dict[str, list[float | None]]] = {}
    bounds: dict[str, dict[str, float | None]] = {}
    worse: dict[str, dict[str, dict[str, float]]] = {}
    counts: dict[str, int] = {}
    checks = load_check_sets(args.real, REAL_CHECK_SETS)
    for name in REAL_CHECK_SETS:
        pairs = [pair for pair in checks.pairs if pair.dataset == name]
        rows = [rain_statistics(pair.degraded, pair.clean).as_dict() for pair in pairs]
        rain[name], counts[name] = summarise(rows, RAIN_KEYS), len(rows)
        oracle = [removal_bounds(pair.degraded, pair.clean).as_dict() for pair in pairs]
        bounds[name] = {key: _mean([row[key] for row in oracle]) for key in oracle[0]}
        worse[name] = worse_with_streaks_removed(pairs, oracle)
    rows = [
        rain_statistics(*pair).as_dict()
        for pair in synthetic_pairs(args.params, args.samples, "rain")
    ]
    rain["generator"], counts["generator rain"] = summarise(rows, RAIN_KEYS), len(rows)

    snow: dict[str, dict[str, list[float | None]]] = {}
    for folder in SNOW_FOLDERS:
        rows = [
            snow_statistics(read_rgb(path).pixels).as_dict()
            for path in image_files(args.real / folder)
        ]
        snow[Path(folder).name], counts[Path(folder).name] = summarise(rows, SNOW_KEYS), len(rows)
    rows = [
        snow_statistics(image).as_dict()
        for (image,) in synthetic_pairs(args.params, args.samples, "snow")
    ]
    snow["generator"], counts["generator snow"] = summarise(rows, SNOW_KEYS), len(rows)

    args.out.write_text(
        json.dumps(
            {
                "images": counts,
                "rain": rain,
                "snow": snow,
                "removal_bounds": bounds,
                "worse_with_streaks_removed": worse,
            },
            indent=2,
        )
        + "\n"
    )
    print(table(rain, RAIN_KEYS))
    print()
    print(table(snow, SNOW_KEYS))
    print()
    print(bounds_table(bounds, worse))
    print()
    print("images per source:", counts)


if __name__ == "__main__":
    main()
