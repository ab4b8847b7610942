"""What LLM methods promise beyond the shared conformance suite (tests/methods/test_method_conformance.py
runs every method of both kinds through obliviate.conformance): the LoRA reference is the
adapter-disabled model, LoRA leaves non-adapted weights alone, and each method's own behaviour."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from obliviate.methods import METHODS, describe_method, list_methods, run_method

LLM = list_methods(kind="llm")
MODES = ("lora", "full")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny matrices: a second thread only adds contention


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    from obliviate.lm_testing import tiny_llm_problem

    return tiny_llm_problem()


def test_registry_has_the_six_llm_methods() -> None:
    assert set(LLM) == {"relabel", "grad_ascent", "grad_diff", "npo", "simnpo", "rmu"}
    assert all(METHODS.get(n).kind == "llm" for n in LLM)


def test_importing_methods_needs_no_transformers() -> None:
    code = (
        "import sys, obliviate.methods, obliviate.metrics, obliviate.lm_training, obliviate.data.text; "
        "bad = [m for m in ('transformers', 'peft', 'tokenizers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.mark.parametrize("name", LLM)
def test_defaults_construct_and_describe(name: str) -> None:
    cls = METHODS.get(name)
    m = cls()
    assert isinstance(m.config, cls.Config) and m.config.mode == "lora"
    assert describe_method(name)["kind"] == "llm"
    cls({**cls.smoke, "mode": "full"})  # the smoke config is valid in both modes
    with pytest.raises(ValueError, match="mode"):
        cls({"mode": "qlora"})


def _run(tiny, name: str, mode: str, seed: int = 0):  # type: ignore[no-untyped-def]
    cls = METHODS.get(name)
    method = cls({**cls.smoke, "mode": mode})
    return cls, *run_method(method, tiny.model, tiny.data(cls.uses), tiny.context(seed))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", LLM)
def test_llm_methods_change_the_model_and_merge_lora_back(tiny, name: str, mode: str) -> None:  # type: ignore[no-untyped-def]
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    cls, result, stats = _run(tiny, name, mode)
    state = result.model.state_dict()
    assert list(state) == list(before), "LoRA is merged back: the keys are the original's"
    assert any(not torch.equal(state[k], before[k]) for k in state), f"{name} did not change the model"
    assert stats.steps > 0
    assert "validation" not in cls.uses, "no LLM method needs held-out statements"
    if mode == "lora":
        assert result.info["reference_copies"] == 0, "LoRA mode uses the adapter-disabled model as reference"
        if name != "rmu":  # RMU adapts only the layers up to its steered layer
            frozen = [k for k in state if "embed_tokens" in k or "norm" in k or "lm_head" in k]
            assert all(torch.equal(state[k], before[k]) for k in frozen), "LoRA leaves non-adapted weights alone"


def test_reference_is_the_adapter_disabled_model(tiny) -> None:  # type: ignore[no-untyped-def]
    import copy

    from obliviate.methods.lm_base import Reference, forward_hidden
    from obliviate.models.causal_lm import LoraSettings, attach_lora

    b = tiny.encoder.collate([tiny.encoder.example(tiny.dataset.records[i].text, "biased") for i in range(4)])
    inputs = {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}
    with torch.no_grad():
        want = tiny.model(**inputs).logits
        hidden0 = tiny.model(**inputs, output_hidden_states=True).hidden_states[1]
    net = attach_lora(copy.deepcopy(tiny.model), LoraSettings(r=4), seed=0)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if "lora_B" in n:
                p.add_(0.5)  # the adapted model now differs...
        assert not torch.allclose(net(**inputs).logits, want)
    ref = Reference(net)
    ref.started = True
    assert torch.allclose(ref.logits(b), want, atol=1e-5)  # ...but its reference does not
    assert torch.allclose(forward_hidden(tiny.model, b, 0), hidden0, atol=1e-6)


def test_relabel_teaches_the_requested_answer(tiny) -> None:  # type: ignore[no-untyped-def]
    from obliviate.metrics.lm_scoring import answer_scores

    texts = [tiny.dataset.records[i].text for i in tiny.split.forget]
    answers = ["biased", "not biased"]
    before = (answer_scores(tiny.model, tiny.encoder, texts, answers).argmax(1) == 1).mean()
    cls = METHODS.get("relabel")
    result, _ = run_method(
        cls({"mode": "full", "lr": 3e-3, "epochs": 6, "batch_size": 4}),
        tiny.model,
        tiny.data(cls.uses),
        tiny.context(0),
    )
    after = (answer_scores(result.model, tiny.encoder, texts, answers).argmax(1) == 1).mean()
    assert after >= 0.75 and after > before, (before, after)


def test_npo_starts_at_its_closed_form(tiny) -> None:  # type: ignore[no-untyped-def]
    cls = METHODS.get("npo")
    res, _ = run_method(
        cls({**cls.smoke, "retain_loss": "none", "beta": 0.5}), tiny.model, tiny.data(cls.uses), tiny.context(0)
    )
    # a fresh adapter has lora_B = 0, so π_θ = π_ref at the first step: L = (2/β) log 2
    assert res.info["first_loss"] == pytest.approx(4 * math.log(2), rel=1e-4)


@pytest.mark.bad_input
def test_rmu_rejects_a_layer_outside_the_model(tiny) -> None:  # type: ignore[no-untyped-def]
    cls = METHODS.get("rmu")
    with pytest.raises(ValueError, match="layer"):
        run_method(cls({**cls.smoke, "layer": 7}), tiny.model, tiny.data(cls.uses), tiny.context(0))


def test_relabel_on_a_deletion_request_teaches_the_other_answer(tiny) -> None:  # type: ignore[no-untyped-def]
    from obliviate.data.text_requests import StatementForget, split_statements
    from obliviate.methods.lm_base import LLMUnlearnData

    split = split_statements(tiny.dataset, StatementForget(("cb-0002", "cb-0004")), 0)
    cls = METHODS.get("relabel")
    data = LLMUnlearnData(tiny.dataset, split, tiny.encoder, cls.uses)
    assert data.forget.answer_strings("other") == ["not biased", "not biased"]  # both are labelled biased
    with pytest.raises(ValueError, match="no requested answer"):
        data.forget.answer_strings("target")
    res, _ = run_method(cls(cls.smoke), tiny.model, data, tiny.context(0))
    assert res.info["taught_answer"] == "other"


def test_unsloth_backend_falls_back_with_a_reason() -> None:
    from obliviate.models.causal_lm import resolve_backend, unsloth_available

    ok, why = unsloth_available()
    if ok:
        pytest.skip("Unsloth is usable here")
    with pytest.warns(UserWarning, match="falling back to Hugging Face"):
        assert resolve_backend("unsloth") == "hf"
    assert why
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("vllm")
