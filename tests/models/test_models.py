"""Model zoo: every model builds and runs on 32×32; checkpoints round-trip exactly and safely."""

from __future__ import annotations

import json

import pytest
import torch

from obliviate.models import (
    CheckpointError,
    ModelCache,
    create_model,
    list_models,
    load_checkpoint,
    num_parameters,
    save_checkpoint,
)

KW = {"coatnet": {"variant": "nano"}, "efficientformerv2": {"variant": "s0"}}


def test_registry_lists_the_zoo() -> None:
    names = list_models()
    for n in ("vgg16_bn", "resnet18", "resnet9", "coatnet", "efficientformerv2", "small_cnn"):
        assert n in names
    assert list_models("resnet*") == [n for n in names if n.startswith("resnet")]


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_on_32x32(name: str) -> None:
    if name.startswith("sisa"):
        pytest.skip("ensembles are built by the sisa method")
    m = create_model(name, num_classes=7, seed=0, **KW.get(name, {})).eval()
    with torch.no_grad():
        out = m(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_width_multiplier_narrows() -> None:
    full = num_parameters(create_model("resnet18", num_classes=10))
    narrow = num_parameters(create_model("resnet18", num_classes=10, width=0.25))
    assert 11e6 < full < 11.3e6 and narrow < full / 10


def test_seeded_init_is_reproducible_and_leaves_global_rng() -> None:
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a = create_model("resnet9", num_classes=10, width=0.25, seed=3)
    after = torch.rand(1)
    b = create_model("resnet9", num_classes=10, width=0.25, seed=3)
    assert torch.equal(before, after)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.bad_input
def test_unknown_model_suggests() -> None:
    with pytest.raises(KeyError, match="Did you mean 'resnet18'"):
        create_model("resnet81", num_classes=10)


def test_checkpoint_round_trip_is_exact(tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = create_model("vgg16_bn", num_classes=10, width=0.125, seed=0)
    m(torch.randn(4, 3, 32, 32))  # move BN running stats
    p = save_checkpoint(tmp_path / "ck", m, {"seed": 0, "dataset": {"name": "cifar10"}})
    loaded, meta = load_checkpoint(tmp_path / "ck", expect_model="vgg16_bn", expect_num_classes=10)
    assert meta["seed"] == 0 and meta["model"]["width"] == 0.125 and "torch" in meta["versions"]
    for (k, v), (k2, v2) in zip(m.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert json.loads(p.read_text())["sha256"]


@pytest.mark.bad_input
def test_checkpoint_mismatch_and_corruption_are_explained(tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = create_model("resnet9", num_classes=10, width=0.25, seed=0)
    save_checkpoint(tmp_path / "ck", m)
    with pytest.raises(CheckpointError, match="trained for 10 classes, expected 100"):
        load_checkpoint(tmp_path / "ck", expect_num_classes=100)
    with pytest.raises(CheckpointError, match="holds a 'resnet9' model, expected 'resnet18'"):
        load_checkpoint(tmp_path / "ck", expect_model="resnet18")
    from obliviate.models import load_weights

    with pytest.raises(CheckpointError, match="does not fit this architecture"):
        load_weights(create_model("resnet9", num_classes=100, width=0.25), tmp_path / "ck")
    w = tmp_path / "ck.safetensors"
    w.write_bytes(w.read_bytes()[:-10])  # a torn write
    with pytest.raises(CheckpointError, match="corrupt or partial"):
        load_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="no checkpoint metadata"):
        load_checkpoint(tmp_path / "never")


def test_cache_trains_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cache = ModelCache(tmp_path)
    spec = {"model": "resnet9", "seed": 0, "train": {"epochs": 1}}
    assert cache.load(spec) is None
    m = create_model("resnet9", num_classes=10, width=0.25, seed=0)
    cache.store(spec, m, {"seconds": 1.5})
    hit = cache.load(spec)
    assert hit is not None and hit[1]["seconds"] == 1.5
    assert cache.load({**spec, "seed": 1}) is None
    # a half-written entry (weights without metadata) never counts as a hit
    (cache.path(spec).with_name(cache.key(spec) + ".json")).unlink()
    assert cache.load(spec) is None


def test_no_unpickling_anywhere() -> None:
    import pathlib
    import re

    src = pathlib.Path(__file__).resolve().parents[2] / "src"
    for f in src.rglob("*.py"):
        for line in f.read_text().splitlines():
            if re.search(r"torch\.load\(", line):
                assert "weights_only=True" in line, f"{f}: {line.strip()}"
