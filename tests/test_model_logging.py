"""Requirements of the model logged to MLflow (model_io.model_requirements)."""

from __future__ import annotations

from importlib.metadata import version

from smartassign.model_io import MODEL_PACKAGES, model_requirements


def test_requirements_pin_every_package_without_a_local_label():
    pins = dict(line.split("==") for line in model_requirements())
    assert list(pins) == list(MODEL_PACKAGES)
    assert all("+" not in pinned for pinned in pins.values()), pins
    assert pins["torch"] == version("torch").split("+")[0]
    assert pins["smartassign"] == version("smartassign")
