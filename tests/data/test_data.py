"""Datasets and forget requests: shapes, disjoint/exhaustive/deterministic splits, bad requests."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from obliviate.data import (
    CIFAR100_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CIFAR100_FINE_TO_COARSE,
    Augment,
    BatchLoader,
    ClassForget,
    ForgetRequestError,
    LabelInfo,
    RandomForget,
    SampleIdsForget,
    SubclassForget,
    augment_batch,
    cifar100_from_fine_labels,
    load_dataset,
    parse_request,
    split_indices,
)
from obliviate.data.datasets import CIFAR100_SUPERCLASSES


def _labels(n: int = 200, k: int = 10, seed: int = 0) -> LabelInfo:
    rng = np.random.default_rng(seed)
    return LabelInfo(rng.integers(0, k, n), rng.integers(0, k, n // 2), tuple(f"c{i}" for i in range(k)))


def _cifar100_labels(seed: int = 0, level: str = "coarse") -> LabelInfo:
    """CIFAR-100-shaped labels constructed here (the real CIFAR-100 cannot be downloaded)."""
    rng = np.random.default_rng(seed)
    fine_tr = np.repeat(np.arange(100), 5)
    fine_te = np.repeat(np.arange(100), 2)
    rng.shuffle(fine_tr)
    x_tr = np.zeros((len(fine_tr), 2, 2, 3), np.uint8)
    x_te = np.zeros((len(fine_te), 2, 2, 3), np.uint8)
    return cifar100_from_fine_labels(x_tr, fine_tr, x_te, fine_te, level=level).label_info()


def _check_split(info: LabelInfo, split) -> None:  # type: ignore[no-untyped-def]
    n, m = len(info.train_labels), len(info.test_labels)
    assert len(np.intersect1d(split.forget, split.retain)) == 0
    assert np.array_equal(np.sort(np.concatenate([split.forget, split.retain])), np.arange(n))
    assert len(np.intersect1d(split.test_forget, split.test_retain)) == 0
    assert np.array_equal(np.sort(np.concatenate([split.test_forget, split.test_retain])), np.arange(m))


@pytest.mark.parametrize(
    "request_",
    [
        ClassForget(("c3",)),
        ClassForget((1, "c2")),
        RandomForget(0.1),
        SampleIdsForget((0, 5, 17, 199)),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 123])
def test_requests_are_disjoint_exhaustive_deterministic(request_, seed) -> None:  # type: ignore[no-untyped-def]
    info = _labels()
    a, b = split_indices(info, request_, seed), split_indices(info, request_, seed)
    _check_split(info, a)
    for f in ("forget", "retain", "test_forget", "test_retain"):
        assert np.array_equal(getattr(a, f), getattr(b, f))


def test_class_request_selects_exactly_the_class() -> None:
    info = _labels()
    s = split_indices(info, ClassForget(("c3", "c7")), 0)
    assert set(info.train_labels[s.forget]) == {3, 7}
    assert not np.isin(info.train_labels[s.retain], [3, 7]).any()
    assert set(info.test_labels[s.test_forget]) == {3, 7}
    assert s.forget_classes == (3, 7)


def test_random_request_depends_on_seed_and_size() -> None:
    info = _labels(1000)
    s0, s1 = split_indices(info, RandomForget(0.1), 0), split_indices(info, RandomForget(0.1), 1)
    assert len(s0.forget) == 100 and not np.array_equal(s0.forget, s1.forget)
    assert len(s0.test_forget) == 0 and len(s0.test_retain) == len(info.test_labels)


def test_ids_from_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "delete.txt"
    f.write_text("# deletion request 42\n3\n\n10  # user 7\n4\n")
    req = SampleIdsForget.from_file(f)
    assert req.ids == (3, 10, 4)
    s = split_indices(_labels(), req, 0)
    assert list(s.forget) == [3, 4, 10]


def test_ids_follow_subset_ids() -> None:
    info = _labels(10)
    sub = LabelInfo(info.train_labels[5:], info.test_labels, info.class_names, train_ids=np.arange(5, 10))
    s = split_indices(sub, SampleIdsForget((7,)), 0)
    assert list(s.forget) == [2]
    with pytest.raises(ForgetRequestError, match=r"\[2\]"):
        split_indices(sub, SampleIdsForget((2,)), 0)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: split_indices(_labels(), ClassForget(("airplan",)), 0), "Unknown class 'airplan'"),
        (lambda: split_indices(_labels(), ClassForget((10,)), 0), "index 10 is out of range: allowed 0..9"),
        (
            lambda: split_indices(_labels(), SampleIdsForget((5, 200)), 0),
            r"1 sample id\(s\) not in the training set: \[200\]; allowed: 0..199",
        ),
        (lambda: SampleIdsForget((1, "x")), "must be an integer, got 'x'"),
        (lambda: SampleIdsForget((1.5,)), "must be an integer, got 1.5"),
        (lambda: SampleIdsForget((3, 4, 3)), r"duplicated sample ids in the request: \[3\]"),
        (lambda: SampleIdsForget(()), "holds no sample ids"),
        (lambda: RandomForget(0.0), "strictly between 0 and 1"),
        (lambda: RandomForget(1.0), "strictly between 0 and 1"),
        (lambda: split_indices(_labels(20), RandomForget(0.01), 0), "selects no sample"),
        (lambda: split_indices(_labels(), ClassForget(tuple(f"c{i}" for i in range(10))), 0), "whole training set"),
        (lambda: split_indices(_labels(), SubclassForget("rocket"), 0), "needs a dataset with superclasses"),
        (lambda: split_indices(_labels(), ClassForget(("c1",)), -1), "seed must be a non-negative integer"),
        (lambda: parse_request({"kind": "bogus"}), "request kind must be one of"),
        (lambda: parse_request({"kind": "random", "fraction": 0.1, "frac": 2}), r"unknown field\(s\) \['frac'\]"),
    ],
)
def test_bad_requests_raise_with_the_bad_value(make, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ForgetRequestError, match=match):
        make()


@pytest.mark.bad_input
def test_empty_class_forget_set_raises() -> None:
    info = LabelInfo(np.array([0, 0, 1, 1]), np.array([0, 1]), ("a", "b", "c"))
    with pytest.raises(ForgetRequestError, match="selects no training sample"):
        split_indices(info, ClassForget(("c",)), 0)


@pytest.mark.bad_input
def test_ids_file_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "ids.txt"
    f.write_text("1\n12ab\n")
    with pytest.raises(
        ForgetRequestError, match=r"ids.txt:2: sample id must be a non-negative decimal integer.*column 3 of this"
    ) as e:
        SampleIdsForget.from_file(f)
    assert "12ab" not in str(e.value)  # the file's text is never echoed (it may be any file)
    fifo = tmp_path / "ids.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ForgetRequestError, match="is not a regular file"):
        SampleIdsForget.from_file(fifo)
    with pytest.raises(ForgetRequestError, match="does not exist"):
        SampleIdsForget.from_file(tmp_path / "missing.txt")
    # ASCII decimal digits only: what int() would also accept is refused, naming the line
    for bad in ("1_0", "+11", "\u0661\u0662", "1.0", "-3", "0x10"):
        f.write_text(f"5\n{bad}\n", encoding="utf-8")
        with pytest.raises(ForgetRequestError, match=r"ids.txt:2: .*ASCII digits only"):
            SampleIdsForget.from_file(f)
    # a byte-order mark and CRLF line ends are accepted
    f.write_bytes(b"\xef\xbb\xbf7\r\n8\r\n# a comment\r\n9\r\n")
    assert SampleIdsForget.from_file(f).ids == (7, 8, 9)
    with pytest.raises(ForgetRequestError, match="is a directory"):
        SampleIdsForget.from_file(tmp_path)


def test_cifar100_superclass_map() -> None:
    assert len(CIFAR100_CLASSES) == 100 and len(set(CIFAR100_CLASSES)) == 100
    assert list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)
    assert len(CIFAR100_COARSE_CLASSES) == 20
    counts = np.bincount(CIFAR100_FINE_TO_COARSE, minlength=20)
    assert (counts == 5).all()
    # spot checks against the official meta file's hierarchy
    assert CIFAR100_COARSE_CLASSES[CIFAR100_FINE_TO_COARSE[CIFAR100_CLASSES.index("rocket")]] == "vehicles_2"
    assert CIFAR100_COARSE_CLASSES[CIFAR100_FINE_TO_COARSE[CIFAR100_CLASSES.index("baby")]] == "people"
    assert CIFAR100_CLASSES.index("apple") == 0 and CIFAR100_CLASSES.index("worm") == 99
    assert CIFAR100_COARSE_CLASSES.index("vehicles_2") == 19
    assert sum(len(v) for v in CIFAR100_SUPERCLASSES.values()) == 100


def test_subclass_request_on_constructed_cifar20_labels() -> None:
    info = _cifar100_labels(level="coarse")
    h = info.hierarchy
    assert h is not None and info.num_classes == 20
    s = split_indices(info, SubclassForget("rocket", "vehicles 2"), 0)
    _check_split(info, s)
    rocket = CIFAR100_CLASSES.index("rocket")
    assert (h.train_fine[s.forget] == rocket).all() and len(s.forget) == 5
    assert (h.test_fine[s.test_forget] == rocket).all() and len(s.test_forget) == 2
    # the superclass stays: its other sub-classes are retained, with the same coarse target
    v2 = CIFAR100_COARSE_CLASSES.index("vehicles_2")
    assert (info.train_labels[s.forget] == v2).all()
    assert ((info.train_labels[s.retain] == v2).sum()) == 20
    assert s.forget_classes == ()
    with pytest.raises(ForgetRequestError, match="is in superclass 'vehicles_2', not 'vehicles_1'"):
        split_indices(info, SubclassForget("rocket", "vehicles_1"), 0)
    with pytest.raises(ForgetRequestError, match="Unknown sub-class 'rockett'. Did you mean 'rocket'"):
        split_indices(info, SubclassForget("rockett"), 0)


def test_parse_request_forms() -> None:
    assert parse_request("airplane") == ClassForget(("airplane",))
    assert parse_request("airplane, cat") == ClassForget(("airplane", "cat"))
    assert parse_request("random:0.1") == RandomForget(0.1)
    assert parse_request({"kind": "subclass", "subclass": "rocket"}) == SubclassForget("rocket")
    assert parse_request({"kind": "ids", "ids": [1, 2]}) == SampleIdsForget((1, 2))


def test_digits_is_the_embedded_default() -> None:
    ds = load_dataset("digits")
    assert ds.train_images.dtype == torch.uint8 and ds.train_images.shape[1:] == (1, 8, 8)
    assert len(ds.train_labels) + len(ds.test_labels) == 1797
    assert ds.num_classes == 10


@pytest.mark.bad_input
def test_missing_cifar_names_the_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_dataset("cifar10", root=str(tmp_path))


def test_real_cifar10_from_shared(cifar10_root) -> None:  # type: ignore[no-untyped-def]
    ds = load_dataset("cifar10", root=str(cifar10_root))
    assert ds.train_images.shape == (50000, 3, 32, 32) and ds.test_images.shape == (10000, 3, 32, 32)
    assert ds.class_names[0] == "airplane"
    assert ds.train_labels[:5].tolist() == [6, 9, 9, 4, 1]  # canonical order
    sub = ds.subset(100, 50)
    assert torch.bincount(sub.train_labels).tolist() == [100] * 10
    assert torch.equal(sub.train_images[0], ds.train_images[int(sub.train_ids[0])])


def test_loader_batches_are_named_and_deterministic() -> None:
    ds = load_dataset("digits")

    def mk() -> BatchLoader:
        return BatchLoader(
            ds.train_images,
            ds.train_labels,
            mean=ds.mean,
            std=ds.std,
            batch_size=100,
            shuffle=True,
            augment=Augment(pad=1),
            seed=0,
        )

    a, b = next(iter(mk())), next(iter(mk()))
    assert set(a) == {"image", "label", "index"}
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["index"], b["index"])
    assert a["image"].dtype == torch.float32 and a["image"].shape == (100, 1, 8, 8)
    assert torch.equal(a["label"], ds.train_labels[a["index"]])
    assert len(mk()) == 14 and sum(len(x["label"]) for x in mk()) == len(ds.train_labels)


def test_augment_is_a_crop_and_flip() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    same = augment_batch(x, Augment(pad=0, flip=False), g)
    assert torch.equal(same, x)
    out = augment_batch(x, Augment(pad=2, flip=True), g)
    assert out.shape == x.shape
    # every output pixel value exists in the reflect-padded input
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(2):
        assert set(out[i].flatten().tolist()) <= set(padded[i].flatten().tolist())
