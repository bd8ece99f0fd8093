"""Input batches: synthetic (made on the device once), generated (random uint8 made on the
host every step), real (ImageNet from TFRecord shards or an image-folder tree)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchvision import datasets, transforms

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
NUM_CLASSES = 1000
Batch = tuple[torch.Tensor, torch.Tensor]


def normalise_on_device(
    images: torch.Tensor, device: torch.device, channels_last: bool
) -> torch.Tensor:
    """uint8 NCHW on the host to normalised float on the device (the seed's eight-bit IO)."""
    images = images.to(device, non_blocking=True).float()
    images = (images - MEAN.to(device)) / STD.to(device)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def synthetic(batch: int, size: int, device: torch.device, channels_last: bool) -> Iterator[Batch]:
    images = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    while True:
        yield images, labels


def generated(batch: int, size: int, device: torch.device, channels_last: bool) -> Iterator[Batch]:
    while True:
        images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
        labels = torch.randint(0, NUM_CLASSES, (batch,))
        yield normalise_on_device(images, device, channels_last), labels.to(device)


def _augment(size: int, train: bool) -> transforms.Compose:
    """Decoded PIL image to an augmented uint8 CHW tensor (normalised later, on the device)."""
    if train:
        steps = [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
    else:
        steps = [transforms.Resize(int(size * 256 / 224)), transforms.CenterCrop(size)]
    return transforms.Compose([*steps, transforms.PILToTensor()])


def _decode(encoded: bytes) -> Image.Image:
    return Image.open(io.BytesIO(encoded)).convert("RGB")


class TFRecordImages(IterableDataset[tuple[torch.Tensor, int]]):
    """ImageNet TFRecord shards (image/encoded, image/class/label), read with the tfrecord
    package (no TensorFlow); shards are split among DataLoader workers, forever."""

    def __init__(self, shards: list[Path], size: int, train: bool) -> None:
        self.shards = shards
        self.augment = _augment(size, train)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        from tfrecord.reader import tfrecord_loader

        info = get_worker_info()
        mine = self.shards[info.id :: info.num_workers] if info else self.shards
        if not mine:
            mine = self.shards
        description = {"image/encoded": "byte", "image/class/label": "int"}
        while True:
            for shard in mine:
                for record in tfrecord_loader(str(shard), None, description):
                    image = self.augment(_decode(bytes(record["image/encoded"])))
                    # TF's ImageNet converter numbers classes from 1 (0 is background).
                    label = int(record["image/class/label"][0]) - 1
                    yield image, label % NUM_CLASSES


class _Forever(IterableDataset[tuple[torch.Tensor, int]]):
    def __init__(self, dataset: datasets.ImageFolder) -> None:
        self.dataset = dataset

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        info = get_worker_info()
        start, step = (info.id, info.num_workers) if info else (0, 1)
        generator = torch.Generator().manual_seed(start)
        while True:
            for index in torch.randperm(len(self.dataset), generator=generator)[start::step]:
                yield self.dataset[int(index)]


def find_real_data(root: Path, train: bool, fmt: str) -> tuple[str, list[Path] | Path]:
    """('tfrecord', shards) or ('folder', directory) under root."""
    prefix = "train" if train else "validation"
    if fmt in ("auto", "tfrecord"):
        shards = sorted(root.glob(f"{prefix}-*-of-*"))
        if shards:
            return "tfrecord", shards
    if fmt in ("auto", "folder"):
        for name in ("train",) if train else ("val", "validation"):
            if (root / name).is_dir():
                return "folder", root / name
    wanted = {
        "tfrecord": f"TFRecord shards {prefix}-*-of-*",
        "folder": "an image folder train/ or val/",
        "auto": f"TFRecord shards {prefix}-*-of-* or an image folder train/ or val/",
    }[fmt]
    raise FileNotFoundError(f"no ImageNet data in {root}: expected {wanted}")


def real(
    root: Path,
    fmt: str,
    batch: int,
    size: int,
    train: bool,
    workers: int,
    device: torch.device,
    channels_last: bool,
) -> Iterator[Batch]:
    kind, where = find_real_data(root, train, fmt)
    dataset: IterableDataset[tuple[torch.Tensor, int]]
    if kind == "tfrecord":
        assert isinstance(where, list)
        dataset = TFRecordImages(where, size, train)
    else:
        assert isinstance(where, Path)
        folder = datasets.ImageFolder(str(where), transform=_augment(size, train))
        dataset = _Forever(folder)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        drop_last=True,
    )
    for images, labels in loader:
        yield normalise_on_device(images, device, channels_last), labels.to(device)
