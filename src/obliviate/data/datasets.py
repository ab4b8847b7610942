"""Image datasets as in-memory tensors, all with one shape: :class:`ImageDataset`.

Images are kept as ``uint8`` NCHW tensors (0..255) so that a whole dataset lives on the device;
the loader converts and normalises per batch. ``train_ids`` are the original sample ids (row ``i``
of the full training set has id ``i``), so deletion requests by id survive subsetting.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._registry import Registry

DATASETS: Registry[Callable[..., ImageDataset]] = Registry("dataset")

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_MEAN = (0.49139968, 0.48215841, 0.44653091)
CIFAR10_STD = (0.24703223, 0.24348513, 0.26158784)
CIFAR100_MEAN = (0.50707516, 0.48654887, 0.44091784)
CIFAR100_STD = (0.26733429, 0.25643846, 0.27615047)

# CIFAR-100: the 20 superclasses (coarse labels, alphabetical = official index order) and their
# five fine classes each. Fine class indices are the alphabetical order of all 100 names.
CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
CIFAR100_CLASSES: tuple[str, ...] = tuple(sorted(f for fines in CIFAR100_SUPERCLASSES.values() for f in fines))
CIFAR100_COARSE_CLASSES: tuple[str, ...] = tuple(CIFAR100_SUPERCLASSES)
CIFAR100_FINE_TO_COARSE: tuple[int, ...] = tuple(
    next(ci for ci, fines in enumerate(CIFAR100_SUPERCLASSES.values()) if f in fines) for f in CIFAR100_CLASSES
)


@dataclass(frozen=True)
class Hierarchy:
    """Fine classes grouped into superclasses (CIFAR-100's 100 fine / 20 coarse classes).

    ``train_fine``/``test_fine`` hold each sample's fine label; ``fine_to_coarse[f]`` is the
    superclass of fine class ``f``. Used by sub-class forget requests.
    """

    fine_names: tuple[str, ...]
    coarse_names: tuple[str, ...]
    fine_to_coarse: tuple[int, ...]
    train_fine: np.ndarray
    test_fine: np.ndarray

    def __post_init__(self) -> None:
        if len(self.fine_to_coarse) != len(self.fine_names):
            raise ValueError("fine_to_coarse must have one entry per fine class")
        bad = [c for c in self.fine_to_coarse if not 0 <= c < len(self.coarse_names)]
        if bad:
            raise ValueError(f"fine_to_coarse has superclass indices out of range: {bad[:5]}")


@dataclass(frozen=True)
class LabelInfo:
    """Everything a forget request needs to know about a dataset, without its images."""

    train_labels: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    train_ids: np.ndarray | None = None
    hierarchy: Hierarchy | None = None
    # whether the targets are the hierarchy's coarse classes (CIFAR-20) or its fine ones
    target_level: str = "fine"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class ImageDataset:
    """A classification dataset held as tensors.

    Attributes:
        train_images / test_images: ``uint8`` tensors of shape (N, C, H, W), values 0..255; or
            floating-point, model-ready inputs of any shape (N, ...) (see ``model_ready``).
        train_labels / test_labels: ``int64`` tensors of shape (N,), the training targets.
        train_ids: original id of each training row (``arange(N)`` unless subset).
        class_names: one name per target class.
        mean / std: per-channel normalisation statistics in [0, 1] units.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_ids: torch.Tensor = field(default=None)  # type: ignore[assignment]
    hierarchy: Hierarchy | None = None
    target_level: str = "fine"
    source: str = ""

    def __post_init__(self) -> None:
        if self.train_ids is None:
            self.train_ids = torch.arange(len(self.train_labels))
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if self.model_ready:
                if x.ndim < 2:
                    raise ValueError(f"{split} inputs must be (N, ...) with one row per sample, got {tuple(x.shape)}")
            elif x.dtype != torch.uint8 or x.ndim != 4:
                raise ValueError(f"{split}_images must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
            if len(x) != len(y):
                raise ValueError(f"{split}: {len(x)} images but {len(y)} labels")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.class_names)):
                raise ValueError(
                    f"{split}_labels must lie in [0, {len(self.class_names) - 1}], "
                    f"got range [{int(y.min())}, {int(y.max())}]"
                )
        if not self.model_ready and (len(self.mean) != self.channels or len(self.std) != self.channels):
            raise ValueError(f"mean/std need {self.channels} entries, got {self.mean}, {self.std}")

    @property
    def model_ready(self) -> bool:
        """Floating-point inputs of any shape, already as the model takes them (a user's own
        data, see :mod:`obliviate.deletion`): no uint8 scaling, no normalisation, no augmentation."""
        return self.train_images.is_floating_point()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.train_images.shape[2:])

    def label_info(self) -> LabelInfo:
        return LabelInfo(
            train_labels=self.train_labels.cpu().numpy(),
            test_labels=self.test_labels.cpu().numpy(),
            class_names=self.class_names,
            train_ids=self.train_ids.cpu().numpy(),
            hierarchy=self.hierarchy,
            target_level=self.target_level,
        )

    def fingerprint(self) -> str:
        """Content hash of the images, labels, ids, class names and normalisation: results and
        checkpoints survive a path change, and an edited dataset is a new dataset."""
        import hashlib

        h = hashlib.sha256()
        for t in (self.train_images, self.train_labels, self.test_images, self.test_labels, self.train_ids):
            h.update(t.cpu().numpy().tobytes())
        h.update(repr((self.class_names, self.mean, self.std)).encode())
        return h.hexdigest()[:20]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "train": len(self.train_labels),
            "test": len(self.test_labels),
            "classes": self.num_classes,
            "image": [self.channels, *self.image_size],
            "source": self.source,
        }

    def to(self, device: torch.device | str) -> ImageDataset:
        """A copy with all tensors on ``device`` (images stay uint8)."""
        return replace(
            self,
            train_images=self.train_images.to(device),
            train_labels=self.train_labels.to(device),
            test_images=self.test_images.to(device),
            test_labels=self.test_labels.to(device),
            train_ids=self.train_ids.to(device),
        )

    def subset(
        self, train_per_class: int | None = None, test_per_class: int | None = None, seed: int = 0
    ) -> ImageDataset:
        """A stratified subset (first ``k`` of a seeded shuffle per class); ids are kept.

        CPU-scale studies use this; reports say so.
        """

        def pick(labels: torch.Tensor, k: int | None) -> torch.Tensor | None:
            if k is None:
                return None
            if k <= 0:
                raise ValueError(f"per-class subset size must be > 0, got {k}")
            rng = np.random.default_rng(seed)
            y = labels.cpu().numpy()
            keep = []
            for c in range(self.num_classes):
                idx = np.flatnonzero(y == c)
                keep.append(np.sort(rng.permutation(idx)[:k]))
            return torch.from_numpy(np.sort(np.concatenate(keep)))

        tr, te = pick(self.train_labels, train_per_class), pick(self.test_labels, test_per_class)
        out = self
        hier = self.hierarchy
        if tr is not None:
            out = replace(
                out,
                train_images=out.train_images[tr.to(out.train_images.device)],
                train_labels=out.train_labels[tr.to(out.train_labels.device)],
                train_ids=out.train_ids[tr.to(out.train_ids.device)],
            )
            if hier is not None:
                hier = replace(hier, train_fine=hier.train_fine[tr.numpy()])
        if te is not None:
            out = replace(
                out,
                test_images=out.test_images[te.to(out.test_images.device)],
                test_labels=out.test_labels[te.to(out.test_labels.device)],
            )
            if hier is not None:
                hier = replace(hier, test_fine=hier.test_fine[te.numpy()])
        if tr is not None or te is not None:
            out = replace(out, hierarchy=hier, name=f"{self.name}[subset]")
        return out


