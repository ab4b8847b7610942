"""Per-row LM measures (obliviate.metrics.lm_rows) against hand computations on tiny random GPT-2
and Llama models: the vocabulary moments Min-K %++ reads, extraction strength, exact
memorisation, batched greedy answers, and the forget quality of a model against itself."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from obliviate.data.fictitious import generate  # noqa: E402
from obliviate.data.prompts import PairEncoder, TextRow  # noqa: E402
from obliviate.metrics import lm_rows  # noqa: E402
from obliviate.metrics.lm_rows import TokenStats, greedy_answers, row_scores, token_stats  # noqa: E402
from obliviate.metrics.lm_scoring import generate_answer, token_logprobs  # noqa: E402
from obliviate.models.tokenizer import build_bpe_tokenizer  # noqa: E402

BENCH = generate(6, seed=3, n_perturbed=3)
ROWS = [TextRow(p.question, p.answer, None, p.paraphrase, p.perturbed) for p in BENCH.pairs]


@pytest.fixture(scope="module")
def tok() -> Any:
    return build_bpe_tokenizer([p.question + " " + p.answer for p in BENCH.pairs], 400)


def _model(arch: str, vocab: int) -> Any:
    torch.manual_seed(0)
    ids = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    if arch == "gpt2":
        return transformers.GPT2LMHeadModel(
            transformers.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=128, **ids)
        ).eval()
    return transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, **ids
        )
    ).eval()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_token_stats_match_a_hand_computation(tok: Any, arch: str) -> None:
    model, enc = _model(arch, len(tok)), PairEncoder(tok, "qa", 96)
    rows = ROWS[:5]
    ex = [enc.example(r.prompt, r.answer) for r in rows]
    stats = token_stats(model, enc, ex, batch_size=2)  # padded batches of unequal lengths
    for s, lp in zip(stats, token_logprobs(model, enc, ex)):
        assert s.logprob == pytest.approx(lp, abs=1e-5)
    for e, s in zip(ex, stats):
        with torch.no_grad():
            logp = model(torch.tensor([e.ids])).logits[0, :-1].double().log_softmax(-1)
        pos = [t - 1 for t in range(1, len(e.ids)) if e.loss_mask[t]]
        target = torch.tensor([e.ids[t + 1] for t in pos])
        lp = logp[pos, target].numpy()
        p = logp[pos].exp()
        mu = (p * logp[pos]).sum(-1).numpy()
        sigma = np.sqrt(((p * logp[pos] ** 2).sum(-1) - torch.tensor(mu) ** 2).numpy())
        assert s.logprob == pytest.approx(lp, abs=1e-5)
        assert s.mu == pytest.approx(mu, abs=1e-5)
        assert s.sigma == pytest.approx(sigma, abs=1e-4)
        assert list(s.hit) == list((logp[pos].argmax(-1) == target).numpy())
        z = np.sort((lp - mu) / sigma)
        assert s.minkpp(0.2) == pytest.approx(z[: max(1, int(np.ceil(0.2 * len(z))))].mean(), rel=1e-3)


def test_extraction_strength_counts_the_prefix_needed() -> None:
    def es(hits: list[bool]) -> float:
        n = len(hits)
        return TokenStats(np.zeros(n), np.zeros(n), np.ones(n), np.array(hits)).extraction_strength()

    assert es([True, True, True, True]) == 1.0  # every token from the prompt alone
    assert es([False, True, True, True]) == 0.75  # one token given, the other three predicted
    assert es([True, True, False, True]) == 0.25  # the third token must be given too
    assert es([True, True, True, False]) == 0.0  # not even the last token
    assert es([]) == 0.0


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_batched_greedy_answers_equal_one_at_a_time(tok: Any, arch: str) -> None:
    model, enc = _model(arch, len(tok)), PairEncoder(tok, "qa", 96)
    prompts = [r.prompt for r in ROWS[:6]]
    batched = greedy_answers(model, enc, prompts, "cpu", max_new_tokens=6, batch_size=4)
    single = [generate_answer(model, enc, q, max_new_tokens=6) for q in prompts]
    assert batched == single
    assert any(batched)  # a random model writes something


def test_row_scores_and_the_forget_quality_of_a_model_against_itself(tok: Any) -> None:
    model, enc = _model("llama", len(tok)), PairEncoder(tok, "qa", 96)
    forget, retain, held = ROWS[:6], ROWS[6:18], ROWS[18:30]
    s = row_scores(model, enc, forget, "cpu")
    assert s["loss"] == pytest.approx(-s["mia_loss"])
    assert np.all((s["es"] >= 0) & (s["es"] <= 1)) and np.all((s["em"] >= 0) & (s["em"] <= 1))
    m = lm_rows.qa_measures(
        model, enc, forget=forget, retain=retain, heldout=held, world=retain[:4], device="cpu", max_new_tokens=4
    )
    vals = lm_rows.qa_metrics(m, m)
    assert set(vals) == set(lm_rows.QA_METRICS)
    assert vals["forget_quality"][0] == 1.0  # identical truth ratios: KS p-value 1
    assert vals["forget_quality"][1] == "higher" and vals["mia_loss_auc"][1] == "closest_to_retrained"
    parts = [vals[k][0] for k in lm_rows.UTILITY_PARTS]
    harmonic = 0.0 if min(parts) == 0 else len(parts) / sum(1 / v for v in parts)  # a random model's ROUGE may be 0
    assert vals["model_utility"][0] == pytest.approx(harmonic)
    assert vals["forget_prob"][0] == pytest.approx(np.exp(-s["loss"]).mean())
