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


@pytest.fixture
def real_data_dir() -> Path:
    """The shared real rain / snow samples (``SMARTASSIGN_REAL_DATA`` overrides the path)."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
    folder = Path(os.environ.get("SMARTASSIGN_REAL_DATA", default))
    if not folder.is_dir():
        pytest.skip(f"real-data folder is missing: {folder} (set SMARTASSIGN_REAL_DATA)")
    return folder
