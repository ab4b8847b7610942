"""A user's own data as the tensors the methods read: any ``Dataset`` or ``DataLoader`` of
``(input, label)`` pairs (or dicts with ``input``/``image`` and ``label``/``target``), any input
shape, any number of classes. Inputs are taken exactly as the model takes them (already
normalised); nothing is scaled or augmented.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import ForgetSplit, ImageDataset

_INPUT_KEYS = ("input", "image", "x", "inputs", "pixel_values")
_LABEL_KEYS = ("label", "target", "y", "labels")


class UserDataError(ValueError):
    """The data given to :func:`obliviate.unlearn` / :func:`obliviate.audit` cannot be used."""


def _pair(item: Any, what: str) -> tuple[Any, Any]:
    if isinstance(item, dict):
        x = next((item[k] for k in _INPUT_KEYS if k in item), None)
        y = next((item[k] for k in _LABEL_KEYS if k in item), None)
        if x is None or y is None:
            raise UserDataError(
                f"{what}: a dict item needs an input key {_INPUT_KEYS} and a label key "
                f"{_LABEL_KEYS}, got keys {sorted(item)}"
            )
        return x, y
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    raise UserDataError(f"{what}: each item must be (input, label) or a dict, got {type(item).__name__}")


def to_tensors(data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs float32 (N, ...), labels int64 (N,))`` from a Dataset, a DataLoader, or a pair
    of tensors ``(inputs, labels)``."""
    if data is None:
        raise UserDataError(f"{what}: no data given")
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        xs, ys = [data[0]], [data[1]]
    else:
        from torch.utils.data import DataLoader

        batched = isinstance(data, DataLoader)
        if not isinstance(data, Iterable) and not hasattr(data, "__getitem__"):
            raise UserDataError(
                f"{what}: expected a Dataset, a DataLoader or (inputs, labels), got {type(data).__name__}"
            )
        items = data if batched else (data[i] for i in range(len(data)))
        xs, ys = [], []
        for item in items:
            x, y = _pair(item, what)
            x, y = torch.as_tensor(x), torch.as_tensor(y)
            if not batched:
                x, y = x.unsqueeze(0), y.reshape(1)
            xs.append(x)
            ys.append(y.reshape(-1))
    if not xs or sum(len(y) for y in ys) == 0:
        raise UserDataError(f"{what}: the data is empty")
    try:
        x = torch.cat([t.detach().cpu() for t in xs]).float()
    except RuntimeError as e:
        raise UserDataError(f"{what}: inputs do not share one shape ({e})") from None
    y = torch.cat([t.detach().cpu() for t in ys])
    if (y.is_floating_point() or y.dtype == torch.bool) and not bool((y == y.round()).all()):
        raise UserDataError(f"{what}: labels must be class indices (integers), got values like {y[:3].tolist()}")
    y = y.long()
    if len(x) != len(y):
        raise UserDataError(f"{what}: {len(x)} inputs but {len(y)} labels")
    if int(y.min()) < 0:
        raise UserDataError(f"{what}: labels must be >= 0, got {int(y.min())}")
    if not bool(torch.isfinite(x).all()):
        raise UserDataError(f"{what}: inputs contain NaN or inf")
    return x, y


@torch.no_grad()
def output_classes(model: nn.Module, example: torch.Tensor, device: torch.device) -> int:
    """The number of classes the classifier predicts (its output width on one example)."""
    was = model.training
    model.eval()
    try:
        out = model(example[:1].to(device))
    except Exception as e:
        raise UserDataError(
            f"the model cannot take these inputs (shape {tuple(example.shape[1:])}): {type(e).__name__}: {e}"
        ) from None
    finally:
        model.train(was)
    if isinstance(out, dict) or not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise UserDataError(
            f"the model must return logits (N, classes), got {type(out).__name__} "
            f"{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}"
        )
    return int(out.shape[1])


def user_problem(
    model: nn.Module, forget: Any, retain: Any, heldout: Any | None, device: torch.device, class_names: Any = None
) -> tuple[ImageDataset, ForgetSplit, np.ndarray]:
    """One in-memory dataset — train rows ``[forget | retain]``, test rows ``heldout`` — its
    split, and the held-out rows. Whole classes absent from ``retain`` are the forgotten classes."""
    xf, yf = to_tensors(forget, "forget")
    xr, yr = to_tensors(retain, "retain")
    if xf.shape[1:] != xr.shape[1:]:
        raise UserDataError(
            f"forget inputs {tuple(xf.shape[1:])} and retain inputs {tuple(xr.shape[1:])} differ in shape"
        )
    if heldout is not None:
        xh, yh = to_tensors(heldout, "heldout")
        if xh.shape[1:] != xr.shape[1:]:
            raise UserDataError(
                f"held-out inputs {tuple(xh.shape[1:])} differ in shape from retain {tuple(xr.shape[1:])}"
            )
    else:
        xh, yh = xr[:0], yr[:0]
    k = output_classes(model, xr, device)
    top = int(max(yf.max(), yr.max(), yh.max() if len(yh) else 0))
    if top >= k:
        raise UserDataError(f"labels go up to {top} but the model predicts {k} classes")
    if class_names is not None:
        names = tuple(str(c) for c in class_names)
        if len(names) != k or len(set(names)) != k:
            raise UserDataError(
                f"class_names: the model predicts {k} classes, got {len(names)} name(s)"
                f"{' with duplicates' if len(set(names)) != len(names) else ''}: {list(names)[:12]}"
            )
    else:
        names = tuple(str(i) for i in range(k))
    ds = ImageDataset(
        name="user data",
        train_images=torch.cat([xf, xr]),
        train_labels=torch.cat([yf, yr]),
        test_images=xh,
        test_labels=yh,
        class_names=names,
        mean=(),
        std=(),
        source="the caller's Dataset/DataLoader",
    )
    nf = len(yf)
    forgotten = tuple(sorted(set(yf.tolist()) - set(yr.tolist())))
    test = np.arange(len(yh))
    in_forgotten = np.isin(yh.numpy(), forgotten) if len(yh) else np.zeros(0, dtype=bool)
    split = ForgetSplit(
        forget=np.arange(nf),
        retain=np.arange(nf, len(ds.train_labels)),
        test_forget=test[in_forgotten],
        test_retain=test[~in_forgotten],
        forget_classes=forgotten,
    )
    return ds, split, test