def _from_numpy(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    class_names: Sequence[str],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **kw: Any,
) -> ImageDataset:
    """Build from NHWC (or NHW) uint8 arrays; mean/std default to the training set's."""

    def to_nchw(x: np.ndarray) -> torch.Tensor:
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, C), got {x.dtype} {x.shape}")
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    xtr, xte = to_nchw(x_train), to_nchw(x_test)
    if mean is None or std is None:
        f = xtr.float().div_(255)
        mean = f.mean(dim=(0, 2, 3)).tolist()
        std = f.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist()
    return ImageDataset(
        name=name,
        train_images=xtr,
        train_labels=torch.as_tensor(np.asarray(y_train), dtype=torch.int64),
        test_images=xte,
        test_labels=torch.as_tensor(np.asarray(y_test), dtype=torch.int64),
        class_names=tuple(class_names),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        **kw,
    )


@DATASETS.register("digits")
def load_digits(root: str | None = None, download: bool = False, seed: int = 0) -> ImageDataset:
    """scikit-learn's handwritten digits (1,797 8×8 grey images, 10 classes; ships with sklearn).

    The embedded default: real data that needs no download. A fixed stratified split puts
    25 % of each class in the test set (``seed`` picks the split; 0 is the canonical one).
    """
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    d = _load()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    idx = np.arange(len(x))
    tr, te = train_test_split(idx, test_size=0.25, stratify=d.target, random_state=seed)
    tr, te = np.sort(tr), np.sort(te)
    return _from_numpy(
        "digits",
        x[tr],
        d.target[tr],
        x[te],
        d.target[te],
        class_names=[str(i) for i in range(10)],
        source="sklearn.datasets.load_digits (UCI optdigits test set), 75/25 stratified split",
    )


