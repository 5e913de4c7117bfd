"""PairedImageDataset, the samplers and build_dataloader."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from smartassign.config import config_from_dict
from smartassign.data.common import DataError
from smartassign.data.dataset import PairedImageDataset, build_dataloader, detail
from smartassign.data.images import write_png
from smartassign.data.manifest import Record
from smartassign.data.prepare import prepare
from smartassign.data.sampling import BalancedTaskSampler, ShardSampler
from smartassign.model.veil import veil_context


def _record(root: Path, name: str, pixels: np.ndarray, task: str = "rain", **paths: str) -> Record:
    """A record whose input and target are both ``name`` (so a shared transform is visible)."""
    write_png(root / name, pixels)
    return Record(
        name=name,
        dataset="toy",
        subset="",
        task=task,
        split="train",
        input=paths.get("input", name),
        target=paths.get("target", name),
        width=pixels.shape[1],
        height=pixels.shape[0],
        input_sha256="",
        target_sha256="",
    )


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("data")
    tree = {
        "root": str(root),
        "crop_size": 32,
        "num_workers": 2,
        "samples_per_epoch": 0,
        "quality_pairs": 1,
        "synthetic": {"size": 48, "crops_per_photo": {"train": 2, "val": 1, "test": 1}},
    }
    # veil removal (off by default) on, so the loader's veil context is covered
    cfg = config_from_dict(
        {"data": tree, "train": {"batch_size": 4}, "model": {"veil_removal": True}}
    )
    prepare(cfg, progress=False)
    return cfg


def test_sample_format_in_eval_mode_is_the_full_image(tmp_path):
    record = _record(tmp_path, "a.png", _noise(20, 30), task="snow")
    sample = PairedImageDataset([record], tmp_path, train=False)[0]
    assert set(sample) == {"input", "target", "task", "name"}
    assert sample["input"].shape == (3, 20, 30) and sample["input"].dtype == torch.float32
    assert float(sample["input"].min()) >= 0.0 and float(sample["input"].max()) <= 1.0
    assert sample["task"].dtype == torch.int64 and sample["task"].ndim == 0
    assert int(sample["task"]) == 1 and sample["name"] == "a.png"


def test_training_crop_and_flip_are_shared_by_input_and_target(tmp_path):
    record = _record(tmp_path, "a.png", _noise(40, 50))
    dataset = PairedImageDataset([record], tmp_path, train=True, crop_size=24, seed=3)
    crops = [dataset[0] for _ in range(6)]
    for sample in crops:
        assert sample["input"].shape == (3, 24, 24)
        assert torch.equal(sample["input"], sample["target"])
    assert len({s["input"].sum().item() for s in crops}) > 1
    again = PairedImageDataset([record], tmp_path, train=True, crop_size=24, seed=3)
    assert torch.equal(again[0]["input"], crops[0]["input"])


def test_training_augmentation_keeps_up_up(tmp_path):
    pixels = _noise(24, 24)
    record = _record(tmp_path, "a.png", pixels)
    dataset = PairedImageDataset([record], tmp_path, train=True, crop_size=24, seed=0)
    original = PairedImageDataset([record], tmp_path, train=False)[0]["input"]
    mirrored = original.flip(-1)
    seen = [dataset[0]["input"] for _ in range(12)]
    assert all(torch.equal(s, original) or torch.equal(s, mirrored) for s in seen)
    assert any(torch.equal(s, mirrored) for s in seen)


@pytest.mark.parametrize(("height", "width", "crop"), [(40, 50, 24), (10, 20, 16)])
def test_training_samples_carry_the_whole_image_thumbnail_and_their_box_in_it(
    tmp_path, height, width, crop
):
    pixels = _noise(height, width)
    record = _record(tmp_path, "a.png", pixels)
    dataset = PairedImageDataset(
        [record], tmp_path, train=True, crop_size=crop, seed=2, veil_context=True
    )
    whole = PairedImageDataset([record], tmp_path, train=False)[0]["input"]
    thumb = veil_context(whole[None])[0]
    flips = 0
    for _ in range(10):
        sample = dataset[0]
        x0, y0, x1, y1 = sample["box"].tolist()
        assert x1 - x0 == pytest.approx(crop / width) and y1 - y0 == pytest.approx(crop / height)
        flipped = torch.equal(sample["context"], thumb.flip(-1))
        assert flipped or torch.equal(sample["context"], thumb)
        flips += flipped
        seen = whole.flip(-1) if flipped else whole
        top, left = round(y0 * height), round(x0 * width)
        inside = sample["input"][
            :, max(0, -top) : height - top, max(0, -left) : width - left
        ]  # padded crops: the part of the crop that lies in the image
        region = seen[:, max(0, top) : top + crop, max(0, left) : left + crop]
        assert torch.equal(inside, region)
    assert 0 < flips < 10
    plain = PairedImageDataset([record], tmp_path, train=True, crop_size=crop)[0]
    assert "context" not in plain and "box" not in plain


def test_clean_share_shows_that_share_of_training_samples_clean(tmp_path):
    """Identity pairs: the clean crop as input, its context the clean image's thumbnail."""
    _record(tmp_path, "clean.png", _noise(40, 50, seed=1))
    record = _record(tmp_path, "rainy.png", _noise(40, 50, seed=2), target="clean.png")
    dataset = PairedImageDataset(
        [record], tmp_path, train=True, crop_size=24, seed=4, veil_context=True, clean_share=0.3
    )
    clean_whole = PairedImageDataset([record], tmp_path, train=False)[0]["target"]
    clean_thumb = veil_context(clean_whole[None])[0]
    samples = [dataset[0] for _ in range(400)]
    shown_clean = [s for s in samples if torch.equal(s["input"], s["target"])]
    assert 0.24 < len(shown_clean) / len(samples) < 0.36
    for sample in shown_clean:
        assert torch.equal(sample["context"], clean_thumb) or torch.equal(
            sample["context"], clean_thumb.flip(-1)
        )
    assert all(int(s["task"]) == 0 for s in shown_clean)  # still labelled with the pair's task
    evaluated = PairedImageDataset([record], tmp_path, train=False, clean_share=0.3)
    assert not any(torch.equal(s["input"], s["target"]) for s in (evaluated[0] for _ in range(20)))
    plain = PairedImageDataset([record], tmp_path, train=True, crop_size=24, seed=4)
    assert not any(torch.equal(s["input"], s["target"]) for s in (plain[0] for _ in range(50)))


