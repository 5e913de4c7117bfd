"""Each layout adapter on a small fake tree with the data set's real naming scheme."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from smartassign.config import DatasetSpec
from smartassign.data.common import DataError
from smartassign.data.layouts import list_pairs, split_of
from smartassign.data.pairing import match_files, rule_strategies


def _touch(root: Path, *names: str, size: tuple[int, int] = (8, 8)) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (90, 120, 150)).save(path)


def _listed(spec: DatasetSpec, root: Path) -> set[tuple[str, str, str | None, str]]:
    pairs, _ = list_pairs(spec)
    return {
        (
            p.input.relative_to(root).as_posix(),
            p.target.relative_to(root).as_posix(),
            p.split,
            p.subset,
        )
        for p in pairs
    }


def test_rain_streak_split_folders_and_many_to_one(tmp_path):
    _touch(tmp_path, "train/rain/1_1.png", "train/rain/1_2.png", "train/norain/1.png")
    _touch(tmp_path, "test/rain/7_1.png", "test/norain/7.png")
    spec = DatasetSpec(name="streak", layout="rain_streak", root=str(tmp_path))
    assert _listed(spec, tmp_path) == {
        ("train/rain/1_1.png", "train/norain/1.png", "train", ""),
        ("train/rain/1_2.png", "train/norain/1.png", "train", ""),
        ("test/rain/7_1.png", "test/norain/7.png", "test", ""),
    }


def test_rain_streak_unsplit_pool(tmp_path):
    _touch(tmp_path, "Rain_streak/rainy/rain-3.png", "Rain_streak/clean/norain-3.png")
    pairs, issues = list_pairs(DatasetSpec(name="s", layout="rain_streak", root=str(tmp_path)))
    assert [(p.input.name, p.target.name, p.split, p.task) for p in pairs] == [
        ("rain-3.png", "norain-3.png", None, "rain")
    ]
    assert issues == []


def test_rain_streak_published_one_folder_trees(tmp_path):
    """RainTrainL / RainTrainH / Rain100L / Rain100H as released: ``rain-N`` beside
    ``norain-N``; and the ``rainy/`` variant with the clean files in the folder itself."""
    _touch(tmp_path, "RainTrainH/rain-1.png", "RainTrainH/norain-1.png", "RainTrainH/rain-12.png")
    _touch(tmp_path, "RainTrainH/norain-12.png", "RainTrainH/norain-13.png")
    spec = DatasetSpec(name="h", layout="rain_streak", root=str(tmp_path / "RainTrainH"))
    pairs, issues = list_pairs(spec)
    assert [(p.input.name, p.target.name) for p in pairs] == [
        ("rain-1.png", "norain-1.png"),
        ("rain-12.png", "norain-12.png"),
    ]
    assert [(Path(i.path).name, i.kind) for i in issues] == [("norain-13.png", "missing_partner")]
    _touch(tmp_path, "Rain100L/rainy/rain-001.png", "Rain100L/norain-001.png")
    spec = DatasetSpec(name="l", layout="rain_streak", root=str(tmp_path / "Rain100L"))
    assert _listed(spec, tmp_path / "Rain100L") == {
        ("rainy/rain-001.png", "norain-001.png", None, "")
    }


def test_rain_streak_reads_the_real_raintrain_folders(real_data_dir):
    for folder, count in (("RainTrainL_10", 10), ("RainTrainH_12", 12)):
        spec = DatasetSpec(name="r", layout="rain_streak", root=str(real_data_dir / folder))
        pairs, issues = list_pairs(spec)
        assert len(pairs) == count and issues == []
        assert all(p.target.name == "no" + p.input.name for p in pairs)


def test_rain1200_side_by_side_splits_and_density_subsets(tmp_path):
    _touch(
        tmp_path,
        "DID-MDN-training/Rain_Heavy/train2018new/1.jpg",
        "DID-MDN-training/Rain_Light/train2018new/2.jpg",
        "DID-MDN-test/1.jpg",
        size=(16, 8),
    )
    pairs, _ = list_pairs(DatasetSpec(name="rain1200", layout="rain1200", root=str(tmp_path)))
    found = {(p.input.relative_to(tmp_path).as_posix(), p.split, p.subset) for p in pairs}
    assert found == {
        ("DID-MDN-training/Rain_Heavy/train2018new/1.jpg", "train", "Rain_Heavy"),
        ("DID-MDN-training/Rain_Light/train2018new/2.jpg", "train", "Rain_Light"),
        ("DID-MDN-test/1.jpg", "test", ""),
    }
    assert all(p.side_by_side and p.input == p.target for p in pairs)


def test_spa_frames_share_their_ground_truth_and_test_gt_suffix(tmp_path):
    _touch(
        tmp_path,
        "real_world/000/000-1/000-1_2_3.png",
        "real_world/000/000-9/000-9_2_3.png",
        "real_world_gt/000/000_2_3.png",
        "real_test_1000/rain/42.png",
        "real_test_1000/gt/42gt.png",
    )
    spec = DatasetSpec(name="spa", layout="spa", root=str(tmp_path))
    assert _listed(spec, tmp_path) == {
        ("real_world/000/000-1/000-1_2_3.png", "real_world_gt/000/000_2_3.png", "train", ""),
        ("real_world/000/000-9/000-9_2_3.png", "real_world_gt/000/000_2_3.png", "train", ""),
        ("real_test_1000/rain/42.png", "real_test_1000/gt/42gt.png", "test", ""),
    }


def test_snow100k_training_and_s_m_l_test_subsets_masks_ignored(tmp_path):
    train = "Snow100K-training/all"
    test = "Snow100K-testset/media/jdway/GameSSD/overlapping/test"
    for folder in ("synthetic", "gt", "mask"):
        _touch(tmp_path, f"{train}/{folder}/beautiful_smile_00001.jpg")
        _touch(tmp_path, f"{test}/Snow100K-L/{folder}/city_read_00042.jpg")
        _touch(tmp_path, f"{test}/Snow100K-S/{folder}/winter_00007.jpg")
    _touch(tmp_path, "realistic/real_snow_01.jpg")
    pairs, issues = list_pairs(DatasetSpec(name="snow100k", layout="snow100k", root=str(tmp_path)))
    found = {(p.input.name, p.target.parent.name, p.split, p.subset, p.task) for p in pairs}
    assert found == {
        ("beautiful_smile_00001.jpg", "gt", "train", "", "snow"),
        ("city_read_00042.jpg", "gt", "test", "L", "snow"),
        ("winter_00007.jpg", "gt", "test", "S", "snow"),
    }
    assert issues == []


def test_srrs_syn_tif_pairs_with_gt_jpg_and_is_unsplit(tmp_path):
    _touch(tmp_path, "SRRS-2021/Syn/12.tif", "SRRS-2021/gt/12.jpg", "SRRS-2021/Combine Snow/12.jpg")
    _touch(tmp_path, "SRRS-2021/Syn/13.tif")
    pairs, issues = list_pairs(DatasetSpec(name="srrs", layout="srrs", root=str(tmp_path)))
    assert [(p.input.name, p.target.name, p.split) for p in pairs] == [("12.tif", "12.jpg", None)]
    assert [(Path(i.path).name, i.kind) for i in issues] == [("13.tif", "missing_partner")]


def test_csd_train_and_test_snow_gt(tmp_path):
    for split in ("Train", "Test"):
        for folder in ("Snow", "Gt", "Mask"):
            _touch(tmp_path, f"CSD/{split}/{folder}/1.tif")
    spec = DatasetSpec(name="csd", layout="csd", root=str(tmp_path))
    assert _listed(spec, tmp_path) == {
        ("CSD/Train/Snow/1.tif", "CSD/Train/Gt/1.tif", "train", ""),
        ("CSD/Test/Snow/1.tif", "CSD/Test/Gt/1.tif", "test", ""),
    }


def test_paired_prefix_rule_like_rain12(tmp_path):
    _touch(tmp_path, "rain/rain-001.png", "rain/rain-002.png", "norain/norain-001.png")
    _touch(tmp_path, "norain/norain-002.png", "norain/norain-003.png")
    spec = DatasetSpec(
        name="rain12",
        layout="paired",
        root=str(tmp_path),
        task="rain",
        input_dir="rain",
        target_dir="norain",
        match="prefix",
        split="test",
    )
    pairs, issues = list_pairs(spec)
    assert [(p.input.name, p.target.name, p.split) for p in pairs] == [
        ("rain-001.png", "norain-001.png", "test"),
        ("rain-002.png", "norain-002.png", "test"),
    ]
    assert [(Path(i.path).name, i.reason) for i in issues] == [
        ("norain-003.png", "no degraded input matches this target")
    ]


def test_missing_root_or_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list_pairs(DatasetSpec(name="x", layout="csd", root=str(tmp_path / "nope")))
    with pytest.raises(DataError, match="needs an input folder"):
        list_pairs(DatasetSpec(name="x", layout="csd", root=str(tmp_path)))
    _touch(tmp_path, "Snow/a.png")
    (tmp_path / "Gt").mkdir()
    with pytest.raises(DataError, match="no csd pairs found"):
        list_pairs(DatasetSpec(name="x", layout="csd", root=str(tmp_path)))


@pytest.mark.parametrize(
    ("rule", "inputs", "targets", "expected"),
    [
        ("exact", ["0042.png"], ["0042.jpg"], [("0042.png", "0042.jpg")]),
        ("prefix", ["rain-001.png"], ["norain-001.png"], [("rain-001.png", "norain-001.png")]),
        (
            "many_to_one",
            ["12_3.jpg", "12_14.jpg"],
            ["12.jpg"],
            [("12_3.jpg", "12.jpg"), ("12_14.jpg", "12.jpg")],
        ),
        (
            "auto",
            ["rain-12_3.png", "5.png"],
            ["norain-12.png", "5.png"],
            [("rain-12_3.png", "norain-12.png"), ("5.png", "5.png")],
        ),
        ("prefix", ["a_1.png"], ["b_1.png", "c_1.png"], []),
    ],
)
def test_name_rules(rule, inputs, targets, expected):
    matching = match_files(
        [Path(n) for n in inputs], [Path(n) for n in targets], rule_strategies(rule)
    )
    assert [(i.name, t.name) for i, t in matching.pairs] == expected


def test_regex_rule_uses_the_key_group():
    strategies = rule_strategies("regex", r"(?P<key>\d+)_rainy", r"clean_(?P<key>\d+)")
    matching = match_files([Path("7_rainy.png"), Path("x.png")], [Path("clean_7.png")], strategies)
    assert [(i.name, t.name) for i, t in matching.pairs] == [("7_rainy.png", "clean_7.png")]
    assert [p.name for p in matching.unmatched_inputs] == ["x.png"]


def test_split_folder_names():
    assert [split_of(n) for n in ("Train", "train2500", "test2000", "Test1200", "validation")] == [
        "train",
        "train",
        "test",
        "test",
        "val",
    ]
    assert split_of("Snow") is None
