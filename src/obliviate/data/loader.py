"""Batches straight from device tensors: no per-sample Python, augmentation on whole batches.

Each batch is a dict ``{"image": float (B, C, H, W) normalised, "label": int64 (B,),
"index": int64 (B,) row positions}``. Random crop with padding and horizontal flip are drawn
from a ``torch.Generator`` so that an epoch is reproducible from its seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Augment:
    """Batch augmentation: random crop with ``pad`` pixels of reflect padding, random h-flip."""

    pad: int = 4
    flip: bool = True

    def __post_init__(self) -> None:
        if self.pad < 0:
            raise ValueError(f"Augment.pad must be >= 0, got {self.pad}")


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 standardised with per-channel ``mean``/``std`` (0..1 units).

    Floating-point inputs (a user's own data, any shape) are the model's inputs already: they are
    returned as float32, untouched."""
    if images.is_floating_point():
        return images.float()
    # in place on the one float copy: same values as ((x / 255) - mean) / std, two fewer buffers
    return images.float().div_(255.0).sub_(mean).div_(std)


def _reflect_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Source position of each of the ``n + 2·pad`` positions of a reflect-padded axis."""
    i = torch.arange(-pad, n + pad, device=device).abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def augment_batch(x: torch.Tensor, aug: Augment, generator: torch.Generator) -> torch.Tensor:
    """Random-crop (reflect pad) and flip a whole batch with one gather; works on any dtype.

    The padding is never materialised: each output pixel's source row/column in the unpadded
    image (crop offset, reflection and mirror folded together) indexes one ``torch.gather``.
    """
    b, c, h, w = x.shape
    if aug.pad == 0 and not aug.flip:
        return x.contiguous()
    dev = x.device
    rows = torch.arange(h, device=dev).expand(b, h)
    cols = torch.arange(w, device=dev).expand(b, w)
    if aug.pad > 0:
        p = aug.pad
        if p >= h or p >= w:
            raise ValueError(f"Augment.pad must be smaller than the image ({h}×{w}) for reflect padding, got {p}")
        dy = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(dev)
        dx = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(dev)
        rows = _reflect_index(h, p, dev)[rows + dy[:, None]]  # (B, H)
        cols = _reflect_index(w, p, dev)[cols + dx[:, None]]  # (B, W)
    if aug.flip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(dev)
        cols = torch.where(flip[:, None], cols.flip(1), cols)
    src = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(x.reshape(b, c, h * w), 2, src).view(b, c, h, w)


class BatchLoader:
    """Iterate over ``rows`` of ``images``/``labels`` in batches, on their device.

    Args:
        images: uint8 (N, C, H, W); labels: int64 (N,).
        rows: positions to draw from (default all).
        batch_size: samples per batch; ``drop_last`` drops a short final batch.
        shuffle: reshuffle every epoch, from ``seed`` and the epoch number.
        augment: batch augmentation or ``None``; never applied to floating-point (model-ready)
            inputs, which are a user's own data of any shape, taken as the model takes them.
        mean / std: per-channel statistics for normalisation.
        channels_last: return batches in ``torch.channels_last`` memory format.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        rows: torch.Tensor | None = None,
        batch_size: int = 128,
        shuffle: bool = False,
        augment: Augment | None = None,
        seed: int = 0,
        drop_last: bool = False,
        channels_last: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.images, self.labels = images, labels
        self.rows = (torch.arange(len(labels)) if rows is None else torch.as_tensor(rows)).long()
        if len(self.rows) == 0:
            raise ValueError("BatchLoader got an empty set of rows")
        if images.is_floating_point():
            augment = None  # model-ready inputs: crops and flips are defined for uint8 images only
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.seed, self.drop_last, self.channels_last = seed, drop_last, channels_last
        dev = images.device
        self.mean = torch.tensor(mean, device=dev).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=dev).view(1, -1, 1, 1)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.rows)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = self.rows[torch.randperm(len(self.rows), generator=g)] if self.shuffle else self.rows
        order = order.to(self.images.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images.index_select(0, idx)
            if self.augment is not None:
                x = augment_batch(x, self.augment, g)
            x = normalise(x, self.mean, self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield {"image": x, "label": self.labels.index_select(0, idx), "index": idx}
