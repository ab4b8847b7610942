"""Where a checkpoint's training data came from, written and read by one module.

Every checkpoint obliviate writes (``obliviate.train``, ``obliviate import``, an unlearned model)
records the dataset it was trained on: the loader and root to load it again from any working
directory, the per-class subset, and a content fingerprint
(:meth:`obliviate.data.ImageDataset.fingerprint`). :func:`load_training_data` loads that dataset
back and refuses one whose content differs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..data import DATASETS, ImageDataset, load_dataset

PROVENANCE_KEYS = ("dataset", "dataset_loader", "dataset_root", "dataset_fingerprint", "subset")


class DataProvenanceError(ValueError):
    """The data a checkpoint names cannot be found, or is not the data it was trained on."""


def loader_and_root(dataset: str, root: str | None) -> tuple[str, str | None]:
    """``(loader, absolute root)``: a folder given as the dataset is an npz folder."""
    loader = dataset
    if dataset not in DATASETS and Path(dataset).is_dir():
        loader, root = "npz", dataset
    return loader, str(Path(root).expanduser().resolve()) if root else None


def load_data(
    dataset: str,
    root: str | None = None,
    *,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    download: bool = False,
) -> ImageDataset:
    """A registered dataset (or an npz folder), optionally a per-class subset (seed 0)."""
    if dataset not in DATASETS and not Path(dataset).is_dir():
        raise DataProvenanceError(f"unknown dataset {dataset!r}: {DATASETS.unknown_message(dataset)}")
    ds = load_dataset(dataset, root=root, download=download)
    if train_per_class or test_per_class:
        ds = ds.subset(train_per_class, test_per_class, seed=0)
    return ds


def record(
    ds: ImageDataset,
    dataset: str,
    root: str | None,
    *,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
) -> dict[str, Any]:
    """The provenance fields of a checkpoint trained on ``ds`` (loaded as ``dataset`` from ``root``)."""
    loader, root_ = loader_and_root(dataset, root)
    return {
        "dataset": ds.describe(),
        "dataset_loader": loader,
        "dataset_root": root_,
        "dataset_fingerprint": ds.fingerprint(),
        "subset": {"train_per_class": train_per_class, "test_per_class": test_per_class},
    }


def load_training_data(
    meta: dict[str, Any],
    *,
    dataset: str | None = None,
    root: str | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    download: bool = False,
    allow_other_data: bool = False,
) -> ImageDataset:
    """The dataset a checkpoint's ``meta`` records (its loader, root and subset; ``dataset``,
    ``root`` and the subset sizes override them), refused when its content fingerprint differs
    from the recorded one unless ``allow_other_data``. The model's own input normalisation, when
    recorded (``obliviate import --mean --std``), replaces the dataset's."""
    recorded = meta.get("dataset_loader") or (meta.get("dataset") or {}).get("name", "").replace("[subset]", "")
    name = dataset or recorded
    if not name:
        raise DataProvenanceError("the checkpoint does not record its dataset: pass --dataset (and --root)")
    recorded_root = meta.get("dataset_root")
    root = root or (recorded_root if name == recorded else None)  # a recorded root belongs to its own dataset
    sub = meta.get("subset") or {}
    if train_per_class is None and test_per_class is None:
        train_per_class, test_per_class = sub.get("train_per_class"), sub.get("test_per_class")
    ds = load_data(name, root, train_per_class=train_per_class, test_per_class=test_per_class, download=download)
    want = meta.get("dataset_fingerprint")
    if want and ds.fingerprint() != want and not allow_other_data:

        def where(n: str, r: str | None) -> str:
            return f"{n!r}" + (f" at {r}" if r else "")

        raise DataProvenanceError(
            f"the data loaded, {where(name, root)}, is not the data this model was trained on "
            f"({where(recorded, recorded_root) if recorded else 'unnamed'}; the content fingerprints differ): "
            "pass the training data with --dataset/--root (an evaluation may also allow other data)"
        )
    norm = meta.get("input_normalisation") or {}
    if norm.get("mean") and norm.get("std"):
        ds = replace(ds, mean=tuple(norm["mean"]), std=tuple(norm["std"]))
    return ds


__all__ = ["PROVENANCE_KEYS", "DataProvenanceError", "load_data", "load_training_data", "loader_and_root", "record"]
