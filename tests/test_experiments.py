"""Named experiments: override files laid over params.yaml (smartassign.config.experiment)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smartassign.cli import _config, build_parser
from smartassign.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"


def _params_with_experiments(tmp_path: Path, experiments: dict[str, dict], chosen: str) -> Path:
    tree = yaml.safe_load(PARAMS.read_text())
    tree["experiment"] = chosen
    (tmp_path / "experiments").mkdir()
    for name, overlay in experiments.items():
        (tmp_path / "experiments" / f"{name}.yaml").write_text(yaml.safe_dump(overlay))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tree))
    return params


def test_the_paper_experiment_sets_the_papers_protocol_and_keeps_the_rest():
    shipped = load_config(PARAMS)
    paper = load_config(PARAMS, experiment="paper")
    assert paper.experiment == "paper"
    assert (paper.data.crop_size, paper.train.batch_size, paper.train.lr) == (256, 4, 4e-4)
    assert (paper.loss.lambda1, paper.loss.lambda2, paper.loss.recog_weight) == (0.01, 0.001, 1.0)
    assert paper.train.lr_schedule == "plateau" and paper.train.lr_factor == 0.5
    assert [d.layout for d in paper.data.datasets] == ["rain1200", "csd"]
    assert not paper.data.synthetic.enabled
    # keys the file does not name keep params.yaml's values, nested ones included
    assert paper.model.channels == shipped.model.channels
    assert paper.data.synthetic.rain == shipped.data.synthetic.rain
    assert paper.registry == shipped.registry


def test_the_params_files_experiment_key_chooses_and_the_flag_replaces_it(tmp_path: Path):
    experiments = {"short": {"train": {"epochs": 2}}, "long": {"train": {"epochs": 40}}}
    params = _params_with_experiments(tmp_path, experiments, chosen="short")
    assert load_config(params).train.epochs == 2
    assert load_config(params, experiment="long").train.epochs == 40
    by_path = tmp_path / "experiments" / "long.yaml"
    assert load_config(params, experiment=str(by_path)).train.epochs == 40
    assert load_config(params, experiment="").train.epochs == load_config(PARAMS).train.epochs


def test_cli_flag_and_set_apply_in_order(tmp_path: Path):
    params = _params_with_experiments(tmp_path, {"short": {"train": {"epochs": 2}}}, chosen="")
    args = build_parser().parse_args(
        ["train", "--params", str(params), "--experiment", "short", "--set", "train.lr=0.01"]
    )
    cfg = _config(args)
    assert (cfg.experiment, cfg.train.epochs, cfg.train.lr) == ("short", 2, 0.01)


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ({"train": {"epoch": 3}}, r"with .*typo\.yaml: invalid configuration\n  train\.epoch: "),
        ({"train": {"epochs": 0}}, r"train\.epochs: Input should be greater than or equal to 1"),
        ({"experiment": "other"}, r"typo\.yaml: experiment: an experiment file cannot name"),
    ],
    ids=["unknown-key", "out-of-range", "nested-experiment"],
)
def test_a_bad_experiment_file_is_refused_naming_file_and_key(
    tmp_path: Path, overlay: dict, message: str
):
    params = _params_with_experiments(tmp_path, {"typo": overlay}, chosen="typo")
    with pytest.raises(ConfigError, match=message):
        load_config(params)


def test_an_unknown_experiment_is_refused_with_the_known_ones(tmp_path: Path):
    params = _params_with_experiments(tmp_path, {"short": {}}, chosen="")
    with pytest.raises(ConfigError, match=r"'shrot' not found .* known experiments in .*: short"):
        load_config(params, experiment="shrot")


def test_an_override_cannot_name_an_experiment():
    with pytest.raises(ConfigError, match=r"experiment: an override cannot lay"):
        load_config(PARAMS).override({"experiment": "paper"})
