"""The airbench model and recipes: shape, whitening init, decoupled SGD, determinism, learning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from obliviate.data import ImageDataset, load_dataset
from obliviate.models import create_model, num_parameters
from obliviate.models.airbench import AirbenchNet, PatchWhitening
from obliviate.recipes import decoupled_sgd, get_recipe, list_recipes, recipe
from obliviate.training import TrainConfig, evaluate_accuracy, fit, make_loader, make_optimizer


def _correlated_images(n: int, seed: int) -> torch.Tensor:
    """Smooth colour images (neighbouring pixels and channels correlated) plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, 1, 8, 8, generator=g)
    smooth = F.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)
    tint = torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1)
    return smooth * tint + 0.3 * torch.randn(n, 3, 32, 32, generator=g)


def _tiny_cifar_like(n: int = 256, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    # class-dependent mean colour so that a few steps can learn something
    base = (labels.float() * 25).view(n, 1, 1, 1).expand(n, 3, 32, 32)
    images = (base + torch.randint(0, 30, (n, 3, 32, 32), generator=g)).clamp(0, 255).to(torch.uint8)
    return ImageDataset(
        name="tiny32",
        class_names=tuple(str(i) for i in range(10)),
        train_images=images,
        train_labels=labels,
        test_images=images[:64],
        test_labels=labels[:64],
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )


def test_builds_and_runs_forward_on_32x32() -> None:
    model = create_model("airbench", num_classes=10, seed=0)
    assert 1.9e6 < num_parameters(model) < 2.1e6  # airbench94: ~2 M parameters
    model.obliviate_fit_start(_correlated_images(64, 0))
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    narrow = create_model("airbench", num_classes=7, width=0.5, seed=0)
    widths = [m.out_channels for m in narrow.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [32, 32, 128, 128, 128, 128]
    assert narrow(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(ValueError, match="width"):
        create_model("airbench", num_classes=10, width=0.0)


def test_whitening_conv_gives_identity_patch_covariance() -> None:
    images = _correlated_images(300, seed=1)
    layer = PatchWhitening(3, kernel_size=2, eps=5e-4)
    lam = layer.fit(images)
    assert lam.min() > 0.05  # the data's patch spectrum: ε is negligible next to it
    # raw patches are strongly correlated ...
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    raw = patches.T @ patches / len(patches)
    assert (raw - torch.diag(raw.diag())).abs().max() > 0.3
    # ... and the conv's first 12 output channels (no bias) are white: E[z zᵀ] ≈ I
    with torch.no_grad():
        z = F.conv2d(images, layer.weight[:12]).permute(0, 2, 3, 1).reshape(-1, 12)
    cov = z.T @ z / len(z)
    assert torch.allclose(cov, torch.eye(12), atol=2e-2), cov
    # the other 12 filters are the negatives, so GELU sees both signs of every component
    assert torch.equal(layer.weight[12:], -layer.weight[:12])


def test_fit_start_whitens_once_and_bias_freezes_after_its_epochs() -> None:
    model = AirbenchNet(10, width=0.125, whiten_bias_epochs=2)
    assert not model.whiten.weight.requires_grad and model.whiten.bias.requires_grad
    model.obliviate_fit_start(_correlated_images(32, 0))
    w = model.whiten.weight.clone()
    model.obliviate_fit_start(_correlated_images(32, 5))  # e.g. a later fine-tuning run
    assert torch.equal(model.whiten.weight, w)
    model.obliviate_epoch_end(0)
    assert model.whiten.bias.requires_grad
    model.obliviate_epoch_end(1)
    assert not model.whiten.bias.requires_grad
    # the flag travels with the weights: a loaded copy is not re-whitened either
    copy = AirbenchNet(10, width=0.125)
    copy.load_state_dict(model.state_dict())
    copy.obliviate_fit_start(_correlated_images(32, 9))
    assert torch.equal(copy.whiten.weight, w)


def test_decoupled_sgd_matches_airbench_parametrisation() -> None:
    d = decoupled_sgd(batch_size=1024, lr=11.5, momentum=0.85, weight_decay=0.0153, bias_scaler=64.0)
    gain = 1 + 1 / (1 - 0.85)
    # airbench: summed loss, per-example lr 11.5/(1024·gain); mean loss multiplies back by B
    assert math.isclose(d["lr"], 11.5 / gain)
    # per-step decay airbench applies: wd·B/(1024·gain)
    assert math.isclose(d["lr"] * d["weight_decay"], 0.0153 / gain)
    assert math.isclose(decoupled_sgd(batch_size=512)["lr"], d["lr"] / 2)
    assert math.isclose(d["bias_lr_scale"] * d["bias_wd_scale"], 1.0)
    with pytest.raises(ValueError, match="momentum"):
        decoupled_sgd(momentum=1.0)


def test_recipes_are_registered_and_overridable() -> None:
    assert {"airbench", "airbench_quick"} <= set(list_recipes())
    cfg = get_recipe("airbench")
    assert isinstance(cfg, TrainConfig)
    assert (cfg.batch_size, cfg.label_smoothing, cfg.schedule, cfg.crop_pad, cfg.tta) == (
        1024,
        0.2,
        "triangle",
        2,
        "flip",
    )
    assert cfg.nesterov and cfg.bf16 and cfg.channels_last
    assert recipe("airbench_quick").model_kwargs["width"] < recipe("airbench").model_kwargs["width"]
    assert get_recipe("airbench", epochs=1.0).epochs == 1.0
    with pytest.raises(ValueError, match="no_such"):
        get_recipe("airbench", no_such=1)
    with pytest.raises(KeyError, match="airbench"):
        get_recipe("airbenhc")


def test_optimizer_groups_follow_the_recipe() -> None:
    cfg = get_recipe("airbench")
    model = create_model("airbench", num_classes=10, width=0.125, seed=0)
    opt = make_optimizer(model, cfg)
    rest, flat = opt.param_groups
    bn_shifts = {id(m.bias) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    # only the BN shifts are 1-D trainables: BN weights are frozen, the whitening bias is (C, 1, 1)
    assert {id(p) for p in flat["params"]} == bn_shifts
    assert any(p is model.whiten.bias for p in rest["params"])
    assert all(p is not model.whiten.weight for g in opt.param_groups for p in g["params"])
    assert math.isclose(flat["lr"], cfg.lr * 64) and math.isclose(
        flat["lr"] * flat["weight_decay"], cfg.lr * cfg.weight_decay
    )


def test_short_fit_is_deterministic_under_a_seed() -> None:
    data = _tiny_cifar_like(n=128)
    cfg = get_recipe("airbench", epochs=2.0, batch_size=64)  # bf16 + channels_last, as the recipe
    fresh = create_model("airbench", num_classes=10, width=0.125, seed=3, whiten_bias_epochs=1)

    def run() -> dict[str, torch.Tensor]:
        model = create_model("airbench", num_classes=10, width=0.125, seed=3, whiten_bias_epochs=1)
        fit(
            model,
            make_loader(data, torch.arange(len(data.train_labels)), cfg, seed=3),
            cfg,
            device=torch.device("cpu"),
        )
        assert not model.whiten.bias.requires_grad  # frozen after its one epoch
        return model.state_dict()

    # one thread keeps this fast on a busy 2-core machine, where each 2-thread op of a tiny net
    # waits for a time slice of the second core
    torch.set_num_threads(1)
    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert bool(a["whiten.fitted"])
    assert not torch.equal(a["head.weight"], fresh.state_dict()["head.weight"])  # it did train


@pytest.mark.slow
def test_quick_recipe_learns_a_cifar10_slice(cifar10_root: Path) -> None:
    data = load_dataset("cifar10", root=str(cifar10_root)).subset(train_per_class=500, test_per_class=100, seed=0)
    r = recipe("airbench_quick")
    cfg = r.config.with_(epochs=8.0, **decoupled_sgd(batch_size=250))
    model = create_model(r.model, num_classes=10, seed=0, **r.model_kwargs)
    fit(
        model,
        make_loader(data, torch.arange(len(data.train_labels)), cfg, seed=0),
        cfg,
        device=torch.device("cpu"),
    )
    acc = evaluate_accuracy(model, data, bf16=cfg.bf16, channels_last=cfg.channels_last, tta=cfg.tta)
    assert acc > 0.45, acc  # chance is 0.10
