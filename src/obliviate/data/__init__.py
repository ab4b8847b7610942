"""Datasets, forget requests and batch loaders."""

from .datasets import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CIFAR100_FINE_TO_COARSE,
    DATASETS,
    Hierarchy,
    ImageDataset,
    LabelInfo,
    cifar100_from_fine_labels,
    list_datasets,
    load_dataset,
    load_npz_folder,
)
from .loader import Augment, Batch, BatchLoader, augment_batch, normalise
from .requests import (
    ClassForget,
    ForgetRequest,
    ForgetRequestError,
    ForgetSplit,
    RandomForget,
    SampleIdsForget,
    SubclassForget,
    parse_request,
    read_ids_file,
    split_indices,
)

__all__ = [
    "CIFAR10_CLASSES", "CIFAR100_CLASSES", "CIFAR100_COARSE_CLASSES", "CIFAR100_FINE_TO_COARSE",
    "DATASETS", "Hierarchy", "ImageDataset", "LabelInfo", "cifar100_from_fine_labels",
    "list_datasets", "load_dataset", "load_npz_folder", "Augment", "Batch", "BatchLoader",
    "augment_batch", "normalise", "ClassForget", "ForgetRequest", "ForgetRequestError",
    "ForgetSplit", "RandomForget", "SampleIdsForget", "SubclassForget", "parse_request",
    "read_ids_file", "split_indices",
]
