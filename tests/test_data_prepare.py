"""The prepare stage: manifests, report, bad files, splits, pre-cropping, real Rain12."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from smartassign.config import Config, DatasetSpec, config_from_dict
from smartassign.data.common import SPLITS, DataError, Pair, seeded_subset
from smartassign.data.manifest import load_pair, manifest_path, read_manifest
from smartassign.data.prepare import assign_splits, limit_splits, prepare

RNG = np.random.default_rng(0)


def _config(root: Path, *, synthetic: bool = True, datasets=(), **data: object) -> Config:
    tree = {
        "root": str(root),
        "crop_size": 32,
        "quality_pairs": 4,
        "synthetic": {
            "enabled": synthetic,
            "size": 48,
            "crops_per_photo": {"train": 1, "val": 1, "test": 1},
        },
        "datasets": list(datasets),
        **data,
    }
    return config_from_dict({"data": tree})


def _paired(root: Path, **spec: object) -> dict:
    return {
        "name": "corpus",
        "layout": "paired",
        "root": str(root),
        "task": "rain",
        "input_dir": "rain",
        "target_dir": "norain",
        "match": "prefix",
        "split": "train",
        "val_fraction": 0.0,
        **spec,
    }


def _pixels(height: int = 40, width: int = 48) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _bad_corpus(root: Path) -> None:
    """One pair per problem of the issue list, plus two good pairs."""
    rain, clean = root / "rain", root / "norain"
    rain.mkdir(parents=True)
    clean.mkdir()

    def pair(name: str, degraded: Image.Image, target: Image.Image, suffix: str = ".png"):
        degraded.save(rain / f"rain-{name}{suffix}")
        target.save(clean / f"norain-{name}{suffix}")

    good = Image.fromarray(_pixels())
    target = Image.fromarray(_pixels())  # a pair's two images differ (identical ones are skipped)
    pair("good", good, target)
    pair("ünï cödé 01", good, target)  # spaces and unicode in names
    pair("grey", good.convert("L"), target)
    pair("rgba", good.convert("RGBA"), target)
    pair("palette", good.convert("P"), target)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_pixels(48, 40)).save(rain / "rain-exif.jpg", exif=exif)
    Image.fromarray(_pixels(40, 48)).save(clean / "norain-exif.jpg")
    deep = RNG.integers(0, 65536, (40, 48, 3), dtype=np.uint16)
    cv2.imwrite(str(rain / "rain-deep.png"), deep)
    good.save(clean / "norain-deep.png")
    pair("mismatch", good, Image.fromarray(_pixels(40, 50)))
    good.save(clean / "norain-empty.png")
    (rain / "rain-empty.png").write_bytes(b"")
    good.save(clean / "norain-text.png")
    (rain / "rain-text.png").write_text("not an image\n")
    good.save(clean / "norain-cut.png")
    whole = (clean / "norain-cut.png").read_bytes()
    (rain / "rain-cut.png").write_bytes(whole[: len(whole) // 2])
    good.save(rain / "rain-orphan.png")
    (rain / "notes.txt").write_text("ignored: not an image suffix\n")


def test_default_synthetic_run_writes_manifests_and_metrics(tmp_path):
    report = prepare(_config(tmp_path / "data"), progress=False)
    for split in SPLITS:
        records = read_manifest(manifest_path(tmp_path / "data", split))
        assert {r.task for r in records} == {"rain", "snow"}
        assert all(len(r.input_sha256) == 64 and (r.width, r.height) == (48, 48) for r in records)
    metrics = json.loads((tmp_path / "data" / "report.json").read_text())
    # 5 split photos + 12 training-only photos + 24 dead-leaves scenes, one crop each.
    assert metrics["pairs"]["train"]["synthetic"] == {"rain": 41, "snow": 41}
    assert metrics["pairs"]["val"]["synthetic"] == {"rain": 1, "snow": 1}
    quality = metrics["quality"]["test"]["synthetic"]["rain"]
    assert set(quality) == {"pairs", "psnr", "ssim", "psnr_y", "ssim_y"}
    assert 10 < quality["psnr_y"] < 45 and 0 < quality["ssim_y"] < 1
    assert metrics["skipped"] == {"total": 0} and report.skipped == []
    assert "prepared 86 pairs" in report.summary()


def test_rerun_is_byte_identical_and_clears_old_outputs(tmp_path):
    cfg = _config(tmp_path / "data")
    prepare(cfg, progress=False)
    stale = tmp_path / "data" / "synthetic" / "stale.png"
    stale.write_bytes(b"old")
    first = {p: p.read_bytes() for p in sorted((tmp_path / "data").rglob("*")) if p.is_file()}
    prepare(cfg, progress=False)
    second = {p: p.read_bytes() for p in sorted((tmp_path / "data").rglob("*")) if p.is_file()}
    assert not stale.exists()
    assert second == {p: b for p, b in first.items() if p != stale}


def test_bad_files_are_fixed_or_skipped_and_listed_and_the_run_continues(tmp_path):
    _bad_corpus(tmp_path / "corpus")
    cfg = _config(tmp_path / "data", synthetic=False, datasets=[_paired(tmp_path / "corpus")])
    report = prepare(cfg, progress=False)
    skipped = {(Path(i.path).name, i.kind) for i in report.skipped}
    assert skipped == {
        ("rain-empty.png", "empty_file"),
        ("rain-text.png", "not_an_image"),
        ("rain-cut.png", "unreadable"),
        ("rain-mismatch.png", "size_mismatch"),
        ("rain-orphan.png", "missing_partner"),
    }
    fixed = {(Path(i.path).name, i.kind) for i in report.fixed}
    assert fixed == {
        ("rain-grey.png", "grey"),
        ("rain-rgba.png", "alpha"),
        ("rain-palette.png", "palette"),
        ("rain-exif.jpg", "exif_rotation"),
        ("rain-deep.png", "16bit"),
    }
    names = sorted(r.name for r in report.records["train"])
    assert names == sorted(
        f"corpus/rain/rain-{n}"
        for n in ("good", "ünï cödé 01", "grey", "rgba", "palette", "exif", "deep")
    )
    for record in report.records["train"]:
        degraded, clean = load_pair(record, tmp_path / "data")
        assert degraded.shape == clean.shape == (40, 48, 3)
    metrics = json.loads((tmp_path / "data" / "report.json").read_text(encoding="utf-8"))
    assert metrics["skipped"]["total"] == 5 and metrics["skipped"]["size_mismatch"] == 1
    assert metrics["fixed"]["total"] == 5
    reasons = {Path(i["path"]).name: i["reason"] for i in metrics["issues"]}
    assert reasons["rain-mismatch.png"].startswith("input 48x40 but target 50x40")
    assert "skipped 5 files" in report.summary()


def test_strict_turns_any_skip_into_an_error(tmp_path):
    _bad_corpus(tmp_path / "corpus")
    cfg = _config(tmp_path / "data", synthetic=False, datasets=[_paired(tmp_path / "corpus")])
    with pytest.raises(DataError, match=r"--strict: 5 files would be skipped") as caught:
        prepare(cfg, strict=True, progress=False)
    assert "rain-orphan.png: no clean target matches this input" in str(caught.value)
    assert not manifest_path(tmp_path / "data", "train").exists()


def test_small_training_images_are_refused_when_configured(tmp_path):
    corpus = tmp_path / "corpus"
    for folder, prefix in (("rain", "rain"), ("norain", "norain")):
        (corpus / folder).mkdir(parents=True)
        Image.fromarray(_pixels(20, 20)).save(corpus / folder / f"{prefix}-small.png")
        Image.fromarray(_pixels(40, 40)).save(corpus / folder / f"{prefix}-big.png")
    cfg = _config(
        tmp_path / "data",
        synthetic=False,
        datasets=[_paired(corpus)],
        small_images="refuse",
    )
    report = prepare(cfg, progress=False)
    assert [r.name for r in report.records["train"]] == ["corpus/rain/rain-big"]
    assert [(Path(i.path).name, i.kind) for i in report.skipped] == [
        ("rain-small.png", "too_small")
    ]


def test_side_by_side_files_are_split_and_precropped_into_tiles(tmp_path):
    folder = tmp_path / "DID-MDN-training" / "Rain_Heavy" / "train2018new"
    folder.mkdir(parents=True)
    for index in range(3):
        halves = np.zeros((64, 160, 3), np.uint8)
        halves[:, :80] = 40 + index  # input on the left
        halves[:, 80:] = 200  # target on the right
        Image.fromarray(halves).save(folder / f"{index}.png")
    spec = {"name": "rain1200", "layout": "rain1200", "root": str(tmp_path), "val_fraction": 0}
    cfg = _config(tmp_path / "data", synthetic=False, datasets=[spec])
    plain = prepare(cfg, progress=False).records["train"]
    assert len(plain) == 3 and all(
        r.side_by_side and (r.width, r.height) == (80, 64) for r in plain
    )
    degraded, clean = load_pair(plain[0], tmp_path / "data")
    assert degraded.max() == 40 and clean.min() == 200
    tiled = prepare(cfg.override({"data.precrop.size": 32}), progress=False).records["train"]
    assert len(tiled) == 3 * 2 * 3  # rows at 0, 32; columns at 0, 32, 48 (flush right)
    assert all((r.width, r.height) == (32, 32) and not r.side_by_side for r in tiled)
    assert tiled[0].name == "rain1200/DID-MDN-training/Rain_Heavy/train2018new/0_s000"
    assert (tmp_path / "data" / tiled[0].input).is_file()


def _pairs(count: int, targets: int, split: str | None = None) -> list[Pair]:
    return [
        Pair(Path(f"in/{i}.png"), Path(f"gt/{i % targets}.png"), "rain", split)
        for i in range(count)
    ]


def test_unsplit_pairs_are_held_out_by_clean_image():
    spec = DatasetSpec(name="pool", layout="srrs", root="x", val_fraction=0.2, test_fraction=0.2)
    pairs = assign_splits(_pairs(100, 20), spec, seed=0)
    split_of_target: dict[Path, set[str | None]] = {}
    for pair in pairs:
        split_of_target.setdefault(pair.target, set()).add(pair.split)
    assert all(len(splits) == 1 for splits in split_of_target.values())
    counts = {s: sum(1 for v in split_of_target.values() if s in v) for s in SPLITS}
    assert counts == {"train": 13, "val": 3, "test": 4}  # 20 clean: 4 test, then 20% of 16
    assert assign_splits(_pairs(100, 20), spec, seed=0) == pairs


def test_published_splits_are_kept_and_val_is_carved_from_train():
    spec = DatasetSpec(name="csd", layout="csd", root="x", val_fraction=0.1)
    pairs = assign_splits(_pairs(10, 10, "train") + _pairs(3, 3, "test"), spec, seed=0)
    assert [p.split for p in pairs].count("test") == 3
    assert [p.split for p in pairs].count("val") == 1
    capped = DatasetSpec(
        name="csd", layout="csd", root="x", max_pairs={"train": 4, "val": 0, "test": 2}
    )
    limited = limit_splits(pairs, capped, seed=0)
    assert sorted(p.split for p in limited) == [
        "test",
        "test",
        "train",
        "train",
        "train",
        "train",
        "val",
    ]


def test_seeded_subset_keeps_order_repeats_with_its_seed_and_draws_only_to_cut():
    items = list(range(20))
    subset = seeded_subset(items, 5, np.random.default_rng(3))
    assert len(subset) == 5 and subset == sorted(subset) and set(subset) <= set(items)
    assert seeded_subset(items, 5, np.random.default_rng(3)) == subset
    assert any(seeded_subset(items, 5, np.random.default_rng(s)) != subset for s in range(4, 8))
    rng = np.random.default_rng(3)
    assert seeded_subset(items, 0, rng) == items and seeded_subset(items, 20, rng) == items
    assert seeded_subset(items, 5, rng) == subset  # the uncut calls left rng untouched


def test_real_rain12_through_the_paired_prefix_layout(tmp_path, real_data_dir):
    rain12 = {
        "name": "rain12",
        "layout": "paired",
        "root": str(real_data_dir / "Rain12"),
        "task": "rain",
        "input_dir": "rain",
        "target_dir": "norain",
        "match": "prefix",
        "split": "test",
    }
    cfg = _config(tmp_path / "data", synthetic=False, datasets=[rain12], quality_pairs=0)
    report = prepare(cfg, strict=True, progress=False)
    assert len(report.records["test"]) == 12
    assert {(r.width, r.height) for r in report.records["test"]} == {(480, 320)}
    quality = report.quality["test"]["rain12"]["rain"]
    assert quality["pairs"] == 12
    assert quality["psnr_y"] == pytest.approx(30.14, abs=0.05)


def test_an_identical_pair_is_reported_and_left_out(real_data_dir, tmp_path):
    """RainTrainL pair 6 of the release: rain-6.png is byte-identical to norain-6.png."""
    dataset = {"name": "rain_train_l", "layout": "rain_streak"}
    dataset["root"] = str(real_data_dir / "RainTrainL_10")
    cfg = config_from_dict(
        {
            "data": {
                "root": str(tmp_path / "data"),
                "synthetic": {"enabled": False},
                "datasets": [{**dataset, "val_fraction": 0.0, "test_fraction": 0.0}],
                "quality_pairs": 0,
            }
        }
    )
    report = prepare(cfg, progress=False)
    identical = [issue for issue in report.issues if issue.kind == "identical_pair"]
    assert [Path(issue.path).name for issue in identical] == ["rain-6.png"]
    assert identical[0].action == "skipped"
    assert "norain-6.png are identical" in identical[0].reason
    names = {
        record.name for record in read_manifest(tmp_path / "data" / "manifests" / "train.jsonl")
    }
    assert len(names) == 9 and "rain_train_l/rain-6" not in names