def load_npz_folder(root: str | Path, name: str | None = None, **kw: Any) -> ImageDataset:
    """A folder with ``train.npz`` and ``test.npz`` (``images`` uint8 NHWC, ``labels``).

    Class names come from ``meta.json`` (``class_names``) when present, else ``"0".."K-1"``.
    """
    root = Path(root)
    missing = [f for f in ("train.npz", "test.npz") if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{root} lacks {', '.join(missing)}: an array dataset folder needs train.npz and "
            "test.npz, each with 'images' (N, H, W, C) uint8 and 'labels' (N,) integers"
        )
    arrays = {}
    for split in ("train", "test"):
        with np.load(root / f"{split}.npz") as z:
            if "images" not in z or "labels" not in z:
                raise ValueError(f"{root / (split + '.npz')} must hold 'images' and 'labels', has {list(z)}")
            arrays[split] = (z["images"], z["labels"].astype(np.int64))
    meta_path = root / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    n_classes = int(max(arrays["train"][1].max(), arrays["test"][1].max())) + 1
    class_names = meta.get("class_names") or [str(i) for i in range(n_classes)]
    return _from_numpy(
        name or root.name,
        *arrays["train"],
        *arrays["test"],
        class_names=class_names,
        source=f"arrays from {root}",
        **kw,
    )


@DATASETS.register("npz")
def load_npz(root: str | None = None, download: bool = False) -> ImageDataset:
    """Any image dataset given as arrays: ``root`` holds ``train.npz`` / ``test.npz``."""
    if root is None:
        raise ValueError("dataset 'npz' needs root=<folder with train.npz and test.npz>")
    return load_npz_folder(root)


def _torchvision_arrays(cls_name: str, root: str, download: bool) -> tuple[Any, Any]:
    try:
        import torchvision
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("CIFAR through torchvision needs the 'vision' extra: pip install 'obliviate[vision]'") from e
    cls = getattr(torchvision.datasets, cls_name)
    try:
        train = cls(root, train=True, download=download)
        test = cls(root, train=False, download=download)
    except RuntimeError as e:
        raise FileNotFoundError(
            f"{cls_name} not found under {root!r} ({e}). Fix: pass download=True on a machine that "
            f"can reach the internet, or root=<folder with train.npz/test.npz> holding the arrays"
        ) from e
    return train, test


