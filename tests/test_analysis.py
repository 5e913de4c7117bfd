"""Knowledge-assignment analysis (paper Fig. 3): gate statistics, atom classes, separation,
the files and MLflow record of ``smartassign analyze``, and what each variant skips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from smartassign.analysis.assignment import (
    GateStatistics,
    class_counts,
    classify_atoms,
    gate_statistics,
    image_spread,
    task_gap,
)
from smartassign.analysis.collect import collect, degraded_images, split_records
from smartassign.analysis.report import FILES
from smartassign.analysis.separation import silhouette
from smartassign.builder import build_model
from smartassign.cli import main
from smartassign.config import config_from_dict, load_config
from smartassign.data.tensors import to_tensor
from smartassign.engine import tracking
from smartassign.model.network import pad_to_multiple
from smartassign.model_io import save_model_dir

from .engine_fixtures import tiny_tree, trained_model_folder


def test_gate_statistics_equal_the_gkfm_gates_on_f_wk(tiny_data):
    """Each kind's mean gate over a task's images is the GKFM gate (Eq. 11) computed
    directly from that image's F_wk, averaged by hand."""
    cfg = config_from_dict(tiny_tree(tiny_data))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    for module in model.gkfm.values():  # gates that differ between atoms and images
        torch.nn.init.normal_(module.gate.fc1.weight, std=2.0)
        torch.nn.init.normal_(module.gate.fc2.weight, std=2.0)
    images = list(degraded_images(split_records(tiny_data, "test")[0], tiny_data))
    images += [(f"{name}-flipped", task, pixels[:, ::-1].copy()) for name, task, pixels in images]
    stats = gate_statistics(collect(model, images, cfg.model.drm_grid, progress=False))

    expected: dict[tuple[str, str], list[np.ndarray]] = {}
    with torch.no_grad():
        for _, task, pixels in images:
            image = model.remove_veil(to_tensor(pixels)[None])
            whole = model.encoder(pad_to_multiple(image, model.size_multiple))
            for kind, module in model.gkfm.items():
                gates = module.gate.gate_values(whole.mean(dim=(2, 3)))[0].numpy()
                expected.setdefault((kind, task), []).append(gates)
    assert (
        set(stats.mean)
        == set(expected)
        == {(k, t) for k in ("rk", "ck", "sk") for t in ("rain", "snow")}
    )
    for key, values in expected.items():
        np.testing.assert_allclose(stats.mean[key], np.mean(values, axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stats.std[key], np.std(values, axis=0), rtol=1e-4, atol=1e-6)
        assert stats.std[key].max() > 0  # two different images per task
    assert stats.images == {"rain": 2, "snow": 2}


def test_atoms_are_classified_by_the_stated_rule():
    rain = np.array([0.90, 0.50, 0.20, 0.01, 0.60, 0.55])
    common = np.array([0.50, 0.50, 0.30, 0.02, 0.60, 0.50])
    snow = np.array([0.40, 0.95, 0.25, 0.04, 0.30, 0.50])
    classes = classify_atoms(rain, common, snow, lead_margin=0.1, closed_below=0.05)
    assert classes == ["rain_led", "snow_led", "shared", "closed", "shared", "shared"]
    # the margin decides: atom 5 leads rain by 0.05
    assert classify_atoms(rain, common, snow, lead_margin=0.05, closed_below=0.05)[5] == "rain_led"
    assert class_counts(classes) == {"rain_led": 1, "shared": 3, "snow_led": 1, "closed": 1}
    # a single-task rain model has no snow affinity: no atom can be snow-led
    single = classify_atoms(rain, common, None, lead_margin=0.1, closed_below=0.05)
    assert "snow_led" not in single and single[0] == "rain_led"


def test_task_gap_and_image_spread_on_hand_made_gates():
    spread = np.array([0.1, 0.3])
    stats = GateStatistics(
        mean={
            ("rk", "rain"): np.array([1.0, 0.5]),
            ("rk", "snow"): np.array([0.6, 0.5]),
            ("ck", "rain"): np.array([1.0, 1.0]),  # no snow images through ck: no gap
        },
        std=dict.fromkeys([("rk", "rain"), ("rk", "snow"), ("ck", "rain")], spread),
        images={"rain": 3, "snow": 3},
    )
    assert task_gap(stats) == pytest.approx(0.2)  # rk: (0.4 + 0.0) / 2
    assert image_spread(stats) == pytest.approx(0.2)
    rain_only = GateStatistics({("rk", "rain"): spread}, {("rk", "rain"): spread}, {"rain": 1})
    assert task_gap(rain_only) is None


def test_separation_is_high_for_separated_kinds_and_near_zero_for_shuffled_labels():
    rng = np.random.default_rng(0)
    centres = {kind: rng.normal(size=16) * 5 for kind in ("rk", "ck", "sk")}
    rows = {kind: centre + rng.normal(scale=0.3, size=(24, 16)) for kind, centre in centres.items()}
    assert silhouette(rows) > 0.8
    stacked = np.concatenate(list(rows.values()))
    shuffled = stacked[rng.permutation(len(stacked))]
    mixed = {kind: shuffled[index * 24 : (index + 1) * 24] for index, kind in enumerate(rows)}
    assert abs(silhouette(mixed)) < 0.1


def _model_folder(folder: Path, tiny_data: Path, variant: str, **model: object) -> Path:
    tree = tiny_tree(tiny_data)
    tree["model"] = {**tree["model"], "variant": variant, **model}
    cfg = config_from_dict(tree)
    save_model_dir(build_model(cfg), folder, yaml.safe_dump(cfg.to_dict()))
    return folder


def _analyze(tiny_data: Path, model: Path, out: Path, capsys) -> tuple[int, str]:
    params = out.parent / f"{out.name}.yaml"
    params.write_text(yaml.safe_dump(tiny_tree(tiny_data)))
    code = main(
        [
            "analyze",
            "--params",
            str(params),
            "--model",
            str(model),
            "--out",
            str(out),
            "--quiet",
            "--no-mlflow",
        ]
    )
    return code, capsys.readouterr().out


def test_analyze_writes_gates_classes_separation_and_figures(tiny_data, tmp_path, capsys):
    code, out = _analyze(
        tiny_data, _model_folder(tmp_path / "v6", tiny_data, "V6"), tmp_path / "v6-analysis", capsys
    )
    assert code == 0, out
    folder = tmp_path / "v6-analysis"
    assert sorted(path.name for path in folder.iterdir()) == sorted(FILES)
    metrics = json.loads((folder / "metrics.json").read_text())
    atoms = tiny_tree(tiny_data)["model"]["channels"]
    assert metrics["atoms"] == atoms
    classes = ("rain_led", "shared", "snow_led", "closed")
    assert sum(metrics[f"atoms_{name}"] for name in classes) == atoms
    assert -1 <= metrics["separation_drm"] <= 1 and -1 <= metrics["separation_atoms"] <= 1
    with (folder / "gates.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == atoms * 3 * 2  # atoms x kinds x tasks
    assignment = json.loads((folder / "assignment.json").read_text())
    assert assignment["rule"]["lead_margin"] == 0.1 and len(assignment["atoms"]) == atoms
    assert "separation of rk / ck / sk (drm)" in out and "skipped" not in out


@pytest.mark.parametrize(
    ("variant", "model", "skipped"),
    [
        ("V2", {}, "variant V2 has no GKFM"),
        ("V1", {}, "DRM-space separation: variant V1 has no DRM"),
        ("K2", {}, "DRM-space separation: variant K2 has no DRM"),
        ("V4", {"single_task": "rain"}, "snow affinity: no sk gate over snow images"),
    ],
)
def test_variants_get_what_applies_and_a_line_for_what_not(
    tiny_data, tmp_path, capsys, variant, model, skipped
):
    folder = _model_folder(tmp_path / variant, tiny_data, variant, **model)
    code, out = _analyze(tiny_data, folder, tmp_path / f"{variant}-analysis", capsys)
    assert code == 0 and "skipped: " in out and skipped in out, out
    written = tmp_path / f"{variant}-analysis"
    assert all((written / name).is_file() for name in FILES)  # DVC outs exist either way
    metrics = json.loads((written / "metrics.json").read_text())
    assert ("separation_atoms" in metrics) == (variant != "V2")
    assert "separation_drm" in metrics if variant == "V4" else "separation_drm" not in metrics


def test_analyze_logs_on_the_training_run_or_a_child_of_it_for_a_registered_model(
    tiny_config_file, mlflow_store, tmp_path, capsys
):
    params = tiny_config_file("analysed")
    uri = trained_model_folder(tmp_path / "model", params)
    client = tracking.client()
    training_run = client.get_logged_model(uri.removeprefix("models:/")).source_run_id
    out = ["--out", str(tmp_path / "analysis"), "--quiet"]
    assert main(["analyze", "--params", str(params), "--model", str(tmp_path / "model"), *out]) == 0
    assert f"MLflow run {training_run}: files under analysis/" in capsys.readouterr().out
    logged = {item.path for item in client.list_artifacts(training_run, "analysis")}
    assert logged == {f"analysis/{name}" for name in FILES}
    assert "analysis/separation_drm" in client.get_run(training_run).data.metrics

    name = load_config(params).registry.model_name
    client.create_registered_model(name)
    client.create_model_version(name, uri, run_id=training_run)
    registered = f"models:/{name}/1"
    assert main(["analyze", "--params", str(params), "--model", registered, *out]) == 0
    [child] = client.search_runs(
        [client.get_run(training_run).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{training_run}'",
    )
    assert child.info.run_name == f"analyze {registered}"
    assert {item.path for item in client.list_artifacts(child.info.run_id, "analysis")} == {
        f"analysis/{name}" for name in FILES
    }
