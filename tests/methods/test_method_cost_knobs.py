"""Cost knobs added for the efficiency frontier: sample subsets and GELU units.

Each knob is off by default; set at or above the split size it changes nothing; below it the
method reads fewer samples, stays deterministic and still works.
"""

from __future__ import annotations

import pytest
import torch

from obliviate.data import normalise
from obliviate.methods import get_method, run_method
from obliviate.methods.neuron_mask import activation_units, unit_activation
from obliviate.models import create_model
from obliviate.testing import TINY_TRAIN, TinyProblem

KNOBS = [
    ("ssd", {"alpha": 6.0}, "forget_samples", 64),
    ("neuron_mask", {"retain_samples": 300, "fraction": 0.1}, "forget_samples", 40),
    ("random_label", {"epochs": 1}, "retain_samples", 200),
    ("salun", {"epochs": 1}, "retain_samples", 200),
    ("l1_sparse", {"epochs": 1}, "retain_samples", 200),
    ("scrub", {"epochs": 1, "msteps": 1}, "retain_samples", 200),
    ("scrub", {"epochs": 1, "msteps": 1}, "forget_samples", 40),
]


def _run(tiny: TinyProblem, name: str, config: dict):  # type: ignore[no-untyped-def,type-arg]
    cls = get_method(name)
    return run_method(cls(config), tiny.model, tiny.data(cls), tiny.context())[0]


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(("name", "base", "knob", "small"), KNOBS)
def test_subset_knob(tiny: TinyProblem, name: str, base: dict, knob: str, small: int) -> None:  # type: ignore[type-arg]
    cls = get_method(name)
    assert getattr(cls.Config(), knob) is None  # off by default: the paper's computation
    default = _run(tiny, name, base)
    whole = _run(tiny, name, {**base, knob: 100_000})  # at least the split: the default computation
    assert _same(default.model, whole.model)
    part = _run(tiny, name, {**base, knob: small})
    again = _run(tiny, name, {**base, knob: small})
    assert _same(part.model, again.model)  # deterministic under the run's seed
    assert not _same(part.model, default.model)  # and it did change what was computed
    for v in part.model.state_dict().values():
        if v.is_floating_point():
            assert torch.isfinite(v).all()
    if knob == "retain_samples" and name in ("random_label", "salun", "l1_sparse", "scrub"):
        assert part.steps < default.steps  # fewer retain batches per epoch
    if name == "scrub" and knob == "forget_samples":
        assert part.info["max_steps"] == 1 and default.info["max_steps"] >= 1
    with pytest.raises(ValueError, match=knob):
        cls({**base, knob: 0})


def test_ssd_forget_samples_reads_fewer_batches(tiny: TinyProblem) -> None:
    full = _run(tiny, "ssd", {"alpha": 6.0})
    part = _run(tiny, "ssd", {"alpha": 6.0, "forget_samples": 64})
    assert part.info["importance_batches"]["forget"] == 1 < full.info["importance_batches"]["forget"]
    # the ceiling uses the full split's batch counts either way
    assert part.info["selection_ceiling"] == full.info["selection_ceiling"]
    assert part.info["dampened"] > 0


def test_neuron_mask_forget_samples_counts(tiny: TinyProblem) -> None:
    part = _run(tiny, "neuron_mask", {"retain_samples": 300, "forget_samples": 40})
    assert part.info["forget_samples"] == 40 and part.info["retain_samples"] == 300


def test_neuron_mask_gelu_units_on_airbench() -> None:
    torch.manual_seed(0)
    model = create_model("airbench", num_classes=10, seed=0, width=0.125).eval()
    x = torch.randn(4, 3, 32, 32)
    model.obliviate_fit_start(x)  # set the patch-whitening filters (zero until fitted)
    assert activation_units(model, x) == {}  # airbench has no ReLU: nothing by default
    units = activation_units(model, x, (torch.nn.GELU,))
    assert len(units) == 6  # two BN -> GELU per conv group
    assert all(isinstance(act, torch.nn.GELU) for _, act in units.values())
    _name, (bn, act) = next(iter(units.items()))
    seen: dict[str, torch.Tensor] = {}
    bn.register_forward_hook(lambda m, i, o: seen.__setitem__("a", unit_activation(m, o, act)))
    with torch.no_grad():
        bn.weight[:3] = 0.0
        bn.bias[:3] = 0.0
        model(x)
    assert torch.equal(seen["a"][:, :3], torch.zeros(4, 3))  # GELU(0) = 0: a masked unit is silent
    assert (seen["a"][:, 3:].abs().sum(0) > 0).all()


def test_neuron_mask_masks_gelu_units_end_to_end() -> None:
    """On an airbench net (GELU) the method needs ``activations``; with it, units are masked."""
    from obliviate.data import ClassForget, ImageDataset, split_indices
    from obliviate.methods import UnlearnContext, UnlearnData

    g = torch.Generator().manual_seed(0)

    def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 3
        x = torch.randint(0, 128, (n, 3, 32, 32), generator=g) + 100 * (y == 0).view(-1, 1, 1, 1)  # "a" brighter
        return x.to(torch.uint8), y

    (xtr, ytr), (xte, yte) = images(120), images(30)
    ds = ImageDataset(
        name="synthetic32",
        train_images=xtr,
        train_labels=ytr,
        test_images=xte,
        test_labels=yte,
        class_names=("a", "b", "c"),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
    )
    split = split_indices(ds.label_info(), ClassForget(("a",)), 0)

    def factory(seed: int) -> torch.nn.Module:
        return create_model("airbench", num_classes=3, seed=seed, width=0.125)

    model = factory(0).eval()
    model.obliviate_fit_start(normalise(xtr, torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)))
    ctx = UnlearnContext(device=torch.device("cpu"), seed=0, model_factory=factory, train_config=TINY_TRAIN)
    cls = get_method("neuron_mask")
    with pytest.raises(ValueError, match="activations"):
        run_method(cls({}), model, UnlearnData(ds, split, cls.uses), ctx)
    result, _ = run_method(
        cls({"activations": ["GELU"], "fraction": 0.05}), model, UnlearnData(ds, split, cls.uses), ctx
    )
    assert result.info["masked_units"] == round(0.05 * result.info["candidate_units"]) > 0
    assert result.info["candidate_units"] == 2 * (8 + 32 + 32)  # widths 64/256/256 × 0.125, two units each
    with pytest.raises(ValueError, match="activations"):
        cls({"activations": ["tanh"]})
