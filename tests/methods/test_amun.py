"""``amun``: each forget row's closest adversarial example, labelled with the model's own
prediction, fine-tuned on with the forget and retain rows (Ebrahimpour-Boroojeny et al., ICML 2025)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from obliviate.core import ConfigError
from obliviate.methods import get_method, run_method
from obliviate.methods.amun import closest_adversarial
from obliviate.methods.calibrate import _losses
from obliviate.testing import TinyProblem


def test_the_closest_adversarial_example_doubles_its_radius_until_the_label_flips() -> None:
    """A linear two-class model on 1×2×2 "images": a sample's distance to the boundary decides the
    radius that flips it; every example lies in its ℓ2 ball and in the pixel range, and the
    label it gets is the model's prediction there."""
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        lin[1].weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, -1.0]]))
        lin[1].bias.zero_()
    # pixels in [0, 1]; mean 0.5 so that a pixel of 0.5 sits on the boundary
    mean = torch.full((1, 1, 1, 1), 0.5)
    std = torch.ones(1, 1, 1, 1)
    near = torch.full((1, 1, 2, 2), 0.52)  # ℓ2 distance to the boundary: 0.02·2 = 0.04
    far = torch.full((1, 1, 2, 2), 0.7)  # 0.2·2 = 0.4
    x = torch.cat([near, far])
    y = torch.zeros(2, dtype=torch.long)  # both on class 0's side
    x_adv, y_adv, eps, fooled = closest_adversarial(
        lin, x, y, mean=mean, std=std, steps=20, eps_init=0.0625, max_doublings=6
    )
    assert fooled.all() and (y_adv == 1).all()
    assert eps.tolist() == [0.0625, 0.5]  # 0.0625 > 0.04; 0.25 < 0.4 ≤ 0.5
    dist = (x_adv - x).flatten(1).norm(dim=1)
    assert (dist <= eps + 1e-5).all() and dist[0] > 0.04 and dist[1] > 0.4
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    # a radius too small to ever flip: the last attempt is kept and said to have failed
    _, y_kept, eps_kept, fooled_kept = closest_adversarial(
        lin, far, y[:1], mean=mean, std=std, steps=20, eps_init=0.01, max_doublings=2
    )
    assert not fooled_kept.any() and y_kept.tolist() == [0] and eps_kept.tolist() == pytest.approx([0.04])


def test_amun_lowers_the_confidence_on_forget_rows_and_keeps_the_rest(memorised: TinyProblem) -> None:
    """On a net that memorised its training rows, AMUN raises the forget rows' loss while retain
    and test accuracy stay where they were; it reports how many rows its attack flipped."""
    m = get_method("amun")(epochs=2, attack_steps=10)
    data = memorised.data(m)
    ctx = memorised.context(0)
    before = float(_losses(memorised.model, data.forget, ctx.device).mean())
    result, stats = run_method(m, memorised.model, data, ctx)
    after = float(_losses(result.model, data.forget, ctx.device).mean())
    adv = result.info["adversarial"]
    assert adv["rows"] == len(data.forget) and adv["fooled"] >= 0.95 * adv["rows"]
    assert adv["eps_median"] >= 0.0625
    assert after > 1.5 * before
    assert memorised.accuracy(result.model, "retain") > memorised.accuracy(memorised.model, "retain") - 0.03
    assert memorised.accuracy(result.model, "test_retain") > memorised.accuracy(memorised.model, "test_retain") - 0.05
    assert set(stats.splits_read) == {"forget", "retain"}


def test_amun_without_the_retain_set_reads_only_the_forget_rows(memorised: TinyProblem) -> None:
    m = get_method("amun")(epochs=1, attack_steps=5, use_retain=False)
    assert m.uses == frozenset({"forget"})
    _, stats = run_method(m, memorised.model, memorised.data(m), memorised.context(0))
    assert set(stats.splits_read) == {"forget"}


@pytest.mark.bad_input
def test_amun_refuses_a_class_request(tiny: TinyProblem) -> None:
    m = get_method("amun")(epochs=1, attack_steps=2)
    with pytest.raises(ConfigError, match="amun forgets samples"):
        run_method(m, tiny.model, tiny.data(m), tiny.context(0))
    with pytest.raises(ConfigError, match="eps_init"):
        get_method("amun")(eps_init=0.0)
