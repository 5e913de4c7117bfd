"""Layout adapters: list the (input, target, task) pairs of each published data set layout.

An adapter only walks folders and pairs file names; it opens no image. Files it cannot
pair come back as ``missing_partner`` issues. docs/data.md shows each layout's tree.

=============  =====  ==================================================================
layout         task   what the adapter looks for under ``root``
=============  =====  ==================================================================
rain_streak    rain   Li et al. (CVPR'19) rain streaks: ``rain/`` + ``norain/`` (or
                      ``rainy``/``input``/``data`` + ``clean``/``gt``/``target``), per
                      split folder (``train*``/``test*``/``val*``) or one unsplit pool;
                      Rain100L/H, RainTrainL/H: ``rain-N`` beside ``norain-N`` in one
                      folder, or ``rainy/rain-N`` with ``norain-N``
rain1200       rain   DID-MDN: ``input | target`` side-by-side files; ``*train*`` and
                      ``*test*`` folders give the split, ``Rain_Heavy`` etc. the subset
spa            rain   SPA-Data: ``real_world/V/V-f/V-f_x_y.png`` -> ``real_world_gt/V/V_x_y.png``
                      (train), ``real_test_1000/rain/N.png`` -> ``.../gt/Ngt.png`` (test)
snow100k       snow   ``synthetic/`` + ``gt/`` (``mask/`` ignored) under ``Snow100K-training/all``
                      (train) and ``Snow100K-S|M|L`` (test, subsets S / M / L)
srrs           snow   ``Syn/`` + ``gt/`` (or ``gt_new/``), unsplit; or ``Snow/`` + ``Gt/`` per
                      split folder
csd            snow   ``Train/`` and ``Test/``, each ``Snow/`` + ``Gt/`` (``Mask/`` ignored)
paired         any    ``root/input_dir`` + ``root/target_dir`` with a name rule (``match``)
=============  =====  ==================================================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from smartassign.config import DatasetSpec
from smartassign.data.common import IMAGE_SUFFIXES, DataError, Issue, Pair
from smartassign.data.pairing import Strategy, match_files, rule_strategies, stem

Listing = tuple[list[Pair], list[Issue]]

_SPLIT_PREFIXES = (("train", "train"), ("test", "test"), ("val", "val"))
_SPA_FRAME = re.compile(r"^(?P<video>.+)-[^_]+_(?P<x>\d+)_(?P<y>\d+)$")
_SNOW100K_TEST = re.compile(r"^snow100k-([sml])$", re.IGNORECASE)
_RAIN1200_SUBSET = re.compile(r"^rain_(heavy|medium|light)$", re.IGNORECASE)


def list_pairs(spec: DatasetSpec) -> Listing:
    """All pairs of one configured data set, and the files that found no partner.

    Raises:
        DataError: the root is missing, or holds nothing this layout recognises.
    """
    root = Path(spec.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data set {spec.name!r}: root folder {root} does not exist")
    pairs, issues = _ADAPTERS[spec.layout](spec, root)
    if not pairs:
        raise DataError(
            f"data set {spec.name!r}: no {spec.layout} pairs found under {root} "
            "(see docs/data.md for the expected folder tree)"
        )
    return pairs, issues


def image_files(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (by suffix), hidden files and folders skipped, sorted."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        path
        for path in candidates
        if path.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file()
    )


def split_of(name: str) -> str | None:
    """``train2500`` -> train, ``Test`` -> test, ``validation`` -> val, else ``None``."""
    lowered = name.lower()
    for prefix, split in _SPLIT_PREFIXES:
        if lowered.startswith(prefix):
            return split
    return None


def _pair_up(
    spec: DatasetSpec,
    inputs: list[Path],
    targets: list[Path],
    strategies: list[Strategy],
    *,
    task: str,
    split: str | None,
    subset: str = "",
) -> Listing:
    matching = match_files(inputs, targets, strategies)
    pairs = [Pair(i, t, task, split, subset) for i, t in matching.pairs]
    issues = [
        Issue(spec.name, str(path), "missing_partner", reason, "skipped")
        for paths, reason in (
            (matching.unmatched_inputs, "no clean target matches this input"),
            (matching.unmatched_targets, "no degraded input matches this target"),
        )
        for path in paths
    ]
    return pairs, issues


def _merge(listings: Iterable[Listing]) -> Listing:
    pairs: list[Pair] = []
    issues: list[Issue] = []
    for more_pairs, more_issues in listings:
        pairs += more_pairs
        issues += more_issues
    return pairs, issues


def _child(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` (case-insensitive, in order) that is a sub-folder."""
    children = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    for name in names:
        if name.lower() in children:
            return children[name.lower()]
    return None


