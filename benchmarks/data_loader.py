"""Throughput of the training DataLoader (read PNGs, paired crop / horizontal flip, to tensors).

    python benchmarks/data_loader.py [--params params.yaml] [--crop 256] [--workers 2]
                                     [--data-root DIR] [--out PATH]

Uses the data already prepared under ``--data-root`` (default ``data.root`` of the params
file) or, when it holds no manifests, prepares the synthetic default into a temporary
folder first. Reports training samples per second at ``--crop`` crops with ``--workers``
loader processes (median of ``--repeats`` passes of ``--samples`` samples each, after the
worker start-up, which is reported apart), prints the JSON and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from reporting import write_report

from smartassign.config import load_config
from smartassign.data.dataset import build_dataloader
from smartassign.data.manifest import manifest_path
from smartassign.data.prepare import prepare
from smartassign.engine.devices import machine


def _pass(loader: torch.utils.data.DataLoader, samples: int, epoch: int) -> float:
    """Seconds to draw ``samples`` training samples (cycling epochs as needed)."""
    seen = 0
    start = time.perf_counter()
    while seen < samples:
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            seen += batch["input"].shape[0]
            if seen >= samples:
                break
        epoch += 1
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    parser.add_argument("--data-root", help="prepared data folder (default: data.root)")
    parser.add_argument("--crop", type=int, default=256, help="crop side (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="loader processes (default: 2)")
    parser.add_argument("--batch-size", type=int, default=4, help="batch size (default: 4)")
    parser.add_argument("--samples", type=int, default=480, help="samples per pass (default: 480)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (default: 3)")
    parser.add_argument(
        "--out",
        default="benchmarks/results/data_loader.json",
        help="JSON output (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    cfg = load_config(args.params)
    root = Path(args.data_root or cfg.data.root)
    with tempfile.TemporaryDirectory(prefix="smartassign-bench-") as scratch:
        prepare_s = None
        if not manifest_path(root, "train").is_file():
            root = Path(scratch)
            start = time.perf_counter()
            prepare(cfg.override({"data.root": str(root)}), progress=False)
            prepare_s = time.perf_counter() - start
        cfg = cfg.override(
            {
                "data.root": str(root),
                "data.crop_size": args.crop,
                "model.recognition_window": args.crop,
                "data.num_workers": args.workers,
            }
        )
        loader = build_dataloader(cfg, "train", batch_size=args.batch_size)
        startup_s = _pass(loader, args.batch_size, epoch=0)
        times = [_pass(loader, args.samples, epoch=1 + i) for i in range(args.repeats)]
        pairs = len(loader.dataset)
    result = {
        "benchmark": "training DataLoader throughput",
        "crop_size": args.crop,
        "num_workers": args.workers,
        "batch_size": args.batch_size,
        "samples_per_pass": args.samples,
        "samples_per_s": round(args.samples / statistics.median(times), 1),
        "pass_s": [round(t, 3) for t in times],
        "first_batch_s": round(startup_s, 3),
        "prepare_s": None if prepare_s is None else round(prepare_s, 1),
        "training_pairs": pairs,
        "machine": machine(),
    }
    write_report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
