"""The paper's two vision methods: neuron masking (§III.A.1) and bad-teacher distillation (eq. 3)."""

from __future__ import annotations

import math

import pytest
import torch

from obliviate.data import normalise
from obliviate.methods import get_method, run_method
from obliviate.methods.bad_teacher import BadTeacherConfig, bad_teacher_loss
from obliviate.methods.neuron_mask import NeuronMaskConfig, mask_units, relu_units, unit_activation
from obliviate.models import create_model, load_checkpoint, save_checkpoint
from obliviate.testing import TinyProblem


def _run(tiny: TinyProblem, name: str, config: dict):  # type: ignore[no-untyped-def,type-arg]
    cls = get_method(name)
    result, _ = run_method(cls(config), tiny.model, tiny.data(cls), tiny.context())
    return result


# -- neuron_mask ----------------------------------------------------------------------------------


def test_neuron_mask_forgets_the_class_and_keeps_the_rest(tiny: TinyProblem) -> None:
    result = _run(tiny, "neuron_mask", {"fraction": 0.1, "score": "ratio"})
    assert tiny.accuracy(tiny.model, "test_forget") > 0.9
    assert tiny.accuracy(result.model, "forget") < 0.3
    assert tiny.accuracy(result.model, "test_forget") < 0.3
    assert tiny.accuracy(result.model, "retain") > 0.85
    assert tiny.accuracy(result.model, "test_retain") > 0.85
    info = result.info
    masked = sum(v["masked"] for v in info["layers"].values())
    assert info["masked_units"] == masked == round(0.1 * info["candidate_units"])
    assert result.steps == 0


def test_neuron_mask_survives_a_checkpoint_round_trip(tiny: TinyProblem, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = _run(tiny, "neuron_mask", {})
    save_checkpoint(tmp_path / "masked", result.model)
    loaded, _ = load_checkpoint(tmp_path / "masked")
    loaded.eval()
    layers = result.info["layers"]
    assert set(layers) == {"features.0.1", "features.1.1", "features.2.1", "classifier.1"}
    seen: dict[str, torch.Tensor] = {}
    for name in layers:
        module = loaded.get_submodule(name)
        module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, unit_activation(m, o)))
    ds = tiny.dataset
    x = normalise(
        ds.train_images[:300], torch.tensor(ds.mean).view(1, -1, 1, 1), torch.tensor(ds.std).view(1, -1, 1, 1)
    )
    with torch.no_grad():
        loaded(x)
    masked_total = 0
    for name, entry in layers.items():
        idx = torch.tensor(entry["indices"], dtype=torch.long)
        masked_total += len(idx)
        assert torch.equal(seen[name][:, idx], torch.zeros(300, len(idx)))  # exactly 0, every input
        others = torch.ones(entry["units"], dtype=torch.bool)
        others[idx] = False
        assert seen[name][:, others].abs().sum() > 0
    assert masked_total == result.info["masked_units"] > 0


@pytest.mark.parametrize("arch", ["vgg16_bn", "resnet18", "resnet9", "small_cnn"])
def test_masking_zeroes_post_relu_units_on_any_architecture(arch: str) -> None:
    model = create_model(arch, num_classes=10, in_chans=3, seed=0, width=0.125).eval()
    x = torch.randn(4, 3, 32, 32)
    units = relu_units(model, x)
    if arch == "resnet18":  # bn2 is added to the shortcut before its ReLU: not a unit
        assert "layers.0.bn1" in units and "stem.1" in units
        assert not any(n.endswith("bn2") or "shortcut" in n for n in units)
        assert "fc" not in units
    if arch == "vgg16_bn":  # 13 conv BN layers + the hidden linear layer, never the logits
        assert len(units) == 14 and "classifier.1" in units and "classifier.3" not in units
    seen: dict[str, torch.Tensor] = {}
    for name, module in units.items():
        mask_units(module, torch.tensor([0, 2]))
        module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, unit_activation(m, o)))
    with torch.no_grad():
        model(x)
    for name in units:
        assert torch.equal(seen[name][:, [0, 2]], torch.zeros(4, 2)), name


