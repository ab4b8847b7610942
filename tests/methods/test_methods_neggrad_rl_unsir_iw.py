"""Focused tests for ``neggrad_plus``, ``random_label``, ``unsir`` and ``instance_wise``.

Each runs on the tiny digits problem (``tiny``: forget class 3; ``tiny_random``: a random 10 %).
Thresholds sit below the values measured on three problem seeds (given next to each assertion)
with margin; the conformance suite covers the generic contract.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from obliviate.data import ForgetRequestError, SampleIdsForget, split_indices
from obliviate.methods import MethodResult, RunStats, UnlearnData, get_method, run_method, unsir
from obliviate.methods import instance_wise as iw
from obliviate.methods import random_label as rl
from obliviate.testing import TinyProblem
from obliviate.training import predict_logits


def _run(problem: TinyProblem, name: str, **cfg: object) -> tuple[MethodResult, RunStats]:
    cls = get_method(name)
    return run_method(cls(cfg), problem.model, problem.data(cls), problem.context(0))


def _finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if v.is_floating_point())


# -- neggrad_plus --------------------------------------------------------------------------------


def test_neggrad_plus_forgets_the_class(tiny: TinyProblem) -> None:
    result, stats = _run(tiny, "neggrad_plus")  # the SCRUB small-scale defaults: β=0.95, lr 0.01, 10 epochs
    assert tiny.accuracy(result.model, "forget") < 0.3  # measured 0.000 on seeds 0, 1
    assert tiny.accuracy(result.model, "retain") > 0.85  # measured 0.959, 0.983
    assert _finite(result.model)
    assert stats.splits_read == ["forget", "retain"]


def test_neggrad_plus_cap_keeps_aggressive_ascent_finite(tiny: TinyProblem) -> None:
    aggressive = {"beta": 0.5, "lr": 0.1, "epochs": 3.0}
    guarded, _ = _run(tiny, "neggrad_plus", **aggressive)
    assert _finite(guarded.model)
    assert guarded.info["forget_samples_capped"] > 0  # the cap is what stopped the ascent
    assert tiny.accuracy(guarded.model, "forget") < 0.3  # measured 0.000
    assert tiny.accuracy(guarded.model, "retain") > 0.85  # measured 0.979, 0.990 (seeds 0, 1)
    # The same run without the cap blows up, so the guard is doing the work: run_method refuses
    # the diverged run at the step where its loss became NaN.
    from obliviate.core import NonFiniteError

    with pytest.raises(NonFiniteError, match=r"non-finite loss at step \d+"):
        _run(tiny, "neggrad_plus", **aggressive, forget_loss_cap=None)


# -- random_label --------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["forget_first", "mixed"])
def test_random_label_forgets_the_class_and_never_uses_a_forgotten_label(
    tiny: TinyProblem, order: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = rl.random_other_labels

    def spy(
        labels: torch.Tensor,
        num_classes: int,
        generator: torch.Generator,
        *,
        excluded: tuple[int, ...] = (),
        any_class: bool = False,
    ) -> torch.Tensor:
        out = original(labels, num_classes, generator, excluded=excluded, any_class=any_class)
        drawn.append((labels.clone(), out.clone()))
        return out

    monkeypatch.setattr(rl, "random_other_labels", spy)
    result, _ = _run(tiny, "random_label", order=order)
    assert tiny.accuracy(result.model, "forget") < 0.3  # measured 0.000 (both orders, seeds 0, 1)
    assert tiny.accuracy(result.model, "retain") > 0.85  # measured 0.965-0.991
    true = torch.cat([t for t, _ in drawn])
    new = torch.cat([n for _, n in drawn])
    forgotten = tiny.split.forget_classes[0]
    assert len(true) == 10 * len(tiny.split.forget)  # every forget sample relabelled once per epoch
    assert bool((true == forgotten).all())  # only forget rows were relabelled
    assert not bool((new == forgotten).any())
    assert set(new.tolist()) == set(range(10)) - {forgotten}  # every other class is used


def test_one_random_other_labels_for_every_relabelling_method() -> None:
    from obliviate.methods import base, salun

    assert rl.random_other_labels is base.random_other_labels is salun.random_other_labels


def test_random_other_labels_excludes_own_and_forgotten_classes() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat(300)
    # random / id requests: only the sample's own label is excluded, all 9 others occur
    out = rl.random_other_labels(y, 10, g)
    assert not bool((out == y).any())
    for c in range(10):
        assert set(out[y == c].tolist()) == set(range(10)) - {c}
    # class requests: forgotten classes are never drawn, for any sample
    out = rl.random_other_labels(y, 10, g, excluded=(3, 8))
    assert not bool((out == y).any()) and not bool(((out == 3) | (out == 8)).any())
    # seeded: the same generator state gives the same labels
    a = rl.random_other_labels(y, 10, torch.Generator().manual_seed(5), excluded=(3,))
    b = rl.random_other_labels(y, 10, torch.Generator().manual_seed(5), excluded=(3,))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="no class is left"):
        rl.random_other_labels(torch.tensor([0]), 2, g, excluded=(1,))


# -- unsir -----------------------------------------------------------------------------------------

# The notebook's noise share of the impair set (5,120 noise vs 9,000 retain images on CIFAR-10,
# ~36 %) and its ~36 repair steps, at digits scale (121 retain images per class): 640 noise
# images (35 %) and 5 repair epochs (25 steps). At the CIFAR defaults the digits impair set is
# 81 % noise and the tiny model collapses (retain 0.11-0.37 measured).
UNSIR_DIGITS = {"noise_batch_size": 64, "noise_copies": 10, "repair_epochs": 5}


def test_unsir_forgets_the_class_without_reading_it(tiny: TinyProblem) -> None:
    result, stats = _run(tiny, "unsir", **UNSIR_DIGITS)
    assert tiny.accuracy(result.model, "forget") < 0.3  # measured 0.000 on seeds 0, 1, 2
    assert tiny.accuracy(result.model, "retain") > 0.85  # measured 0.975, 0.988, 0.989
    assert stats.splits_read == ["retain"]
    assert result.info["classes"] == [3] and result.info["noise_images"] == 640


@pytest.mark.bad_input
def test_unsir_rejects_sample_level_requests(tiny_random: TinyProblem) -> None:
    cls = get_method("unsir")
    data = tiny_random.data(cls)
    with pytest.raises(ForgetRequestError, match="unsir forgets whole classes.*random_label"):
        run_method(cls(), tiny_random.model, data, tiny_random.context(0))
    assert data.accessed == set()  # refused before reading anything


def test_unsir_noise_raises_the_error_and_leaves_the_model_alone(tiny: TinyProblem) -> None:
    model = tiny.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = unsir.UNSIRConfig(noise_batch_size=64)
    noise = unsir._learn_noise(model, 3, (1, 8, 8), cfg, tiny.context(0), offset=10)
    start = torch.randn(64, 1, 8, 8, generator=tiny.context(0).generator(10))
    target = torch.full((64,), 3)
    with torch.no_grad():
        ce_start = nn.functional.cross_entropy(model.eval()(start), target)
        ce_noise = nn.functional.cross_entropy(model(noise), target)
    assert float(ce_noise) > float(ce_start) + 1.0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())


# -- instance_wise -------------------------------------------------------------------------------

# Cheaper PGD with the same path length (20 steps of 0.5 instead of 100 of 0.1) and 4 instead of
# 20 adversarial examples per instance; ε, lr, λ and the stopping rule are the paper's defaults.
IW_FAST = {"adv_per_instance": 4, "pgd_steps": 20, "pgd_step": 0.5}


def test_instance_wise_misclassifies_every_forget_instance(tiny: TinyProblem) -> None:
    result, stats = _run(tiny, "instance_wise", **IW_FAST)
    assert result.info["all_forget_misclassified"]
    assert tiny.accuracy(result.model, "forget") == 0.0  # the stopping rule
    assert tiny.accuracy(result.model, "retain") > 0.7  # measured 0.820, 0.895, 0.790 (seeds 0, 1, 2)
    assert stats.splits_read == ["forget"]
    assert 0 < stats.steps < 200


def test_instance_wise_adversarial_examples_are_targeted_and_bounded(tiny_random: TinyProblem) -> None:
    cls = get_method("instance_wise")
    data = tiny_random.data(cls)
    forget = data.forget
    cfg = iw.InstanceWiseConfig(adv_per_instance=2, pgd_steps=20, pgd_step=0.5)
    adv_x, adv_y = iw._adversarial_set(tiny_random.model, forget, data.num_classes, cfg, tiny_random.context(0))
    n = len(forget)
    assert adv_x.shape == (2 * n, *forget.images.shape[1:])
    true = forget.labels.repeat(2)  # one block of n examples per draw
    assert not bool((adv_y == true).any())
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x01 = adv_x * std + mean
    assert float(x01.min()) >= -1e-5 and float(x01.max()) <= 1 + 1e-5
    clean = forget.images.float().div(255).repeat(2, 1, 1, 1)
    assert float((x01 - clean).flatten(1).norm(dim=1).max()) <= cfg.pgd_eps + 1e-4
    with torch.no_grad():
        hit = (tiny_random.model.eval()(adv_x).argmax(1) == adv_y).float().mean()
    assert float(hit) > 0.9  # targeted PGD reaches its label


def test_instance_wise_importance_is_inverted_minmax_and_side_effect_free(tiny_random: TinyProblem) -> None:
    model = tiny_random.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = tiny_random.data(get_method("instance_wise"))
    imp = iw._inverted_mas_importance(model, data.forget, iw.InstanceWiseConfig(), tiny_random.context(0))
    assert set(imp) == {n for n, _ in model.named_parameters()}
    for w in imp.values():
        assert float(w.min()) >= 0.0 and float(w.max()) <= 1.0
    # the most important weight of a tensor is free to move (0), the least important is held (1)
    assert any(float(w.min()) == 0.0 and float(w.max()) == 1.0 for w in imp.values())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # BN stats included


def test_instance_wise_does_nothing_when_the_instances_are_already_misclassified(
    tiny_random: TinyProblem,
) -> None:
    ds = tiny_random.dataset
    pred = predict_logits(tiny_random.model, ds.train_images, mean=ds.mean, std=ds.std).argmax(1)
    wrong = np.flatnonzero((pred != ds.train_labels).numpy())
    assert len(wrong) > 0  # the tiny model is not perfect on its training set
    split = split_indices(ds.label_info(), SampleIdsForget(tuple(int(i) for i in wrong[:8])), seed=0)
    cls = get_method("instance_wise")
    result, stats = run_method(cls(), tiny_random.model, UnlearnData(ds, split, cls.uses), tiny_random.context(0))
    assert stats.steps == 0 and result.info["all_forget_misclassified"]
    before = tiny_random.model.state_dict()
    assert all(torch.equal(v, before[k]) for k, v in result.model.state_dict().items())
