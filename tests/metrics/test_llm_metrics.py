"""LLM losses and metrics against hand-computed values and reference implementations."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

from obliviate import lm_losses as losses
from obliviate.metrics import lm_scoring as M
from obliviate.metrics.llm import compute_llm_metrics


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny matrices: a second thread only adds contention


def _logits_for(probs: list[list[float]]) -> torch.Tensor:
    """(1, T, V) logits whose softmax at each position is ``probs[t]``."""
    return torch.log(torch.tensor([probs], dtype=torch.float64))


def test_perplexity_by_hand_three_tokens() -> None:
    # sequence [x0, 1, 2, 0]: tokens 1, 2, 0 are predicted with p = 1/2, 1/4, 1/8
    probs = [[0.25, 0.5, 0.25], [0.5, 0.25, 0.25], [0.125, 0.5, 0.375], [1 / 3, 1 / 3, 1 / 3]]
    labels = torch.tensor([[-100, 1, 2, 0]])
    nll, mask = losses.token_nll(_logits_for(probs), labels)
    assert mask.sum() == 3
    lp = [(-nll[0][mask[0].bool()]).double().numpy()]
    # exp(-(ln 1/2 + ln 1/4 + ln 1/8) / 3) = exp(6 ln 2 / 3) = 4
    assert M.perplexity(lp) == pytest.approx(4.0, rel=1e-6)
    assert float(losses.mean_nll(_logits_for(probs), labels)) == pytest.approx(2 * math.log(2), rel=1e-6)


def test_token_nll_matches_transformers_loss() -> None:
    from obliviate.lm_testing import tiny_llm_problem

    p = tiny_llm_problem()
    ex = [p.encoder.example(p.dataset.records[i].text, "biased", "all") for i in range(3)]
    b = p.encoder.collate(ex)
    with torch.no_grad():
        out = p.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"])
        ours = losses.mean_nll(out.logits, b["labels"])
    assert float(ours) == pytest.approx(float(out.loss), rel=1e-5)
    # answer scores are summed log-likelihoods: check one against the HF loss × token count
    ex1 = p.encoder.example(p.dataset.records[0].text, "not biased", "answer")
    b1 = p.encoder.collate([ex1])
    with torch.no_grad():
        hf = p.model(input_ids=b1["input_ids"], attention_mask=b1["attention_mask"], labels=b1["labels"]).loss
    s = M.answer_scores(p.model, p.encoder, [p.dataset.records[0].text], ["not biased"])
    assert s[0, 0] == pytest.approx(-float(hf) * sum(ex1.loss_mask), rel=1e-5)


def test_membership_scores_by_hand() -> None:
    lp = np.array([-1.0, -2.0, -3.0, -4.0, -5.0])
    assert M.loss_score(lp) == -3.0
    assert M.mink_score(lp, 0.4) == -4.5  # the 2 lowest: -5, -4
    assert M.mink_score(lp, 0.01) == -5.0  # at least one token
    text = "Patient reports pain."
    assert M.zlib_score(lp, text) == pytest.approx(-3.0 / len(zlib.compress(text.encode())))


def test_forget_quality_ks_by_hand() -> None:
    from obliviate.metrics.tofu import forget_quality

    # n = m = 3, complete separation: D = 1, exact two-sided p = 2 / C(6, 3) = 0.1
    assert forget_quality(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))[0] == pytest.approx(0.1)
    assert forget_quality(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))[0] == pytest.approx(1.0)


def test_truth_ratio_by_hand() -> None:
    # answers: "biased" (2 tokens), "not biased" (3 tokens); log P = -2 and -6; learned label 0
    tr = M.truth_ratio(np.array([[-2.0, -6.0]]), np.array([0]), np.array([2.0, 3.0]))
    assert tr[0] == pytest.approx(-6 / 3 - (-2 / 2))


def test_npo_and_simnpo_losses_by_hand() -> None:
    nll, ref = torch.tensor([2.0]), torch.tensor([1.0])
    # log ratio = -1; L = -(2/β) log σ(β) with β = 0.5
    assert float(losses.npo_loss(nll, ref, 0.5)) == pytest.approx(4 * math.log1p(math.exp(-0.5)))
    # at θ = ref the loss is (2/β) log 2
    assert float(losses.npo_loss(ref, ref, 0.1)) == pytest.approx(20 * math.log(2))
    # SimNPO: nll 6 over 3 tokens, β = 2, γ = 1: -(2/2) log σ(2·2 − 1)
    got = float(losses.simnpo_loss(torch.tensor([6.0]), torch.tensor([3.0]), 2.0, 1.0))
    assert got == pytest.approx(math.log1p(math.exp(-3.0)))


def test_kl_and_mse_by_hand() -> None:
    p = [[0.5, 0.5], [0.9, 0.1], [0.5, 0.5]]
    q = [[0.5, 0.5], [0.6, 0.4], [0.5, 0.5]]
    labels = torch.tensor([[-100, 0, -100]])  # only position 1 predicts a label (from logits[0])
    kl = losses.kl_to_reference(_logits_for(q), _logits_for(p), labels)  # KL(ref=p ‖ θ=q) at t=0
    assert float(kl) == pytest.approx(0.0)
    labels2 = torch.tensor([[-100, -100, 0]])  # from logits[1]
    kl2 = losses.kl_to_reference(_logits_for(q), _logits_for(p), labels2)
    assert float(kl2) == pytest.approx(0.9 * math.log(0.9 / 0.6) + 0.1 * math.log(0.1 / 0.4))
    h = torch.tensor([[[1.0, 3.0], [0.0, 0.0]]])
    t = torch.tensor([[[0.0, 1.0], [5.0, 5.0]]])
    assert float(losses.masked_mse(h, t, torch.tensor([[True, False]]))) == pytest.approx((1 + 4) / 2)


def test_crows_pairs_score_matches_direct_likelihoods() -> None:
    from obliviate.data.text import CrowsPair
    from obliviate.lm_testing import tiny_llm_problem

    p = tiny_llm_problem()
    pairs = [
        CrowsPair("The nurse was kind.", "The nurse was rude.", "x", True),
        CrowsPair("He is poor and lazy.", "He is rich and lazy.", "x", True),
        CrowsPair("Old people are slow.", "Young people are slow.", "x", True),
    ]

    def total_ll(s: str) -> float:
        ids = torch.tensor([[p.encoder.bos_id, *p.encoder.text_ids(s)]])
        with torch.no_grad():
            loss = p.model(input_ids=ids, labels=ids).loss
        return -float(loss) * (ids.shape[1] - 1)

    want = np.mean([total_ll(c.sent_more) > total_ll(c.sent_less) for c in pairs])
    assert M.crows_pairs_score(p.model, p.encoder, pairs) == pytest.approx(want)


def test_compute_llm_metrics_on_a_handmade_case() -> None:
    from obliviate.data.text import TextDataset, TextRecord
    from obliviate.data.text_requests import StatementSplit

    recs = tuple(
        TextRecord(f"s{i}", f"t{i}", "b" if i < 3 else "n", group="g" if i in (0, 3) else None) for i in range(6)
    )
    ds = TextDataset("toy", recs, {"b": "biased", "n": "not biased"})
    split = StatementSplit(np.array([0, 1, 2]), np.array([3, 4]), np.array([5]), target_label="n")

    def ev(forget_pred: list[int], retain_pred: list[int]) -> M.ModelEval:
        def sc(preds: list[int]) -> np.ndarray:
            return np.array([[0.0, -1.0] if k == 0 else [-1.0, 0.0] for k in preds])

        return M.ModelEval(
            scores={"forget": sc(forget_pred), "retain": sc(retain_pred), "validation": sc([1])},
            rows={"forget": split.forget, "retain": split.retain, "validation": split.validation},
            label_idx={"forget": np.array([0, 0, 0]), "retain": np.array([1, 1]), "validation": np.array([1])},
            answer_lengths=np.array([2.0, 3.0]),
        )

    orig, unl = ev([0, 0, 0], [1, 1]), ev([1, 1, 0], [1, 0])
    vals = compute_llm_metrics(unl, orig, None, dataset=ds, split=split)
    assert vals["forget_flip_rate"] == (pytest.approx(2 / 3), "higher")
    assert vals["forget_target_rate"][0] == pytest.approx(2 / 3)
    assert vals["forget_acc"] == (pytest.approx(1 / 3), "lower")
    assert vals["retain_acc"] == (0.5, "higher") and vals["heldout_acc"] == (1.0, "higher")
    assert vals["twin_keep_rate"] == (1.0, "higher")  # s3 (twin of s0) still judged "not biased"
    assert "forget_quality" not in vals  # no retrained model given
    ids_split = StatementSplit(split.forget, split.retain, split.validation, target_label=None)
    vals_ids = compute_llm_metrics(unl, orig, orig, dataset=ds, split=ids_split)
    assert vals_ids["forget_acc"][1] == "closest_to_retrained" and "forget_target_rate" not in vals_ids
    assert 0.0 <= vals_ids["forget_quality"][0] <= 1.0


def test_one_pass_gives_the_answer_scores_and_the_membership_likelihoods() -> None:
    """The evaluation's single forward pass per (statement, answer) must give what the separate
    passes gave: answer-only scores, and the whole example's token log-probs (MIA, perplexity)."""
    from obliviate.lm_testing import tiny_llm_problem

    p = tiny_llm_problem()
    ds, enc, split = p.dataset, p.encoder, p.split
    texts = [ds.records[i].text for i in split.forget]
    answers = [ds.answers[k] for k in ds.answers]
    scores = M.answer_scores(p.model, enc, texts, answers)
    for j, t in enumerate(texts):
        for k, a in enumerate(answers):
            alone = M.token_logprobs(p.model, enc, [enc.example(t, a, "answer")])[0]
            assert scores[j, k] == pytest.approx(alone.sum(), abs=1e-5)
    ev = M.evaluate_model(p.model, enc, ds, split, groups=("judgement", "mia", "perplexity"))
    for name in ("forget", "validation"):
        ex = [enc.example(ds.records[i].text, ds.answers[ds.records[i].label], "all") for i in ev.rows[name]]
        want = np.array([lp.mean() for lp in M.token_logprobs(p.model, enc, ex)])
        np.testing.assert_allclose(ev.mia["loss"][name], want, atol=1e-6)
    ex = [enc.example(ds.records[i].text, ds.answers[ds.records[i].label], "all") for i in split.validation]
    assert ev.heldout_ppl == pytest.approx(M.perplexity(M.token_logprobs(p.model, enc, ex)), rel=1e-6)
    # bf16 autocast scores the same model to within bf16's precision, same judgements here
    ev16 = M.evaluate_model(p.model, enc, ds, split, groups=("judgement",), bf16=True)
    assert np.abs(ev16.scores["validation"] - ev.scores["validation"]).max() < 0.5
    assert ev16.scores["validation"].tolist() != ev.scores["validation"].tolist()  # it did run in bf16
