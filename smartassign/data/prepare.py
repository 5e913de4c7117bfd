"""The prepare stage: list, split, check and hash every pair; write manifests and the report.

Steps, all driven by ``cfg.data``:

1. the synthetic default (if enabled) is generated under ``<root>/synthetic``;
2. each configured benchmark is listed by its layout adapter; pairs without a published
   split are assigned one by a seeded shuffle of their clean images (``test_fraction``,
   then ``val_fraction``), so no clean image is in two splits; ``max_pairs`` trims a split;
3. every pair is decoded in full (:func:`~smartassign.data.images.read_rgb`): unreadable,
   empty, non-image, size-mismatched and (with ``small_images: refuse``) too-small training
   pairs are skipped and listed; grey / RGBA / palette / 16-bit / EXIF-rotated files are
   used as fixed and listed;
4. with ``precrop.size``, training pairs are cut into tiles under ``<root>/crops``;
5. ``<root>/manifests/{train,val,test}.jsonl`` and ``<root>/report.json`` are written.

``strict=True`` turns any skipped file into a :class:`DataError` before manifests are written.
"""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from smartassign.config import Config, DataConfig, DatasetSpec
from smartassign.data.common import (
    SPLITS,
    DataError,
    Issue,
    Pair,
    identical_pair,
    seeded_subset,
)
from smartassign.data.images import read_rgb, split_side_by_side, write_png
from smartassign.data.layouts import list_pairs
from smartassign.data.manifest import (
    Record,
    file_sha256,
    manifest_path,
    stored_path,
    write_manifest,
)
from smartassign.data.report import PrepareReport, score_quality
from smartassign.data.synthetic import generate

OUTPUT_FOLDERS = ("synthetic", "crops", "manifests")
"""Folders under the data root that the stage owns: emptied at the start of every run."""

_STRICT_LISTED = 20


@dataclass(frozen=True)
class _Job:
    """One pair to check; record names are relative to ``base``."""

    dataset: str
    base: Path
    pair: Pair


def prepare(cfg: Config, *, strict: bool = False, progress: bool = True) -> PrepareReport:
    """Run the prepare stage into ``cfg.data.root`` and return its report.

    Raises:
        DataError: a configured root or layout is missing, no photo is usable for the
            synthetic set, or (``strict``) any file was skipped.
    """
    data = cfg.data
    root = Path(data.root)
    for folder in OUTPUT_FOLDERS:
        shutil.rmtree(root / folder, ignore_errors=True)
        (root / folder).mkdir(parents=True)
    jobs: list[_Job] = []
    issues: list[Issue] = []
    if data.synthetic.enabled:
        pairs, found = generate(data, root / "synthetic", progress=progress)
        jobs += [_Job("synthetic", root / "synthetic", pair) for pair in pairs]
        issues += found
    for index, spec in enumerate(data.datasets):
        try:
            pairs, found = list_pairs(spec)
        except DataError as error:
            reason = f"data.datasets[{index}].root: {error.reason}"
            raise DataError(reason, path=error.path, kind=error.kind) from None
        pairs = limit_splits(assign_splits(pairs, spec, data.seed), spec, data.seed)
        jobs += [_Job(spec.name, Path(spec.root).expanduser(), pair) for pair in pairs]
        issues += found
    records: dict[str, list[Record]] = {split: [] for split in SPLITS}
    for checked, found in _check_all(jobs, data, root, progress):
        for record in checked:
            records[record.split].append(record)
        issues += found
    issues = list(dict.fromkeys(issues))
    report = PrepareReport(root, records, issues=issues)
    if strict and report.skipped:
        listed = "\n".join(
            f"  {issue.path}: {issue.reason}" for issue in report.skipped[:_STRICT_LISTED]
        )
        more = len(report.skipped) - _STRICT_LISTED
        raise DataError(
            f"--strict: {len(report.skipped)} files would be skipped:\n{listed}"
            + (f"\n  ... and {more} more" if more > 0 else "")
        )
    for split in SPLITS:
        write_manifest(manifest_path(root, split), records[split])
    report.quality = score_quality(
        (record for split in SPLITS for record in records[split]),
        root,
        max_pairs=data.quality_pairs,
        seed=data.seed,
        workers=data.prepare_workers,
        progress=progress,
    )
    report.write(root / "report.json")
    return report


def assign_splits(pairs: list[Pair], spec: DatasetSpec, seed: int) -> list[Pair]:
    """Give every pair a split, keeping pairs that share a clean image together.

    Pairs the layout left unsplit go to test (``test_fraction`` of their clean images) if
    the data set has no published test pairs, the rest to train. If there are no
    published val pairs, ``val_fraction`` of the training clean images move to val.
    """
    published = {pair.split for pair in pairs}
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])
    moved: dict[str, str] = {}
    if "test" not in published:
        unsplit = _groups(pair for pair in pairs if pair.split is None)
        moved |= dict.fromkeys(_draw(unsplit, spec.test_fraction, rng), "test")
    pairs = [replace(pair, split=moved.get(pair.group, pair.split or "train")) for pair in pairs]
    if "val" not in published:
        train = _groups(pair for pair in pairs if pair.split == "train")
        moved = dict.fromkeys(_draw(train, spec.val_fraction, rng), "val")
        pairs = [replace(pair, split=moved.get(pair.group, pair.split)) for pair in pairs]
    return pairs


