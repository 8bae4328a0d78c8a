"""The Lightning DataModule: the `data` config section as train/val/test loaders."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from kp_platform.data.channels import ChannelMap
from kp_platform.data.dataset import (
    DatasetSplits,
    build_datasets,
    cache_split,
    collate_keypoints,
)
from kp_platform.data.image_io import to_unit_float
from kp_platform.ranks import validation_sampler


class ImagesOnDevice(pl.LightningDataModule):
    """A data module whose uint8 image batches become float in [0, 1] once on the device."""

    def on_after_batch_transfer(self, batch: dict[str, Any],
                                dataloader_idx: int) -> dict[str, Any]:
        return {**batch, "image": to_unit_float(batch["image"])}


class KeypointDataModule(ImagesOnDevice):
    """Builds the datasets once (validating every file up front) and serves them in batches.

    Args:
        data_cfg: The `data` config section.
        seed: Seeds the training shuffle and the augmentation (not the split).
    """

    def __init__(self, data_cfg: Any, seed: int = 0) -> None:
        super().__init__()
        self.data_cfg = data_cfg
        self.seed = seed
        self.splits: DatasetSplits = build_datasets(data_cfg, augment_seed=seed)

    @property
    def channels(self) -> ChannelMap:
        return self.splits.channels

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return self._loader(self.splits.train, shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        # Several processes: each image on exactly one rank (Lightning's sampler would pad).
        sampler = validation_sampler(self.splits.val, self.trainer, self.data_cfg.batch_size)
        return self._loader(self.splits.val, shuffle=False, sampler=sampler)

    def test_dataloader(self) -> DataLoader:
        if self.splits.test is None:
            raise ValueError("no data.test file is configured")
        return self._loader(self.splits.test, shuffle=False)

    def _loader(self, dataset: Dataset, shuffle: bool, **kwargs: Any) -> DataLoader:
        # Here, before the workers fork: they share the decoded images.
        cache_split(dataset, self.data_cfg.cache_mb)
        workers = self.data_cfg.num_workers
        # Page-locked batches copy to a GPU asynchronously (Lightning moves them non-blocking).
        on_gpu = (self.trainer is not None
                  and self.trainer.strategy.root_device.type == "cuda")
        return DataLoader(
            dataset,
            batch_size=self.data_cfg.batch_size,
            shuffle=shuffle,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=on_gpu,
            collate_fn=collate_keypoints,
            **kwargs,
        )