def test_crop_candidates_keep_the_most_detailed_crop(tmp_path):
    """Half the image flat, half noise: more candidates, more crops from the detailed half;
    the kept crop is still one crop of the pair (input and target cut alike)."""
    pixels = _noise(64, 96, seed=3)
    pixels[:, :48] = 128
    record = _record(tmp_path, "half.png", pixels)

    def mean_detail(candidates: int) -> float:
        dataset = PairedImageDataset(
            [record], tmp_path, train=True, crop_size=16, seed=5, crop_candidates=candidates
        )
        samples = [dataset[0] for _ in range(200)]
        assert all(torch.equal(s["input"], s["target"]) for s in samples)
        return float(np.mean([detail(s["target"].permute(1, 2, 0).numpy() * 255) for s in samples]))

    plain, two, four = mean_detail(1), mean_detail(2), mean_detail(4)
    assert plain < two < four
    assert detail(pixels[:, :48]) == 0 and detail(pixels[:, 48:]) > 20


def test_crop_candidates_are_read_from_the_params(prepared):
    tree = prepared.model_dump(mode="json")
    tree["data"]["crop_candidates"] = 3
    assert PairedImageDataset.from_config(config_from_dict(tree), "train").crop_candidates == 3
    tree["data"]["crop_candidates"] = 1
    assert PairedImageDataset.from_config(config_from_dict(tree), "train").crop_candidates == 1
    tree["data"]["crop_candidates"] = 0
    with pytest.raises(ValueError, match="crop_candidates"):
        config_from_dict(tree)


