"""The shared batch-norm choice of every vision method (``bn_stats``, obliviate.methods.bn)."""

from __future__ import annotations

import pytest
import torch

from obliviate.core import ConfigError
from obliviate.methods import get_method, run_method
from obliviate.methods.bn import bn_layers
from obliviate.testing import TinyProblem


def _stats(model: torch.nn.Module) -> list[torch.Tensor]:
    return [torch.cat([m.running_mean, m.running_var]) for m in bn_layers(model)]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _run(tiny: TinyProblem, name: str, **cfg: object):  # type: ignore[no-untyped-def]
    cls = get_method(name)
    return run_method(cls(cfg), tiny.model, tiny.data(cls), tiny.context(0))


def test_policies_do_what_they_say(tiny: TinyProblem) -> None:
    original = _stats(tiny.model)
    assert original, "the tiny CNN has batch norm"
    w0 = [p.detach().clone() for p in tiny.model.parameters()]
    for policy, keeps_stats in (("method", False), ("keep", True), ("eval", True), ("retain", False)):
        result, _ = _run(tiny, "finetune", epochs=1, bn_stats=policy)
        assert _same(_stats(result.model), original) is keeps_stats, policy
        assert any(not torch.equal(a, b) for a, b in zip(w0, result.model.parameters())), policy  # weights trained
        assert result.info.get("bn_stats", "method") == policy
        assert not result.model.training
    assert _same(_stats(tiny.model), original)  # the caller's model is never touched


def test_eval_normalises_with_the_running_statistics(tiny: TinyProblem) -> None:
    kept, _ = _run(tiny, "finetune", epochs=1, bn_stats="keep")
    frozen, _ = _run(tiny, "finetune", epochs=1, bn_stats="eval")
    # both end with the original's statistics, but only 'eval' trained against them
    assert _same(_stats(kept.model), _stats(frozen.model))
    assert any(not torch.equal(a, b) for a, b in zip(kept.model.parameters(), frozen.model.parameters()))
    assert not any(h for m in bn_layers(frozen.model) for h in m._forward_pre_hooks.values())  # hooks removed


def test_retain_reestimates_on_retain_rows(tiny: TinyProblem) -> None:
    result, stats = _run(tiny, "finetune", epochs=1, bn_stats="retain", bn_samples=300)
    assert result.info["bn_rows"] == 300 and stats.splits_read == ["retain"]
    # the same re-estimate after a 'method' run gives the same statistics: it is only the re-estimate
    from obliviate.methods.bn import reestimate

    plain, _ = _run(tiny, "finetune", epochs=1)
    ctx = tiny.context(0)
    data = tiny.data(get_method("finetune"))
    rows = ctx.subset(len(data.retain), 300, offset=97)
    reestimate(plain.model, data.retain.loader(256, shuffle=False, rows=rows), ctx.device)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(_stats(plain.model), _stats(result.model)))


@pytest.mark.bad_input
def test_policies_a_method_cannot_take_are_refused() -> None:
    with pytest.raises(ConfigError, match="bn_stats must be 'method'"):
        get_method("retrain")({"bn_stats": "keep"})
    with pytest.raises(ConfigError, match="reads the retain set, which Delete does not"):
        get_method("delete")({"bn_stats": "retain"})
    with pytest.raises(ConfigError, match="bn_stats"):
        get_method("finetune")({"bn_stats": "sometimes"})
    assert get_method("delete")({"bn_stats": "eval"}).config.bn_stats == "eval"
