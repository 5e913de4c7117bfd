"""Manifests: one JSON line per checked pair, written by the prepare stage.

A record names its input and target files (relative to the data root when they were
written there, absolute otherwise), the image size, task, split, data set and the SHA-256
of both files, so DVC and readers can tell when anything changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from smartassign.data.common import SPLITS, TASKS, DataError
from smartassign.data.images import read_rgb, split_side_by_side


@dataclass(frozen=True)
class Record:
    """One pair of a manifest."""

    name: str
    dataset: str
    subset: str
    task: str
    split: str
    input: str
    target: str
    width: int
    height: int
    input_sha256: str
    target_sha256: str
    side_by_side: bool = False

    def resolve(self, root: Path) -> tuple[Path, Path]:
        """Absolute input and target paths (relative ones are under the data ``root``)."""
        return root / self.input, root / self.target


def manifest_path(root: Path, split: str) -> Path:
    """Where the manifest of ``split`` lives under the data root."""
    return root / "manifests" / f"{split}.jsonl"


def stored_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (portable), else absolute."""
    path = path.resolve()
    try:
        return path.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(path: Path, records: list[Record]) -> None:
    """Write ``records`` as JSON lines (UTF-8, names kept as they are)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(asdict(record), ensure_ascii=False, sort_keys=True) + "\n")


def existing_manifest(path: Path) -> Path:
    """``path``, or ``DataError`` naming it when the manifest file is missing."""
    if not path.is_file():
        raise DataError(f"manifest {path} not found: run `smartassign prepare` (or `dvc repro`)")
    return path


def read_manifest(path: Path) -> list[Record]:
    """Records of a manifest file.

    Raises:
        DataError: the file is missing (run ``smartassign prepare``) or a line is malformed.
    """
    return _parse_manifest(existing_manifest(path).read_text(encoding="utf-8"), path)


def read_manifest_and_sha256(path: Path) -> tuple[list[Record], str]:
    """Records of a manifest file and the sha256 of the very bytes they were read from, so
    the hash names exactly the records a score is taken on (errors as :func:`read_manifest`)."""
    data = existing_manifest(path).read_bytes()
    return _parse_manifest(data.decode("utf-8"), path), hashlib.sha256(data).hexdigest()


def _parse_manifest(text: str, path: Path) -> list[Record]:
    names = {field.name for field in fields(Record)}
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            entry = json.loads(line)
            record = Record(**{key: entry[key] for key in names if key in entry})
        except (json.JSONDecodeError, TypeError) as error:
            raise DataError(f"manifest {path}, line {number}: malformed ({error})") from None
        if record.task not in TASKS or record.split not in SPLITS:
            raise DataError(
                f"manifest {path}, line {number}: task {record.task!r} / split "
                f"{record.split!r} not in {TASKS} / {SPLITS}"
            )
        records.append(record)
    return records


def load_pair(record: Record, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Input and target pixels of a record (``uint8``, ``H x W x 3``, same size).

    Raises:
        DataError: a file is unreadable, or the pair no longer matches in size (the files
            changed since the manifest was written: run the prepare stage again).
    """
    input_path, target_path = record.resolve(root)
    if record.side_by_side:
        degraded, clean = split_side_by_side(read_rgb(input_path).pixels)
    else:
        degraded, clean = read_rgb(input_path).pixels, read_rgb(target_path).pixels
    if degraded.shape != clean.shape:
        raise DataError(
            f"input {degraded.shape[1]}x{degraded.shape[0]} and target "
            f"{clean.shape[1]}x{clean.shape[0]} differ in size; run the prepare stage again",
            path=input_path,
            kind="size_mismatch",
        )
    return degraded, clean
