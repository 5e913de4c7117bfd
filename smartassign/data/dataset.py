"""The one Dataset class of the project, and the DataLoaders built on it.

:class:`PairedImageDataset` reads a manifest written by the prepare stage, whatever layout
the pairs came from. A sample is a dict::

    {"input": float32 3xHxW in [0, 1], "target": same, "task": int64 scalar (0 rain,
     1 snow), "name": str}

In training mode each pair gets the same random ``crop_size`` crop and horizontal flip; in
evaluation mode images are returned whole (so evaluation batches hold one image). With
``veil_context`` a training sample also holds ``"context"`` (the thumbnail of the whole
degraded image, flipped with the crop) and ``"box"`` (the crop's box in it), which the
network's veil removal needs (smartassign/model/veil.py). With
``clean_share`` a training sample is, with that probability, an identity pair: the clean
crop as both input and target (still labelled with its pair's task), so the decoders learn
to leave rain- and snow-free content as it is (docs/data.md, "Clean samples"). With
``crop_candidates`` > 1 that many crops are drawn and the one whose clean target holds the
most :func:`detail` is kept (training steps go to textured content). Decoded
pairs (and their thumbnails) are kept in memory up to ``cache_mb`` (per process, so per
DataLoader worker): small crops of large images would otherwise spend most of the loading
time decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from smartassign.config import Config
from smartassign.data.common import LUMA, DataError, task_label
from smartassign.data.manifest import Record, load_pair, manifest_path, read_manifest
from smartassign.data.sampling import BalancedTaskSampler, ShardSampler
from smartassign.data.tensors import to_tensor
from smartassign.data.transforms import crop_box, paired_train_transform
from smartassign.model.veil import veil_context


class PairedImageDataset(Dataset):
    """Pairs of a manifest as tensors; see the module docstring for the sample format."""

    def __init__(
        self,
        records: Sequence[Record],
        root: Path,
        *,
        train: bool,
        crop_size: int = 128,
        small_images: Literal["pad", "refuse"] = "pad",
        seed: int = 0,
        cache_mb: int = 0,
        veil_context: bool = False,
        clean_share: float = 0.0,
        crop_candidates: int = 1,
    ):
        if not records:
            raise DataError("no pairs to load: the manifest is empty (see data/report.json)")
        if train and small_images == "refuse":
            small = [r.name for r in records if min(r.width, r.height) < crop_size]
            if small:
                raise DataError(
                    f"{len(small)} training pairs are smaller than crop_size {crop_size} "
                    f"(small_images: refuse), e.g. {small[:3]}; run the prepare stage again"
                )
        self.records = list(records)
        self.root = Path(root)
        self.labels = [task_label(record.task) for record in self.records]
        self.cache_bytes = cache_mb * 2**20
        self.veil_context = veil_context and train
        self.clean_share = clean_share if train else 0.0
        self._clean_draws = np.random.default_rng(seed)
        self.crop_candidates = crop_candidates
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._contexts: dict[int, torch.Tensor] = {}
        self._cached_bytes = 0
        self.transform = (
            paired_train_transform(crop_size, pad=small_images == "pad", seed=seed)
            if train
            else None
        )

    @classmethod
    def from_config(cls, cfg: Config, split: str) -> PairedImageDataset:
        """The dataset of ``split``'s manifest; training mode for ``"train"`` only.

        Only pairs of the tasks the configured variant restores are kept: the single-task
        variant V4 (paper Table 3) sees ``model.single_task`` only.
        """
        root = Path(cfg.data.root)
        tasks = cfg.model.tasks
        records = [r for r in read_manifest(manifest_path(root, split)) if r.task in tasks]
        if not records:
            raise DataError(
                f"no {' or '.join(tasks)} pairs in the {split} manifest "
                f"(model.variant {cfg.model.variant.value}); see data/report.json"
            )
        return cls(
            records,
            root,
            train=split == "train",
            crop_size=cfg.data.crop_size,
            small_images=cfg.data.small_images,
            seed=cfg.data.seed,
            cache_mb=cfg.data.cache_mb if split == "train" else 0,
            veil_context=cfg.model.veil_removal,
            clean_share=cfg.data.clean_share,
            crop_candidates=cfg.data.crop_candidates,
        )

    def reseed(self, seed: int) -> None:
        """Re-seed the augmentation and the clean-sample draws (each DataLoader worker must
        draw its own crops)."""
        if self.transform is not None:
            self.transform.set_random_seed(seed)
        self._clean_draws = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.records)

    def _pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded pixels of pair ``index``, from the cache when it holds them."""
        if index in self._cache:
            return self._cache[index]
        record = self.records[index]
        try:
            pair = load_pair(record, self.root)
        except DataError as error:
            raise DataError(
                f"{error} (sample {record.name!r}: files changed since the prepare stage? "
                "run `smartassign prepare` again)"
            ) from None
        size = pair[0].nbytes + pair[1].nbytes
        if self._cached_bytes + size <= self.cache_bytes:
            for pixels in pair:
                pixels.flags.writeable = False
            self._cache[index] = pair
            self._cached_bytes += size
        return pair

    def _context(self, index: int, whole: np.ndarray) -> torch.Tensor:
        """Veil-removal thumbnail of pair ``index``'s degraded image, kept with its pair."""
        if index in self._contexts:
            return self._contexts[index]
        context = veil_context(to_tensor(whole)[None])[0]
        size = context.numel() * context.element_size()
        if index in self._cache and self._cached_bytes + size <= self.cache_bytes:
            self._contexts[index] = context
            self._cached_bytes += size
        return context

    def __getitem__(self, index: int) -> dict[str, Any]:
        whole, clean_whole = self._pair(index)
        degraded, clean = whole, clean_whole
        extra: dict[str, torch.Tensor] = {}
        if self.transform is not None:
            out = max(
                (
                    self.transform(image=whole, target=clean_whole)
                    for _ in range(self.crop_candidates)
                ),
                key=lambda crop: detail(crop["target"]),
            )
            degraded, clean = out["image"], out["target"]
            shown_clean = bool(self.clean_share) and self._clean_draws.random() < self.clean_share
            if shown_clean:
                degraded = clean
            if self.veil_context:
                box, flipped = crop_box(out["applied_transforms"], *whole.shape[:2])
                context = (
                    veil_context(to_tensor(clean_whole)[None])[0]
                    if shown_clean
                    else self._context(index, whole)
                )
                extra = {
                    "context": context.flip(-1) if flipped else context,
                    "box": torch.from_numpy(box),
                }
        return {
            "input": to_tensor(degraded),
            "target": to_tensor(clean),
            "task": torch.tensor(self.labels[index], dtype=torch.int64),
            "name": self.records[index].name,
            **extra,
        }