def test_neuron_mask_selection_rules(tiny: TinyProblem) -> None:
    per_layer = _run(tiny, "neuron_mask", {"top_k": 2, "scope": "layer", "layers": ("conv",)})
    assert set(per_layer.info["layers"]) == {"features.0.1", "features.1.1", "features.2.1"}
    assert all(v["masked"] <= 2 for v in per_layer.info["layers"].values())
    none = _run(tiny, "neuron_mask", {"threshold": 1e9})
    assert none.info["masked_units"] == 0
    assert all(torch.equal(a, b) for a, b in zip(none.model.state_dict().values(), tiny.model.state_dict().values()))
    only_fc = _run(tiny, "neuron_mask", {"layers": ("classifier.*",), "top_k": 3})
    assert list(only_fc.info["layers"]) == ["classifier.1"] and only_fc.info["masked_units"] == 3
    with pytest.raises(ValueError, match="no units matching"):
        _run(tiny, "neuron_mask", {"layers": ("nothing.here",)})


def test_neuron_mask_config_is_validated() -> None:
    with pytest.raises(ValueError, match="threshold"):
        NeuronMaskConfig(threshold=math.nan)
    with pytest.raises(ValueError, match="fraction"):
        NeuronMaskConfig(fraction=None)
    with pytest.raises(ValueError, match="fraction"):
        NeuronMaskConfig(fraction=1.5)
    with pytest.raises(ValueError, match="score"):
        NeuronMaskConfig(score="loudest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_k"):
        NeuronMaskConfig(top_k=0)


# -- bad_teacher ----------------------------------------------------------------------------------


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def _softmax(z: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


def test_bad_teacher_loss_matches_hand_computation() -> None:
    t = 2.0
    student = [[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]]
    competent = [[3.0, 0.0, 0.0], [0.0, 0.0, 4.0]]
    incompetent = [[0.0, 1.0, 0.0], [1.0, -2.0, 0.5]]
    # row 0 is a forget sample (l_u = 1) -> bad teacher; row 1 a retain sample -> good teacher
    want0 = _kl(_softmax(incompetent[0], t), _softmax(student[0], t))
    want1 = _kl(_softmax(competent[1], t), _softmax(student[1], t))
    args = (torch.tensor(student), torch.tensor(competent), torch.tensor(incompetent), torch.tensor([1, 0]), t)
    assert math.isclose(float(bad_teacher_loss(*args)), (want0 + want1) / 2, rel_tol=1e-5)
    assert math.isclose(float(bad_teacher_loss(*args, reduction="mean")), (want0 + want1) / 6, rel_tol=1e-5)
    one = bad_teacher_loss(
        torch.tensor(student[:1]), torch.tensor(competent[:1]), torch.tensor(incompetent[:1]), torch.tensor([0]), t
    )
    assert math.isclose(float(one), _kl(_softmax(competent[0], t), _softmax(student[0], t)), rel_tol=1e-5)
    # PyTorch's own elementwise "mean" is what the reference code computes
    ref = (
        torch.nn.functional.kl_div(
            torch.log_softmax(torch.tensor(student) / t, 1),
            torch.tensor([_softmax(incompetent[0], t), _softmax(competent[1], t)]),
            reduction="sum",
        )
        / 6
    )
    assert torch.allclose(bad_teacher_loss(*args, reduction="mean"), ref)
    with pytest.raises(ValueError, match="reduction"):
        bad_teacher_loss(*args, reduction="sum")


def test_bad_teacher_forgets_the_class_and_keeps_the_rest(tiny: TinyProblem) -> None:
    result = _run(tiny, "bad_teacher", {"lr": 1e-3, "epochs": 5})
    assert tiny.accuracy(result.model, "forget") < 0.3
    assert tiny.accuracy(result.model, "test_forget") < 0.3
    assert tiny.accuracy(result.model, "retain") > 0.85
    assert tiny.accuracy(result.model, "test_retain") > 0.85
    assert result.steps == 5 * 2  # (137 forget + 363 retain) / 256 -> 2 batches per epoch
    assert result.info["retain_samples"] == int(0.3 * len(tiny.split.retain))


def test_bad_teacher_defaults_follow_the_reference_code() -> None:
    cfg = BadTeacherConfig()
    assert (cfg.temperature, cfg.retain_fraction, cfg.epochs, cfg.lr, cfg.batch_size) == (1.0, 0.3, 1.0, 1e-4, 256)
    with pytest.raises(ValueError, match="retain_fraction"):
        BadTeacherConfig(retain_fraction=1.2)
