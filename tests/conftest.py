import os
from pathlib import Path

import pytest

from tests.engine_fixtures import (  # noqa: F401  (pytest fixtures)
    mlflow_store,
    ray_session,
    tiny_config,
    tiny_config_file,
    tiny_data,
)

# Ray Train's controller polls its workers every 2 s and, on one machine, also starts a
# preemption watcher whose 5-s poll delays the end of every run: the tests' runs of a few
# seconds finish about 8 s sooner without them. Set before Ray starts (the controller and
# the `dvc repro` subprocesses inherit them); a value set outside the tests is kept.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")


@pytest.fixture
def real_data_dir() -> Path:
    """The shared real rain / snow samples (``SMARTASSIGN_REAL_DATA`` overrides the path)."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
    folder = Path(os.environ.get("SMARTASSIGN_REAL_DATA", default))
    if not folder.is_dir():
        pytest.skip(f"real-data folder is missing: {folder} (set SMARTASSIGN_REAL_DATA)")
    return folder
