"""The training loop: schedules, validation, determinism, and learning on real CIFAR-10."""

from __future__ import annotations

import pytest
import torch

from obliviate.data import load_dataset
from obliviate.models import create_model
from obliviate.training import TrainConfig, evaluate_accuracy, fit, lr_factor, make_loader


def test_schedules_shape() -> None:
    one = TrainConfig(schedule="onecycle", warmup_frac=0.2, start_factor=0.1, end_factor=0.0)
    assert lr_factor(0, 100, one) == pytest.approx(0.1)
    assert lr_factor(20, 100, one) == pytest.approx(1.0)
    assert lr_factor(100, 100, one) == pytest.approx(0.0)
    tri = TrainConfig(schedule="triangle", warmup_frac=0.25, start_factor=0.2, end_factor=0.07)
    assert lr_factor(25, 100, tri) == pytest.approx(1.0)
    assert lr_factor(100, 100, tri) == pytest.approx(0.07)
    assert lr_factor(50, 100, TrainConfig(schedule="cosine")) == pytest.approx(0.5)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "bad, match",
    [
        ({"optimizer": "adam"}, "optimizer must be one of"),
        ({"epochs": 0}, "epochs must be > 0"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"schedule": "step"}, "schedule must be one of"),
    ],
)
def test_bad_train_config(bad, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({"epoch": 3})


def test_deterministic_on_cpu_under_a_seed() -> None:
    ds = load_dataset("digits")
    cfg = TrainConfig(epochs=1, batch_size=128, lr=0.05, crop_pad=1)
    rows = torch.arange(len(ds.train_labels))

    def run() -> dict[str, torch.Tensor]:
        m = create_model("small_cnn", num_classes=10, in_chans=1, seed=0, width=0.5)
        fit(m, make_loader(ds, rows, cfg, seed=0), cfg, device=torch.device("cpu"))
        return m.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_hooks_and_progress_are_called() -> None:
    ds = load_dataset("digits")
    cfg = TrainConfig(epochs=2, batch_size=256, lr=0.05, augment=False)
    m = create_model("small_cnn", num_classes=10, in_chans=1, seed=0, width=0.25)
    seen: list[int] = []
    reg_calls = []
    res = fit(
        m,
        make_loader(ds, torch.arange(len(ds.train_labels)), cfg, 0),
        cfg,
        device=torch.device("cpu"),
        progress=lambda ev: seen.append(ev["step"]),
        regularizer=lambda model: reg_calls.append(1) or torch.zeros(()),
    )
    assert res.steps == len(seen) == 2 * 6 == len(reg_calls)
    assert seen[-1] == res.steps and len(res.epoch_loss) == 2


def test_short_run_on_real_cifar10_learns(cifar10_root) -> None:  # type: ignore[no-untyped-def]
    """A narrow ResNet9 on 4,000 real CIFAR-10 images for 3 epochs: far above 10 % chance."""
    torch.set_num_threads(2)
    ds = load_dataset("cifar10", root=str(cifar10_root)).subset(400, 100, seed=0)
    # fp32: bf16 autocast on a CPU without fast bf16 kernels is many times slower, not faster
    cfg = TrainConfig(epochs=3, batch_size=128, lr=0.1, label_smoothing=0.1)
    m = create_model("resnet9", num_classes=10, width=0.25, seed=0)
    fit(m, make_loader(ds, torch.arange(len(ds.train_labels)), cfg, 0), cfg, device=torch.device("cpu"))
    acc = evaluate_accuracy(m, ds)
    assert acc > 0.35, acc