@DATASETS.register("cifar10")
def load_cifar10(root: str | None = None, download: bool = False) -> ImageDataset:
    """CIFAR-10 (Krizhevsky 2009): 50k/10k 32×32 colour images, 10 classes.

    ``root`` may be a folder of ``train.npz``/``test.npz`` arrays (canonical order) or a
    torchvision root (``download=True`` fetches it where the network allows).
    """
    root = root or "data/cifar10"
    if (Path(root) / "train.npz").is_file():
        ds = load_npz_folder(root, name="cifar10", mean=CIFAR10_MEAN, std=CIFAR10_STD)
        return replace(ds, class_names=CIFAR10_CLASSES) if len(ds.class_names) == 10 else ds
    train, test = _torchvision_arrays("CIFAR10", root, download)
    return _from_numpy(
        "cifar10",
        train.data,
        train.targets,
        test.data,
        test.targets,
        CIFAR10_CLASSES,
        CIFAR10_MEAN,
        CIFAR10_STD,
        source=f"torchvision CIFAR10 at {root}",
    )


def _cifar100(root: str | None, download: bool, level: str) -> ImageDataset:
    root = root or "data/cifar100"
    if (Path(root) / "train.npz").is_file():
        base = load_npz_folder(root, name="cifar100")
        x_tr = base.train_images.permute(0, 2, 3, 1).numpy()
        x_te = base.test_images.permute(0, 2, 3, 1).numpy()
        y_tr, y_te = base.train_labels.numpy(), base.test_labels.numpy()
        src = f"arrays from {root}"
    else:
        train, test = _torchvision_arrays("CIFAR100", root, download)
        x_tr, x_te = train.data, test.data
        y_tr, y_te = np.asarray(train.targets), np.asarray(test.targets)
        if tuple(train.classes) != CIFAR100_CLASSES:
            raise ValueError("torchvision's CIFAR-100 class order differs from the expected alphabetical order")
        src = f"torchvision CIFAR100 at {root}"
    return cifar100_from_fine_labels(x_tr, y_tr, x_te, y_te, level=level, source=src)


def cifar100_from_fine_labels(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    level: str = "fine",
    source: str = "",
) -> ImageDataset:
    """Build CIFAR-100 (``level="fine"``, 100 targets) or CIFAR-20 (``"coarse"``, 20 superclass
    targets) from fine labels, with the superclass hierarchy attached."""
    if level not in ("fine", "coarse"):
        raise ValueError(f"level must be 'fine' or 'coarse', got {level!r}")
    f2c = np.asarray(CIFAR100_FINE_TO_COARSE)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    hier = Hierarchy(CIFAR100_CLASSES, CIFAR100_COARSE_CLASSES, CIFAR100_FINE_TO_COARSE, y_train, y_test)
    if level == "coarse":
        ytr, yte, names = f2c[y_train], f2c[y_test], CIFAR100_COARSE_CLASSES
    else:
        ytr, yte, names = y_train, y_test, CIFAR100_CLASSES
    return _from_numpy(
        "cifar20" if level == "coarse" else "cifar100",
        x_train,
        ytr,
        x_test,
        yte,
        names,
        CIFAR100_MEAN,
        CIFAR100_STD,
        hierarchy=hier,
        target_level=level,
        source=source,
    )


@DATASETS.register("cifar100")
def load_cifar100(root: str | None = None, download: bool = False) -> ImageDataset:
    """CIFAR-100 with its 100 fine classes as targets and the 20 superclasses attached."""
    return _cifar100(root, download, "fine")


@DATASETS.register("cifar20")
def load_cifar20(root: str | None = None, download: bool = False) -> ImageDataset:
    """CIFAR-100 trained on its 20 superclasses (the sub-class forgetting setting: forget
    ``rocket`` inside ``vehicles_2``)."""
    return _cifar100(root, download, "coarse")


def load_dataset(name: str, root: str | None = None, download: bool = False, **kw: Any) -> ImageDataset:
    """Load a registered dataset by name (``digits``, ``cifar10``, ``cifar100``, ``cifar20``,
    ``npz``). A folder path given as ``name`` loads as an array dataset."""
    if name not in DATASETS and Path(name).is_dir():
        return load_npz_folder(name)
    return DATASETS.get(name)(root=root, download=download, **kw)


def list_datasets(pattern: str = "*") -> list[str]:
    return DATASETS.names(pattern)