def test_cached_pairs_give_the_same_samples_within_the_budget(tmp_path):
    records = [_record(tmp_path, f"{i}.png", _noise(40, 50, seed=i)) for i in range(3)]
    pair_bytes = 2 * 40 * 50 * 3

    def samples(cache_mb: int) -> tuple[PairedImageDataset, list[torch.Tensor]]:
        dataset = PairedImageDataset(
            records,
            tmp_path,
            train=True,
            crop_size=24,
            seed=1,
            cache_mb=cache_mb,
            veil_context=True,
        )
        return dataset, [
            torch.cat([sample["input"].flatten(), sample["context"].flatten(), sample["box"]])
            for sample in (dataset[i % 3] for i in range(9))
        ]

    plain, expected = samples(0)
    cached, got = samples(1)
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    assert len(cached._cache) == len(cached._contexts) == 3
    assert plain._cache == {} and plain._contexts == {}
    assert cached.cache_bytes == 2**20 >= 3 * pair_bytes
    tight = PairedImageDataset(records, tmp_path, train=True, crop_size=24, cache_mb=0)
    tight.cache_bytes = pair_bytes
    for i in range(3):
        tight[i]
    assert list(tight._cache) == [0]
    with pytest.raises(ValueError, match="read-only"):
        tight._cache[0][0][0, 0, 0] = 1


def test_small_images_are_padded_or_refused(tmp_path):
    record = _record(tmp_path, "small.png", _noise(10, 20))
    padded = PairedImageDataset([record], tmp_path, train=True, crop_size=16)
    assert padded[0]["input"].shape == (3, 16, 16)
    with pytest.raises(DataError, match="smaller than crop_size 16"):
        PairedImageDataset([record], tmp_path, train=True, crop_size=16, small_images="refuse")


def test_empty_manifest_and_changed_files_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="manifest is empty"):
        PairedImageDataset([], tmp_path, train=True)
    record = _record(tmp_path, "a.png", _noise(20, 20))
    dataset = PairedImageDataset([record], tmp_path, train=False)
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="run `smartassign prepare` again"):
        dataset[0]


def test_balanced_sampler_draws_each_task_equally_and_shards():
    labels = [0] * 30 + [1] * 3
    sampler = BalancedTaskSampler(labels, num_samples=40, seed=0)
    counts = Counter(labels[i] for i in sampler)
    assert counts == {0: 20, 1: 20}
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    shards = [list(BalancedTaskSampler(labels, seed=0, rank=r, num_replicas=2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 17
    unbalanced = BalancedTaskSampler(labels, balance=False, seed=0)
    assert sorted(unbalanced) == list(range(33))
    assert list(ShardSampler(5, rank=1, num_replicas=2)) == [1, 3]


def test_train_loader_balances_tasks_and_workers_draw_different_crops(prepared):
    loader = build_dataloader(prepared, "train")
    batches = list(loader)
    assert all(b["input"].shape[1:] == (3, 32, 32) for b in batches)
    tasks = torch.cat([b["task"] for b in batches])
    # (5 split + 12 training-only photos + 24 dead-leaves scenes) x 2 crops, per task
    assert len(tasks) == 164 and int(tasks.sum()) == 82
    assert all(b["context"].shape[1:] == (3, 64, 64) for b in batches)
    assert all(b["box"].shape[1:] == (4,) for b in batches)
    crops = {b["input"][0].numpy().tobytes() for b in batches}
    assert len(crops) == len(batches)
    again = list(build_dataloader(prepared, "train"))
    assert all(torch.equal(a["input"], b["input"]) for a, b in zip(batches, again, strict=True))


def test_eval_loader_gives_full_images_one_per_batch(prepared):
    loader = build_dataloader(prepared, "val", rank=0, num_replicas=2)
    batches = list(loader)
    assert len(batches) == 1  # two val pairs, this rank's half
    assert batches[0]["input"].shape == (1, 3, 48, 48)
