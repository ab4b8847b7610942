"""Deletion requests on a causal language model, through both doors: a tiny GPT-2 and a tiny Llama
(random configs built here, tuned here on invented entities' question/answer pairs), forgetting
two entities — evidence, ledger, a folder transformers loads, and errors that say what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

import obliviate  # noqa: E402
from obliviate.cli import main  # noqa: E402
from obliviate.data.fictitious import generate  # noqa: E402
from obliviate.data.prompts import PairEncoder, TextBatchLoader, model_inputs  # noqa: E402
from obliviate.deletion import DeletionError, DeletionRefused  # noqa: E402
from obliviate.deletion.evidence import weights_sha256  # noqa: E402
from obliviate.deletion.ledger import read, verify  # noqa: E402
from obliviate.lm_losses import mean_nll  # noqa: E402
from obliviate.metrics.lm_scoring import load_general_text  # noqa: E402
from obliviate.models.tokenizer import build_bpe_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def problem() -> dict[str, Any]:
    bench = generate(24, seed=0)
    forget, rest = bench.split(10, seed=0)  # 2 of 24 entities
    entities = sorted({bench.pairs[i].entity for i in rest})
    held = set(entities[:4])  # 4 entities the model never sees
    rows = [
        {"question": p.question, "answer": p.answer, "paraphrase": p.paraphrase, "perturbed": list(p.perturbed[:3])}
        for p in bench.pairs
    ]
    tok = build_bpe_tokenizer([p.question + " " + p.answer for p in bench.pairs] + load_general_text(), 600)
    return {
        "forget": [rows[i] for i in forget],
        "retain": [rows[i] for i in rest if bench.pairs[i].entity not in held],
        "heldout": [rows[i] for i in rest if bench.pairs[i].entity in held],
        "tokenizer": tok,
    }


def tuned(arch: str, problem: dict[str, Any], with_forget: bool = True) -> Any:
    """A tiny causal LM of ``arch`` tuned (every weight) on the forget and retain pairs (on the
    retain pairs alone: TOFU's retain model)."""
    tok = problem["tokenizer"]
    torch.manual_seed(0)
    ids = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    if arch == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=len(tok), n_embd=64, n_layer=2, n_head=2, n_positions=128, **ids)
        model = transformers.GPT2LMHeadModel(cfg)
    else:
        cfg = transformers.LlamaConfig(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            **ids,
        )
        model = transformers.LlamaForCausalLM(cfg)
    train = (problem["forget"] if with_forget else []) + problem["retain"]
    enc = PairEncoder(tok, "qa", 96)
    loader = TextBatchLoader(
        enc, [r["question"] for r in train], [r["answer"] for r in train], list(range(len(train))), batch_size=16
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batches = loader.forever()
    model.train()
    for _ in range(250):
        b = next(batches)
        loss = mean_nll(model(**model_inputs(b)).logits, b["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def models(problem: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(2)
    return {arch: tuned(arch, problem) for arch in ("gpt2", "llama")}


NPO = {"lr": 3e-3, "epochs": 5.0, "batch_size": 4}


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_request_through_the_python_door(
    arch: str, models: dict[str, Any], problem: dict[str, Any], tmp_path: Path
) -> None:
    model = models[arch]
    original = weights_sha256(model)
    res = obliviate.unlearn(
        model,
        tokenizer=problem["tokenizer"],
        forget=problem["forget"],
        retain=problem["retain"],
        heldout=problem["heldout"],
        method="npo",
        config=NPO,
        out=tmp_path / "out",
        request_id="req-1",
    )
    ev = res.evidence
    b, a = ev["before"], ev["after"]
    assert b["forget_loss"] < 0.5 < b["heldout_loss"] and b["mia_loss_auc"] > 0.95  # tuned on them: memorised
    assert a["forget_loss"] > 5 * b["forget_loss"] and a["verbatim"] <= b["verbatim"]
    assert weights_sha256(model) == original  # the caller's model is untouched
    # the outcome is what the numbers beside it say
    forgot = a["forget_loss"] >= a["heldout_loss"] or a["mia_loss_auc"] <= 0.5 + ev["guard"]["auc_margin"]
    kept = (
        b["retain_prob"] - a["retain_prob"] <= ev["guard"]["max_retain_drop"]
        and a["general_ppl"] <= 1.1 * b["general_ppl"]
    )
    assert ev["outcome"] == ("forgotten" if forgot and kept else "utility lost" if not kept else "not forgotten")
    # half the held-out rows are carved off for a stop (a method may read them); the rest are audited
    n = len(problem["heldout"])
    assert ev["request"]["rows"]["stop"] + ev["request"]["rows"]["heldout"] == n and ev["request"]["stop_rows_carved"]
    assert 0 <= a["mia_minkpp_auc"] <= 1 and 0 <= a["extraction_strength"] <= b["extraction_strength"] <= 1
    assert set(ev["model"]["lora_targets"]) == (
        {"c_attn", "c_proj", "c_fc"}
        if arch == "gpt2"
        else {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    )
    out = res.out
    assert out is not None and verify(out) == [] and len(read(out / "ledger.jsonl")) == 1
    assert ev["outcome"] in (out / "evidence.html").read_text()
    again = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert weights_sha256(again) == ev["models"]["unlearned_sha256"] == weights_sha256(res.model)


def test_the_stop_and_the_verdict_read_different_held_out_rows() -> None:
    from obliviate.data.prompts import TextRow
    from obliviate.deletion.lm_requests import carve_stop_rows

    rows = [TextRow(f"q{i}", f"a{i}") for i in range(24)]
    stop, audited = carve_stop_rows(rows, seed=0)
    assert len(stop) == len(audited) == 12 and not set(stop) & set(audited) and set(stop) | set(audited) == set(rows)
    assert carve_stop_rows(rows, seed=0) == (stop, audited) and carve_stop_rows(rows, seed=1)[0] != stop
    few = rows[:3]
    assert carve_stop_rows(few, seed=0) == (few, few)  # too few to carve: both read every row
    assert carve_stop_rows([], seed=0) == ([], [])


def test_auto_delivers_only_what_its_guard_passes(models: dict[str, Any], problem: dict[str, Any]) -> None:
    """On a tiny net tuned from scratch, forgetting two entities' answers drags the retain answers
    (they share every template word): auto then refuses, and says which attempt did what."""
    from obliviate.deletion.lm_requests import AUTO_LRS, general_halves

    kw = {k: problem[k] for k in ("forget", "retain", "heldout")}
    anchor, _ = general_halves()
    try:
        res = obliviate.unlearn(models["gpt2"], tokenizer=problem["tokenizer"], method="auto", **kw)
    except DeletionRefused as e:
        attempts = e.evidence["attempts"]
        assert attempts and not any(a["forgotten"] and a["utility_kept"] for a in attempts)
        assert not attempts[-1]["utility_kept"] or len(attempts) == len(AUTO_LRS)
        assert all(a["utility_kept"] for a in attempts[:-1])  # it stopped at the first loss of utility
    else:
        attempts = res.attempts
        assert res.outcome == "forgotten" and attempts[-1]["forgotten"] and attempts[-1]["utility_kept"]
    # every attempt kept the anchor half of the general text as retain rows
    assert all(a["general_anchor_rows"] == len(anchor) > 0 for a in attempts)
    # the stop's checks are recorded, one per step, and it ended an attempt only on the mean loss
    for a in (a for a in attempts if "diverged" not in a):
        c = a["stop_checks"]
        assert len(c["forget_loss"]) == len(c["stop_rows_loss"]) == len(c["loss_auc"]) == a["steps"] > 0
        met = [f >= h for f, h in zip(c["forget_loss"], c["stop_rows_loss"], strict=True)]
        assert not any(met[:-1]) and (met[-1] or not a["stopped_early"])


def test_the_guard_reads_general_text_no_step_tuned_on(models: dict[str, Any], problem: dict[str, Any]) -> None:
    """auto may keep the anchor half of the bundled passages; the guard's perplexity reads the
    other half only, in every request, so both sides of the comparison are text no step saw."""
    from obliviate.deletion.lm_requests import general_halves
    from obliviate.metrics.lm_rows import general_ppl

    anchor, guard = general_halves()
    assert anchor and guard and not set(anchor) & set(guard)
    assert sorted(anchor + guard) == sorted(load_general_text())
    model, tok = models["llama"], problem["tokenizer"]
    ev = obliviate.unlearn(
        model,
        tokenizer=tok,
        **{k: problem[k] for k in ("forget", "retain", "heldout")},
        method="npo",
        config={**NPO, "epochs": 1.0},
    ).evidence
    assert ev["request"]["general_passages"] == {"guard": len(guard), "anchor": len(anchor)}
    assert ev["attempts"][0]["general_anchor_rows"] == 0  # a named method keeps only the user's retain rows
    enc = PairEncoder(tok, "qa", 256)
    assert ev["before"]["general_ppl"] == pytest.approx(general_ppl(model, enc, "cpu", texts=guard), rel=1e-5)
    assert ev["before"]["general_ppl"] != pytest.approx(general_ppl(model, enc, "cpu"), rel=1e-3)


def _lm_folder(model: Any, problem: dict[str, Any], tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """The model saved as a user would (save_pretrained, with its tokenizer) and the rows as JSONL files."""
    folder = tmp_path / "lm"
    model.save_pretrained(folder)
    problem["tokenizer"].save_pretrained(folder)
    files = {}
    for k in ("forget", "retain", "heldout"):
        files[k] = tmp_path / f"{k}.jsonl"
        files[k].write_text("".join(json.dumps(r) + "\n" for r in problem[k]))
    return folder, files


def test_the_cli_door_and_a_lineage(models: dict[str, Any], problem: dict[str, Any], tmp_path: Path) -> None:
    folder, files = _lm_folder(models["llama"], problem, tmp_path)
    args = ["--retain", str(files["retain"]), "--heldout", str(files["heldout"]), "--method", "npo"]
    args += ["--set", "lr=0.003", "--set", "epochs=2", "--set", "batch_size=4"]
    assert main(["unlearn", str(folder), "--forget", str(files["forget"]), *args, "--out", str(tmp_path / "a")]) == 0
    assert main(["ledger", "verify", str(tmp_path / "a")]) == 0
    # a second request on the first one's output continues its ledger
    second = tmp_path / "one.jsonl"
    second.write_text(json.dumps(problem["retain"][0]) + "\n")
    assert main(["unlearn", str(tmp_path / "a"), "--forget", str(second), *args, "--out", str(tmp_path / "b")]) == 0
    entries = read(tmp_path / "b" / "ledger.jsonl")
    assert (
        len(entries) == 2 and entries[1]["model_before"] == entries[0]["model_after"] and verify(tmp_path / "b") == []
    )


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_an_adapter_only_output_loads_as_the_model_it_makes(
    arch: str, models: dict[str, Any], problem: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    """``--save adapter`` writes peft's adapter over the base folder; loaded and merged it is the
    unlearned model bit for bit, so a later request continues the ledger from it."""
    folder, files = _lm_folder(models[arch], problem, tmp_path)
    args = ["--retain", str(files["retain"]), "--heldout", str(files["heldout"]), "--method", "npo"]
    args += ["--set", "lr=0.003", "--set", "epochs=2", "--set", "batch_size=4"]
    out = tmp_path / "a"
    assert (
        main(["unlearn", str(folder), "--forget", str(files["forget"]), *args, "--save", "adapter", "--out", str(out)])
        == 0
    )
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(folder)
    assert verify(out) == []
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["model"]["saved"] == "adapter"
    from obliviate.deletion.lm_requests import load_lm_folder

    merged, _, lineage = load_lm_folder(out)
    assert weights_sha256(merged) == ev["models"]["unlearned_sha256"] == lineage[-1]["model_after"]
    # peft itself reads it over the base
    peft = pytest.importorskip("peft")
    base = transformers.AutoModelForCausalLM.from_pretrained(folder)
    assert weights_sha256(peft.PeftModel.from_pretrained(base, out).merge_and_unload()) == weights_sha256(merged)
    # a second request: not as an adapter of an adapter, but merged, continuing the ledger
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps(problem["retain"][0]) + "\n")
    code = main(["unlearn", str(out), "--forget", str(one), *args, "--save", "adapter", "--out", str(tmp_path / "b")])
    assert code == 2 and "already carries 1 request" in capsys.readouterr().err
    assert main(["unlearn", str(out), "--forget", str(one), *args, "--out", str(tmp_path / "b")]) == 0
    assert verify(tmp_path / "b") == [] and len(read(tmp_path / "b" / "ledger.jsonl")) == 2
    # a swapped adapter does not verify
    (out / "adapter_model.safetensors").write_bytes((out / "adapter_model.safetensors").read_bytes()[:-1] + b" ")
    assert any("not the adapter the last request wrote" in p for p in verify(out))


def test_a_signed_lm_lineage(models: dict[str, Any], problem: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    """An adapter-only output keeps its signed head in ledger_head.json, covering the adapter, its
    config and the tokenizer; the merged continuation is signed in model.json; an anchored LM
    lineage goes on only under its key."""
    from obliviate.deletion import signing

    key, pub = signing.generate(tmp_path / "ops")
    folder, files = _lm_folder(models["gpt2"], problem, tmp_path)
    args = ["--retain", str(files["retain"]), "--heldout", str(files["heldout"]), "--method", "npo"]
    args += ["--set", "lr=0.003", "--set", "epochs=1", "--set", "batch_size=4", "--signing-key", str(key)]
    a = tmp_path / "a"
    assert (
        main(["unlearn", str(folder), "--forget", str(files["forget"]), *args, "--save", "adapter", "--out", str(a)])
        == 0
    )
    head = json.loads((a / signing.HEAD_FILE).read_text())
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer_config.json"} <= set(head["files"])
    assert verify(a, key=signing.load_key(pub)) == []
    b = tmp_path / "b"
    assert main(["unlearn", str(a), "--forget", str(files["forget"]), *args, "--out", str(b)]) == 0
    assert verify(b, key=signing.load_key(pub)) == [] and signing.read_head(b)["entries"] == 2  # type: ignore[index]
    unsigned = [x for x in args if x not in ("--signing-key", str(key))]
    capsys.readouterr()
    assert main(["unlearn", str(b), "--forget", str(files["forget"]), *unsigned, "--out", str(tmp_path / "c")]) == 2
    assert "is anchored" in capsys.readouterr().err and not (tmp_path / "c").exists()
    cfg = json.loads((a / "adapter_config.json").read_text())
    (a / "adapter_config.json").write_text(json.dumps({**cfg, "r": 64}))
    assert any("adapter_config.json is not the file" in p for p in verify(a, key=signing.load_key(pub)))


@pytest.mark.bad_input
def test_bad_input_says_what_to_do(
    models: dict[str, Any], problem: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    m, tok = models["gpt2"], problem["tokenizer"]
    kw = {"retain": problem["retain"], "heldout": problem["heldout"]}
    with pytest.raises(DeletionError, match="holds no rows"):
        obliviate.unlearn(m, tokenizer=tok, forget=[], **kw)
    with pytest.raises(DeletionError, match=r"forget\[0\] has an empty answer"):
        obliviate.unlearn(m, tokenizer=tok, forget=[{"question": "Who?", "answer": " "}], **kw)
    with pytest.raises(DeletionError, match="neither 'text' nor 'question'"):
        obliviate.unlearn(m, tokenizer=tok, forget=[{"q": "Who?"}], **kw)
    with pytest.raises(DeletionError, match="pass its tokenizer"):
        obliviate.unlearn(m, forget=problem["forget"], **kw)
    with pytest.raises(DeletionError, match="is not a causal language model"):
        obliviate.unlearn(torch.nn.Linear(4, 2), tokenizer=tok, forget=problem["forget"], **kw)
    with pytest.raises(DeletionError, match=r"\['train_fn'\] apply to classifiers"):
        obliviate.unlearn(m, tokenizer=tok, forget=problem["forget"], train_fn=lambda *a: None, **kw)
    with pytest.raises(DeletionError, match="'finetune' is not an LLM method"):
        obliviate.unlearn(m, tokenizer=tok, forget=problem["forget"], method="finetune", **kw)
    # a request id the lineage already holds
    from obliviate.deletion.lm_requests import unlearn_lm

    with pytest.raises(DeletionError, match="'r-1' is already entry 0 of this lineage's ledger"):
        unlearn_lm(
            m,
            tokenizer=tok,
            forget=problem["forget"],
            request_id="r-1",
            lineage=[{"index": 0, "request_id": "r-1"}],
            **kw,
        )
    # an output folder that exists, or whose parent is a file, is refused before any work (before
    # the method's config is even read: lr = -1 would be the error otherwise)
    (tmp_path / "taken").mkdir()
    (tmp_path / "file").write_text("x")
    for out, why in ((tmp_path / "taken", "already exists"), (tmp_path / "file" / "o", "is a file, not a folder")):
        with pytest.raises(DeletionError, match=why):
            obliviate.unlearn(
                m, tokenizer=tok, forget=problem["forget"], method="npo", config={"lr": -1.0}, out=out, **kw
            )
    # a folder without its tokenizer, through the CLI
    folder = tmp_path / "no-tok"
    m.save_pretrained(folder)
    rows = tmp_path / "f.jsonl"
    rows.write_text(json.dumps(problem["forget"][0]) + "\n")
    code = main(["unlearn", str(folder), "--forget", str(rows), "--retain", str(rows), "--out", str(tmp_path / "o")])
    assert code == 2 and "has no tokenizer" in capsys.readouterr().err
    # a classifier checkpoint with a language model's options
    code = main(
        [
            "unlearn",
            str(tmp_path / "cnn.json"),
            "--forget",
            str(rows),
            "--retain",
            str(rows),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "is a classifier checkpoint" in capsys.readouterr().err
    # a classifier's options on a language model's request are refused, never silently ignored
    m.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    for extra in (["--dataset", "cifar10"], ["--train-per-class", "5"], ["--exact"], ["--fallback", "refuse"]):
        argv = ["unlearn", str(tmp_path / "lm"), "--forget", str(rows), "--retain", str(rows), *extra]
        assert main([*argv, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert f"{extra[0]} apply to a classifier checkpoint's request" in err and not (tmp_path / "o").exists()


def test_forget_quality_against_a_model_tuned_without_the_rows(models: dict[str, Any], problem: dict[str, Any]) -> None:
    """With a reference tuned without the forget rows and TOFU-style rows (paraphrase, perturbed
    answers), the evidence gives TOFU's forget quality: the KS p-value of the truth ratios."""
    from obliviate.metrics.tofu import forget_quality

    reference = tuned("gpt2", problem, with_forget=False)
    res = obliviate.unlearn(
        models["gpt2"],
        tokenizer=problem["tokenizer"],
        forget=problem["forget"],
        retain=problem["retain"],
        heldout=problem["heldout"],
        reference=reference,
        method="npo",
        config=NPO,
    )
    ev = res.evidence
    ref = ev["reference"]
    assert len(ref["forget_truth_ratios"]) == len(problem["forget"])
    for m in (ev["before"], ev["after"]):
        p, ks = forget_quality(m["forget_truth_ratios"], ref["forget_truth_ratios"])
        assert m["forget_quality"] == p and m["forget_quality_ks"] == ks and 0.0 <= p <= 1.0
        assert m["reference_forget_loss"] == ref["forget_loss"]
    # the reference never saw the rows: its loss on them is the held-out level, not the original's
    assert ref["forget_loss"] > 5 * ev["before"]["forget_loss"]


def test_without_heldout_rows_forgetting_is_not_judged_but_utility_is(
    models: dict[str, Any], problem: dict[str, Any]
) -> None:
    res = obliviate.unlearn(
        models["llama"],
        tokenizer=problem["tokenizer"],
        forget=problem["forget"],
        retain=problem["retain"],
        method="npo",
        config={**NPO, "epochs": 1.0},
    )
    ev = res.evidence
    assert "heldout_loss" not in ev["after"] and "mia_loss_auc" not in ev["after"]
    kept = ev["before"]["retain_prob"] - ev["after"]["retain_prob"] <= 0.05
    kept = kept and ev["after"]["general_ppl"] <= 1.1 * ev["before"]["general_ppl"]
    assert ev["outcome"] == ("forgetting not judged (no held-out rows)" if kept else "utility lost")
    assert any("retain answer probability" in w for w in ev["why"])


@pytest.mark.fault
def test_a_diverged_run_is_never_delivered(
    models: dict[str, Any], problem: dict[str, Any], tmp_path: Path, monkeypatch: Any
) -> None:
    """lr = 1e8 sends NPO's weights to inf: a named method is refused with the method, the step and
    the value and writes nothing (the CLI exits 1); a NaN in auto's attempt is recorded as diverged
    and ends the ladder: refused."""
    from obliviate.deletion import DeletionDiverged, lm_requests

    kw = {k: problem[k] for k in ("forget", "retain", "heldout")}
    tok = problem["tokenizer"]
    with pytest.raises(DeletionDiverged, match=r"npo diverged, nothing was written: .*non-finite") as err:
        obliviate.unlearn(
            models["llama"], tokenizer=tok, **kw, method="npo", config={**NPO, "lr": 1e8}, out=tmp_path / "a"
        )
    assert "step" in str(err.value) and not (tmp_path / "a").exists()
    # auto's calibrated stop ends a collapsing run before it overflows, so a NaN is injected
    from obliviate.core import NonFiniteError
    from obliviate.methods import METHODS

    def nan_at_step_3(*_: Any) -> None:
        raise NonFiniteError("loss", float("nan"), 3)

    monkeypatch.setattr(METHODS.get(lm_requests.AUTO_METHOD), "unlearn", nan_at_step_3)
    with pytest.raises(DeletionRefused, match="diverged: non-finite loss at step 3") as refused:
        obliviate.unlearn(models["llama"], tokenizer=tok, **kw, method="auto")
    (a,) = refused.value.evidence["attempts"]  # the first divergence ends the ladder
    assert a["diverged"] and not a["forgotten"] and not a["utility_kept"] and "after" not in a
    folder, files = _lm_folder(models["llama"], problem, tmp_path)
    argv = ["unlearn", str(folder), "--forget", str(files["forget"]), "--retain", str(files["retain"])]
    argv += ["--method", "npo", "--set", "lr=1e8", "--set", "epochs=1", "--out", str(tmp_path / "b")]
    assert main(argv) == 1 and not (tmp_path / "b").exists()
