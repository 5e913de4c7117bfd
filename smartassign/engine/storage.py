"""Run folders in local or remote storage and their JSON state files: the pure parts of a
run's lifecycle.

Training runs, sweeps and ablation studies live in a folder under a storage path that is a
local directory or an ``s3://`` / ``gs://`` URI (read and written through ``pyarrow.fs``,
as Ray does). Beside Ray's own data each keeps a small JSON state file: the fingerprint of
the configuration it runs, its MLflow run, and whether it completed. Who decides to resume
is the run's owner: :class:`smartassign.engine.run.TrainingRun` for training,
:mod:`smartassign.tuning.experiment` for sweeps and studies.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow.fs

from smartassign.config import Config


def absolute_storage(storage: str) -> str:
    """A storage path, local paths made absolute (workers and trials run in other working
    directories); URIs are kept, without a trailing slash."""
    return storage.rstrip("/") if "://" in storage else str(Path(storage).resolve())


def absolute_paths(cfg: Config, keys: tuple[str, ...] = ("data.root",)) -> Config:
    """``cfg`` with the local paths at the dotted ``keys`` resolved against this working
    directory (Ray workers and trials run in others); URIs are kept."""
    updates = {}
    for key in keys:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if "://" not in value:
            updates[key] = str(Path(value).resolve())
    return cfg.override(updates)


def fingerprint(cfg: Config, sections: tuple[str, ...] | None = None) -> str:
    """sha256 of the configuration (only ``sections`` of it when given): a run resumes only
    with the same one."""
    tree = cfg.to_dict()
    if sections is not None:
        tree = {section: tree[section] for section in sections}
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()


def read_state(folder: str, name: str) -> dict[str, Any] | None:
    """The JSON state file ``name`` in ``folder`` (local or URI), or ``None``."""
    fs, base = pyarrow.fs.FileSystem.from_uri(folder)
    target = f"{base}/{name}"
    if fs.get_file_info(target).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(target) as stream:
        return json.loads(stream.read().decode())


def write_state(folder: str, name: str, state: dict[str, Any]) -> None:
    """Write ``state`` as the JSON file ``name`` in ``folder``, creating the folder."""
    fs, base = pyarrow.fs.FileSystem.from_uri(folder)
    fs.create_dir(base, recursive=True)
    with fs.open_output_stream(f"{base}/{name}") as stream:
        stream.write(json.dumps(state, indent=2).encode())


def remove(folder: str) -> None:
    """Delete ``folder`` (local or URI) with everything in it, if it exists."""
    fs, base = pyarrow.fs.FileSystem.from_uri(folder)
    if fs.get_file_info(base).type == pyarrow.fs.FileType.Directory:
        fs.delete_dir(base)