def _unwrap(root: Path) -> Path:
    """Descend through folders that only wrap one sub-folder (zip nesting), stopping at a
    split folder (``Train/``) or at images."""
    while True:
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
        folders = [p for p in entries if p.is_dir()]
        wrapper = len(folders) == 1 and split_of(folders[0].name) is None
        if not wrapper or any(p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
            return root
        root = folders[0]


def _two_folders(
    spec: DatasetSpec,
    root: Path,
    *,
    task: str,
    input_names: tuple[str, ...],
    target_names: tuple[str, ...],
) -> Listing:
    """Input and target folders, in each split folder that has both, else under ``root``."""
    root = _unwrap(root)
    places = []
    for place in sorted(p for p in root.iterdir() if p.is_dir()):
        split = split_of(place.name)
        folders = (_child(place, input_names), _child(place, target_names))
        if split is not None and None not in folders:
            places.append((split, folders))
    if not places:
        folders = (_child(root, input_names), _child(root, target_names))
        if None in folders:
            raise DataError(
                f"data set {spec.name!r}: {root} needs an input folder (one of "
                f"{', '.join(input_names)}) and a target folder (one of "
                f"{', '.join(target_names)}), directly or in train* / test* / val* folders"
            )
        places = [(None, folders)]
    strategies = rule_strategies("auto")
    return _merge(
        _pair_up(
            spec, image_files(inputs), image_files(targets), strategies, task=task, split=split
        )
        for split, (inputs, targets) in places
    )


_RAIN_INPUTS = ("rain", "rainy", "input", "data")
_RAIN_TARGETS = ("norain", "clean", "gt", "target", "ground_truth")


def _prefixed(folder: Path, prefix: str) -> list[Path]:
    """Image files of ``folder`` whose name starts with ``prefix-`` (case-insensitive)."""
    return [p for p in image_files(folder) if p.name.lower().startswith(prefix + "-")]


def _rain_streak_one_folder(spec: DatasetSpec, root: Path) -> Listing | None:
    """The Rain100L / Rain100H / RainTrainL / RainTrainH releases: ``rain-N.png`` beside
    ``norain-N.png`` in one folder, or the inputs in a ``rainy/`` (or ``rain/``) sub-folder
    with ``norain-N.png`` in the folder itself. ``None`` when ``root`` is neither."""
    targets = _prefixed(root, "norain")
    if not targets:
        return None
    inputs = _prefixed(root, "rain")
    if not inputs:
        folder = _child(root, ("rainy", "rain"))
        inputs = _prefixed(folder, "rain") if folder is not None else []
    return _pair_up(
        spec, inputs, targets, rule_strategies("prefix"), task="rain", split=split_of(root.name)
    )


def _rain_streak(spec: DatasetSpec, root: Path) -> Listing:
    one_folder = _rain_streak_one_folder(spec, _unwrap(root))
    if one_folder is not None:
        return one_folder
    return _two_folders(
        spec, root, task="rain", input_names=_RAIN_INPUTS, target_names=_RAIN_TARGETS
    )


def _srrs(spec: DatasetSpec, root: Path) -> Listing:
    return _two_folders(
        spec, root, task="snow", input_names=("Syn", "Snow"), target_names=("gt_new", "gt")
    )


def _csd(spec: DatasetSpec, root: Path) -> Listing:
    return _two_folders(spec, root, task="snow", input_names=("Snow",), target_names=("Gt",))


def _rain1200(spec: DatasetSpec, root: Path) -> Listing:
    pairs = []
    for path in image_files(root, recursive=True):
        parts = path.relative_to(root).parts[:-1]
        splits = {split_of(word) for part in parts for word in re.split(r"[-_ ]", part)}
        split = "test" if "test" in splits else "train" if "train" in splits else None
        subset = next((part for part in parts if _RAIN1200_SUBSET.match(part)), "")
        pairs.append(Pair(path, path, "rain", split, subset, side_by_side=True))
    return pairs, []


def _spa_frame_key(name: str) -> str | None:
    """``000-3_1_2`` (video 000, frame 3, patch 1,2) -> ``000_1_2``, the name of its gt."""
    found = _SPA_FRAME.match(name)
    return None if found is None else f"{found['video']}_{found['x']}_{found['y']}"


def _spa_gt_key(name: str) -> str | None:
    """``123gt`` -> ``123``."""
    return name[:-2] if name.endswith("gt") else None


def _spa(spec: DatasetSpec, root: Path) -> Listing:
    listings = []
    for folder in _find_dirs(root, "real_world"):
        gt = folder.parent / "real_world_gt"
        if gt.is_dir():
            listings.append(
                _pair_up(
                    spec,
                    image_files(folder, recursive=True),
                    image_files(gt, recursive=True),
                    [(_spa_frame_key, stem)],
                    task="rain",
                    split="train",
                )
            )
    for folder in _find_dirs(root, "real_test_1000"):
        rain, gt = folder / "rain", folder / "gt"
        if rain.is_dir() and gt.is_dir():
            listings.append(
                _pair_up(
                    spec,
                    image_files(rain),
                    image_files(gt),
                    [(stem, _spa_gt_key), (stem, stem)],
                    task="rain",
                    split="test",
                )
            )
    return _merge(listings)


def _snow100k(spec: DatasetSpec, root: Path) -> Listing:
    listings = []
    for folder in _find_dirs(root, "synthetic"):
        gt = folder.parent / "gt"
        if not gt.is_dir():
            continue
        test = _SNOW100K_TEST.match(folder.parent.name)
        listings.append(
            _pair_up(
                spec,
                image_files(folder),
                image_files(gt),
                [(stem, stem)],
                task="snow",
                split="test" if test else "train",
                subset=test.group(1).upper() if test else "",
            )
        )
    return _merge(listings)


def _paired(spec: DatasetSpec, root: Path) -> Listing:
    folders = [root / spec.input_dir, root / spec.target_dir]
    for folder in folders:
        if not folder.is_dir():
            raise DataError(f"data set {spec.name!r}: folder {folder} does not exist")
    assert spec.task is not None  # checked by DatasetSpec
    return _pair_up(
        spec,
        image_files(folders[0]),
        image_files(folders[1]),
        rule_strategies(spec.match, spec.input_regex, spec.target_regex),
        task=spec.task,
        split=None if spec.split == "auto" else spec.split,
    )


def _find_dirs(root: Path, name: str) -> list[Path]:
    """Folders called ``name`` (case-insensitive) under ``root``, not descending into them."""
    found = []
    for current, folders, _ in os.walk(root):
        folders.sort()
        for folder in [f for f in folders if f.lower() == name.lower()]:
            found.append(Path(current) / folder)
            folders.remove(folder)
    return found


_ADAPTERS: dict[str, Callable[[DatasetSpec, Path], Listing]] = {
    "rain_streak": _rain_streak,
    "rain1200": _rain1200,
    "spa": _spa,
    "snow100k": _snow100k,
    "srrs": _srrs,
    "csd": _csd,
    "paired": _paired,
}
