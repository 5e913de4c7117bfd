"""How much the rain decoder alters images that hold no rain: the real pairs' clean targets.

Each clean target of the real check pairs (Rain12, RainTrainL_10, RainTrainH_12, SPA-Data
samples) goes whole through the rain decoder, and the result is scored against the target
itself (PSNR-Y / SSIM-Y, BT.601). A model that leaves rain-free content alone scores high;
the mean per set is also the ceiling of what the model can reach on that set's rainy
inputs, since removing the rain perfectly leaves it the clean image to pass through.
Writes ``docs/clean_images.json`` (mean and worst image per set) and prints a markdown
table::

    python docs/clean_images.py --model models/smartassign --data ../shared/data/real
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from smartassign.config import REAL_CHECK_SETS, load_config
from smartassign.data.real_checks import load_check_sets
from smartassign.inference import restore_image
from smartassign.metrics import psnr, ssim
from smartassign.model_io import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/smartassign", help="model folder or URI")
    parser.add_argument("--data", default="../shared/data/real", type=Path)
    parser.add_argument("--params", default="params.yaml", help="inference settings")
    parser.add_argument("--out", default="docs/clean_images.json", type=Path)
    args = parser.parse_args()

    torch.set_num_threads(2)
    settings = load_config(args.params).inference
    model = load_model(args.model, torch.device("cpu"))
    checks = load_check_sets(args.data, REAL_CHECK_SETS)
    if not checks.pairs:
        raise SystemExit(f"no real check pairs under {args.data}: pass --data")
    scores: dict[str, dict[str, tuple[float, float]]] = {}
    for pair in checks.pairs:
        restored = restore_image(model, pair.clean, "rain", settings).pixels
        scores.setdefault(pair.dataset, {})[pair.name] = (
            psnr(restored, pair.clean, y_channel=True),
            ssim(restored, pair.clean, y_channel=True),
        )
    summary = {}
    print("| real pairs | clean images | PSNR-Y mean | PSNR-Y worst (image) | SSIM-Y mean |")
    print("|---|---:|---:|---:|---:|")
    for name, per_image in scores.items():
        worst = min(per_image, key=lambda image: per_image[image][0])
        summary[name] = {
            "images": len(per_image),
            "psnr_y_mean": round(float(np.mean([p for p, _ in per_image.values()])), 2),
            "ssim_y_mean": round(float(np.mean([s for _, s in per_image.values()])), 4),
            "worst": {"image": worst, "psnr_y": round(per_image[worst][0], 2)},
            "psnr_y": {image: round(p, 2) for image, (p, _) in per_image.items()},
        }
        row = summary[name]
        print(
            f"| {name} | {row['images']} | {row['psnr_y_mean']:.2f} | "
            f"{row['worst']['psnr_y']:.2f} ({worst}) | {row['ssim_y_mean']:.4f} |"
        )
    payload = {"model": str(args.model), "sets": summary}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