def _groups(pairs: Iterator[Pair]) -> list[str]:
    return list(dict.fromkeys(pair.group for pair in pairs))


def _draw(groups: list[str], fraction: float, rng: np.random.Generator) -> list[str]:
    count = round(len(groups) * fraction)
    return [groups[i] for i in rng.permutation(len(groups))[:count]]


def limit_splits(pairs: list[Pair], spec: DatasetSpec, seed: int) -> list[Pair]:
    """At most ``spec.max_pairs.<split>`` pairs per split (0 = all), a seeded random subset."""
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode()), 1])
    keep: set[int] = set()
    for split in SPLITS:
        members = [i for i, pair in enumerate(pairs) if pair.split == split]
        keep.update(seeded_subset(members, getattr(spec.max_pairs, split), rng))
    return [pair for i, pair in enumerate(pairs) if i in keep]


def _check_all(
    jobs: list[_Job], data: DataConfig, root: Path, progress: bool
) -> Iterator[tuple[list[Record], list[Issue]]]:
    """:func:`_check` over all jobs on a thread pool (decoding and hashing release the GIL)."""
    from smartassign.progress import progress as show

    with ThreadPoolExecutor(max_workers=data.prepare_workers) as pool:
        results = pool.map(lambda job: _check(job, data, root), jobs)
        yield from show(results, total=len(jobs), desc="check", unit="pair", enabled=progress)


def _check(job: _Job, data: DataConfig, root: Path) -> tuple[list[Record], list[Issue]]:
    """Decode one pair; return its manifest records (several when tiled) and its issues."""
    pair = job.pair
    try:
        if pair.side_by_side:
            whole = read_rgb(pair.input)
            degraded, clean = split_side_by_side(whole.pixels)
            fixes = [(pair.input, whole.fixes)]
        else:
            first, second = read_rgb(pair.input), read_rgb(pair.target)
            degraded, clean = first.pixels, second.pixels
            fixes = [(pair.input, first.fixes), (pair.target, second.fixes)]
    except DataError as error:
        return [], [Issue(job.dataset, str(error.path), error.kind, error.reason, "skipped")]
    issues = [
        Issue(job.dataset, str(path), kind, description, "fixed")
        for path, found in fixes
        for kind, description in found
    ]
    height, width = degraded.shape[:2]
    if degraded.shape != clean.shape:
        reason = (
            f"input {width}x{height} but target {clean.shape[1]}x{clean.shape[0]} ({pair.target})"
        )
        return [], [
            *issues,
            Issue(job.dataset, str(pair.input), "size_mismatch", reason, "skipped"),
        ]
    identical = identical_pair(pair, degraded, clean, job.dataset)
    if identical is not None:
        return [], [*issues, identical]
    too_small = min(height, width) < data.crop_size
    if pair.split == "train" and too_small and data.small_images == "refuse":
        reason = (
            f"{width}x{height} is smaller than crop_size {data.crop_size} (small_images: refuse)"
        )
        return [], [*issues, Issue(job.dataset, str(pair.input), "too_small", reason, "skipped")]
    name = _name(job)
    size = data.precrop.size
    if pair.split == "train" and size and min(height, width) >= size and max(height, width) > size:
        return _tiles(job, name, degraded, clean, data, root), issues
    record = Record(
        name=name,
        dataset=job.dataset,
        subset=pair.subset,
        task=pair.task,
        split=str(pair.split),
        input=stored_path(pair.input, root),
        target=stored_path(pair.target, root),
        width=width,
        height=height,
        input_sha256=file_sha256(pair.input),
        target_sha256=file_sha256(pair.target),
        side_by_side=pair.side_by_side,
    )
    return [record], issues


def _name(job: _Job) -> str:
    """``<dataset>/<input path inside the data set, no suffix>``: unique in a manifest."""
    relative = Path(os.path.relpath(job.pair.input, job.base))
    inside = [part for part in relative.with_suffix("").parts if part != ".."]
    return "/".join([job.dataset, *inside])


def _tiles(
    job: _Job, name: str, degraded: np.ndarray, clean: np.ndarray, data: DataConfig, root: Path
) -> list[Record]:
    """Cut a training pair into ``precrop.size`` tiles (the last row / column flush with the
    border, as BasicSR's ``extract_subimages``) and write them under ``<root>/crops``."""
    size = data.precrop.size
    stride = data.precrop.stride or size
    height, width = degraded.shape[:2]
    records = []
    for index, (top, left) in enumerate(
        (top, left)
        for top in _starts(height, size, stride)
        for left in _starts(width, size, stride)
    ):
        stem = f"{name.split('/', 1)[1]}_s{index:03d}.png"
        paths = [root / "crops" / job.dataset / part / stem for part in ("input", "target")]
        for path, pixels in zip(paths, (degraded, clean), strict=True):
            write_png(path, np.ascontiguousarray(pixels[top : top + size, left : left + size]))
        records.append(
            Record(
                name=f"{name}_s{index:03d}",
                dataset=job.dataset,
                subset=job.pair.subset,
                task=job.pair.task,
                split="train",
                input=stored_path(paths[0], root),
                target=stored_path(paths[1], root),
                width=size,
                height=size,
                input_sha256=file_sha256(paths[0]),
                target_sha256=file_sha256(paths[1]),
            )
        )
    return records


def _starts(length: int, size: int, stride: int) -> list[int]:
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts
