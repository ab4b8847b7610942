"""LLM data: the bundled statements, loading files, forget requests, splits, prompts and tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest

from obliviate.data.text import (
    TextDataError,
    load_clinical_bias,
    load_crows_pairs,
    load_text_dataset,
)
from obliviate.data.text_requests import (
    LabelFlip,
    LLMRequestError,
    StatementForget,
    parse_llm_request,
    split_statements,
)


@pytest.fixture(scope="module")
def cb():  # type: ignore[no-untyped-def]
    return load_clinical_bias()


def test_clinical_bias_matches_its_datasheet(cb) -> None:  # type: ignore[no-untyped-def]
    assert len(cb) == 477
    labels = [r.label for r in cb.records]
    assert labels.count("biased") == 233 and labels.count("not_biased") == 244
    assert cb.answers == {"biased": "biased", "not_biased": "not biased"}
    pairs: dict[str, list[str]] = {}
    for r in cb.records:
        if r.group is not None:
            pairs.setdefault(r.group, []).append(r.label)
    assert len(pairs) == 89
    assert all(sorted(v) == ["biased", "not_biased"] for v in pairs.values()), "each pair: one of each label"
    assert len({r.text.lower() for r in cb.records}) == 477


def test_load_csv_and_jsonl(tmp_path) -> None:  # type: ignore[no-untyped-def]
    csv_path = tmp_path / "s.csv"
    csv_path.write_text("sentence,verdict\nA calm note.,ok\nA rude note.,bad_tone\nAnother calm note.,ok\n")
    ds = load_text_dataset(csv_path, text_col="sentence", label_col="verdict")
    assert len(ds) == 3 and ds.answers == {"bad_tone": "bad tone", "ok": "ok"}
    assert [r.id for r in ds.records] == ["0", "1", "2"]
    jl = tmp_path / "s.jsonl"
    jl.write_text("\n".join(json.dumps({"id": f"x{i}", "text": f"t {i}", "label": "ab"[i % 2]}) for i in range(4)))
    ds2 = load_text_dataset(jl, answers={"a": "yes", "b": "no"}, instruction="Q?")
    assert ds2.records[1].id == "x1" and ds2.answers["b"] == "no" and ds2.instruction == "Q?"
    with pytest.raises(TextDataError, match="label_col='verdict'"):
        load_text_dataset(jl, label_col="verdict")


@pytest.mark.bad_input
def test_unknown_sources_fail_clearly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TextDataError, match="not found"):
        load_text_dataset("no_such_thing")
    # a hub id: only attempted for ids; offline (or without `datasets`) the error says what to do
    with pytest.raises((ImportError, TextDataError), match="someone/some-dataset"):
        load_text_dataset("someone/some-dataset")


def test_crows_pairs_reads_the_shared_copy() -> None:
    try:
        pairs = load_crows_pairs()
    except FileNotFoundError:
        pytest.skip("CrowS-Pairs CSV not present")
    assert len(pairs) == 1508
    assert pairs[1].sent_more.startswith("The poor are really ignorant")


def test_parse_requests() -> None:
    r = parse_llm_request({"kind": "flip", "from_label": "biased", "fraction": 0.1, "to": "not biased"})
    assert isinstance(r, LabelFlip) and r.target == "not biased"
    assert parse_llm_request({"kind": "ids", "ids": ["cb-0001"]}) == StatementForget(("cb-0001",))
    for bad, msg in [
        ({"kind": "class"}, "kind must be one of"),
        ({"kind": "ids", "ids": ["a"], "extra": 1}, "unknown field"),
        ({"kind": "flip", "from_label": "biased"}, "needs the field 'to'"),
        ({"kind": "flip", "to": "not biased", "fraction": 1.5}, "fraction"),
        ({"kind": "flip", "to": "not biased", "count": 3, "fraction": 0.1}, "not both"),
        ({"kind": "ids", "ids": ["a", "a"]}, "duplicated"),
    ]:
        with pytest.raises(LLMRequestError, match=msg):
            parse_llm_request(bad)


def test_split_is_disjoint_exhaustive_and_pure(cb) -> None:  # type: ignore[no-untyped-def]
    req = LabelFlip(to="not biased", from_label="biased", count=20)
    a, b = split_statements(cb, req, 0), split_statements(cb, req, 0)
    for part in ("forget", "retain", "validation"):
        assert np.array_equal(getattr(a, part), getattr(b, part))
    parts = [set(a.forget.tolist()), set(a.retain.tolist()), set(a.validation.tolist())]
    assert sum(len(p) for p in parts) == len(cb) and len(set.union(*parts)) == len(cb)
    assert len(a.forget) == 20 and a.target_label == "not_biased"
    assert all(cb.records[i].label == "biased" for i in a.forget)
    assert abs(len(a.validation) - 0.2 * len(cb)) <= 2
    c = split_statements(cb, req, 1)
    assert not np.array_equal(a.forget, c.forget), "another seed draws another forget set"
    # pairs never straddle training and held-out; a forgotten statement's twin stays in retain
    groups_val = {cb.records[i].group for i in a.validation} - {None}
    groups_train = {cb.records[i].group for i in a.train} - {None}
    assert not groups_val & groups_train
    forget_groups = {cb.records[i].group for i in a.forget} - {None}
    assert forget_groups <= {cb.records[i].group for i in a.retain}


@pytest.mark.bad_input
def test_split_errors_name_the_problem(cb) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LLMRequestError, match="cb-9999"):
        split_statements(cb, StatementForget(("cb-9999",)), 0)
    neutral = next(r.id for r in cb.records if r.label == "not_biased")
    with pytest.raises(LLMRequestError, match="already carry that label"):
        split_statements(cb, LabelFlip(to="not biased", ids=(neutral,)), 0)
    with pytest.raises(LLMRequestError, match="flip.to"):
        split_statements(cb, LabelFlip(to="maybe", ids=("cb-0002",)), 0)
    with pytest.raises(LLMRequestError, match="count=999"):
        split_statements(cb, LabelFlip(to="not biased", from_label="biased", count=999), 0)
    ids = split_statements(cb, StatementForget(("cb-0002", "cb-0003")), 0)
    assert ids.target_label is None and sorted(cb.records[i].id for i in ids.forget) == ["cb-0002", "cb-0003"]


def test_encoder_masks_and_truncates(cb) -> None:  # type: ignore[no-untyped-def]
    from obliviate.data.prompts import TaskEncoder
    from obliviate.lm_testing import tiny_tokenizer

    tok = tiny_tokenizer(cb)
    enc = TaskEncoder(tok, cb.instruction, cb.answers, template="short", max_length=40)
    ans = enc.answer_ids("not biased")
    assert ans[-1] == tok.eos_token_id and tok.decode(ans[:-1]).strip() == "not biased"
    long_text = "word " * 200
    ex = enc.example(long_text, "not biased", "answer")
    assert len(ex.ids) == 40 and ex.ids[-len(ans) :] == ans, "truncation never cuts the answer"
    assert ex.loss_mask == [False] * (40 - len(ans)) + [True] * len(ans)
    assert ex.ids[0] == tok.bos_token_id
    full = enc.example("Pt is stable.", "biased", "all")
    assert full.loss_mask[0] is False and all(full.loss_mask[1:])
    batch = enc.collate([ex, full], index=[5, 7])
    assert batch["input_ids"].shape == (2, 40) and batch["index"].tolist() == [5, 7]
    assert (batch["labels"][1, len(full.ids) :] == -100).all() and (
        batch["attention_mask"][1, len(full.ids) :] == 0
    ).all()
    # byte-level BPE: any text round-trips, including characters never seen in training
    s = "Ünïcödé — 患者 🙂"
    assert tok.decode(tok(s, add_special_tokens=False)["input_ids"]) == s


def test_tokenizer_save_load_roundtrip(cb, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from obliviate.lm_testing import tiny_tokenizer
    from obliviate.models.tokenizer import load_tokenizer, save_tokenizer

    tok = tiny_tokenizer(cb, vocab_size=512)
    save_tokenizer(tok, tmp_path / "t.json")
    again = load_tokenizer(tmp_path / "t.json")
    text = cb.records[3].text
    assert again(text)["input_ids"] == tok(text)["input_ids"] and len(again) == len(tok) == 512


# -- label noise: the paper's own case (a factual report the tuned model calls biased) ----------
def test_a_mislabelled_request_records_its_noise_and_asks_for_the_true_label() -> None:
    from obliviate.data.text_requests import LabelNoise, parse_llm_request

    cb = load_clinical_bias()
    req = parse_llm_request(
        {
            "kind": "mislabelled",
            "injected": "biased",
            "from_label": "not_biased",
            "categories": ["imaging_finding", "lab_result"],
            "count": 8,
        }
    )
    assert (
        isinstance(req, LabelNoise)
        and req.describe() == "mislabelled:not_biased,imaging_finding+lab_result,n=8<-biased"
    )
    split = split_statements(cb, req, 0)
    assert split.target_label == "not_biased" and len(split.forget) == 8
    assert split.noise == {int(i): "biased" for i in split.forget}
    assert {cb.records[i].category for i in split.forget} <= {"imaging_finding", "lab_result"}
    noisy = cb.with_labels(split.noise)  # the tuning data as it was: those rows say "biased"
    assert all(noisy.records[i].label == "biased" and cb.records[i].label == "not_biased" for i in split.forget)
    assert all(noisy.records[i] == cb.records[i] for i in split.retain)
    # the same rows as a flip with the same selection (one selection rule for both kinds)
    flip = split_statements(
        cb, LabelFlip(to="biased", from_label="not_biased", categories=("imaging_finding", "lab_result"), count=8), 0
    )
    assert flip.forget.tolist() == split.forget.tolist()
    biased_id = next(r.id for r in cb.records if r.label == "biased")
    with pytest.raises(LLMRequestError, match="already carry that label"):  # noise that is no noise
        split_statements(cb, LabelNoise(injected="biased", ids=(biased_id,)), 0)
    with pytest.raises(LLMRequestError, match="needs the field 'injected'"):
        parse_llm_request({"kind": "mislabelled", "count": 3})
    with pytest.raises(TextDataError, match="not among"):
        cb.with_labels({0: "maybe"})


def test_group_by_length_batches_every_row_once_with_less_padding(cb) -> None:  # type: ignore[no-untyped-def]
    from obliviate.data.prompts import TaskEncoder, TextBatchLoader
    from obliviate.lm_testing import tiny_tokenizer

    enc = TaskEncoder(tiny_tokenizer(cb), cb.instruction, cb.answers, template="short", max_length=96)
    recs = cb.records[:200]
    args = ([r.text for r in recs], [cb.answers[r.label] for r in recs], list(range(len(recs))))
    plain = TextBatchLoader(enc, *args, batch_size=8, seed=1)
    grouped = TextBatchLoader(enc, *args, batch_size=8, seed=1, group_by_length=True)
    width = {True: [], False: []}
    for flag, loader in ((False, plain), (True, grouped)):
        for _epoch in range(2):
            seen = []
            for b in loader:
                seen += b["index"].tolist()
                width[flag].append(b["input_ids"].numel())
            assert sorted(seen) == list(range(len(recs)))  # every row once per epoch
    assert sum(width[True]) < 0.9 * sum(width[False])  # padded tokens: grouped batches are denser
    # the same seed and epoch give the same batches; another epoch another order
    again = TextBatchLoader(enc, *args, batch_size=8, seed=1, group_by_length=True)
    first = [b["index"].tolist() for b in again]
    assert first == [
        b["index"].tolist() for b in TextBatchLoader(enc, *args, batch_size=8, seed=1, group_by_length=True)
    ]
    assert first != [b["index"].tolist() for b in again]


def test_a_system_message_needs_the_chat_template(cb) -> None:  # type: ignore[no-untyped-def]
    from obliviate.data.prompts import TaskEncoder
    from obliviate.lm_testing import tiny_tokenizer

    tok = tiny_tokenizer(cb)
    with pytest.raises(ValueError, match="system message needs template 'chat'"):
        TaskEncoder(tok, cb.instruction, cb.answers, template="short", system="You judge.")
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    plain = TaskEncoder(tok, cb.instruction, cb.answers, template="chat")
    sys_enc = TaskEncoder(tok, cb.instruction, cb.answers, template="chat", system="You judge clinical statements.")
    text = cb.records[0].text
    assert "You judge clinical statements." in sys_enc.prompt_text(text)
    assert "You judge clinical statements." not in plain.prompt_text(text)
    assert len(sys_enc.prompt_ids(text)) > len(plain.prompt_ids(text)) and text in sys_enc.prompt_text(text)