def detail(pixels: np.ndarray) -> float:
    """Mean absolute luma gradient of an ``H x W x 3`` image in 0-255 (how much scene
    structure a crop holds)."""
    luma = pixels.astype(np.float32) @ LUMA
    return float(np.abs(np.diff(luma, axis=0)).mean() + np.abs(np.diff(luma, axis=1)).mean())


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: each worker draws its own augmentation sequence."""
    info = get_worker_info()
    if info is not None and isinstance(info.dataset, PairedImageDataset):
        info.dataset.reseed(info.seed % 2**32)


def build_dataloader(
    cfg: Config,
    split: str,
    *,
    rank: int = 0,
    num_replicas: int = 1,
    batch_size: int | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """DataLoader over ``split``'s manifest.

    ``train``: balanced rain / snow sampling (:class:`BalancedTaskSampler`,
    ``data.balance_tasks``, ``data.samples_per_epoch``), batches of ``batch_size`` (default
    ``train.batch_size``); call ``loader.sampler.set_epoch(epoch)`` every epoch.
    ``val`` / ``test``: full images in manifest order, one per batch (sizes differ).
    Both shard over ``num_replicas`` ranks themselves. Workers are seeded from
    ``data.seed``, so runs repeat exactly; a loader built anew (a run resumed from a
    checkpoint) draws its crops from that seed again, while the sampler's order follows the
    epoch. Loader processes persist across epochs; ``pin_memory`` (for a CUDA / NPU
    worker) lets batches move to the device without blocking.
    """
    dataset = PairedImageDataset.from_config(cfg, split)
    workers = cfg.data.num_workers
    sampler: BalancedTaskSampler | ShardSampler
    if split == "train":
        sampler = BalancedTaskSampler(
            dataset.labels,
            num_samples=cfg.data.samples_per_epoch,
            balance=cfg.data.balance_tasks,
            seed=cfg.data.seed,
            rank=rank,
            num_replicas=num_replicas,
        )
        batch = batch_size or cfg.train.batch_size
    else:
        sampler = ShardSampler(len(dataset), rank=rank, num_replicas=num_replicas)
        batch = 1
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(cfg.data.seed + rank),
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
    )
