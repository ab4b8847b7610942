"""Per-row measures of a causal LM on question/answer pairs and texts: what a deletion request's
evidence and the fictitious-entity benchmark read.

One forward pass per row gives, over the answer's tokens (:func:`token_stats`):

* the log-probability of each true token — the answer loss (TOFU's ``avg_gt_loss``) and the
  LOSS (Yeom et al. 2018), zlib (Carlini et al. 2021) and Min-K % Prob (Shi et al., ICLR 2024)
  membership scores of :mod:`obliviate.metrics.lm_scoring`;
* the mean and spread of the log-probabilities of the whole vocabulary at each position —
  Min-K %++ (Zhang et al., "Min-K%++: Improved Baseline for Detecting Pre-Training Data from
  Large Language Models", ICLR 2025, eq. 2): each token's ``(log p(x_t) − μ_t) / σ_t``, the
  lowest ``k`` of them averaged;
* whether the most likely token is the true one — exact memorisation (Tirumala et al., NeurIPS
  2022: the share of answer tokens predicted) and extraction strength (Carlini et al., ICLR 2023;
  as OpenUnlearning computes it: ``1 − k/n`` for the shortest prefix of ``k`` answer tokens after
  which every remaining token is predicted).

:func:`greedy_answers` writes each row's answer greedily (batched, left-padded): verbatim
memorisation (the share of answers reproduced exactly) and TOFU's ROUGE-L recall read it.
:func:`measure` is one model's record for a deletion request; :func:`qa_measures` and
:func:`qa_metrics` are the fictitious-entity benchmark's, with TOFU's forget quality and model
utility from :mod:`obliviate.metrics.tofu`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..data.prompts import Encoded, TaskEncoder, TextRow, model_inputs
from ..lm_losses import IGNORE
from ..utils import autocast_context
from .lm_scoring import load_general_text, mink_score, token_logprobs, zlib_score
from .tofu import answer_probability, forget_quality, model_utility, rouge_l_recall, truth_ratio_score, truth_ratios

MINK_K = 0.2  # Min-K % and Min-K %++: the share of lowest-scoring tokens averaged (the papers' 20 %)

# key -> (what it is, direction). Directions: higher / lower is better, or closest to the model
# tuned without the forget rows (the retain model) is better, or info.
QA_METRICS: dict[str, tuple[str, str]] = {
    "forget_quality": (
        "TOFU forget quality: KS-test p-value of the forget rows' truth ratios against the retain model's "
        "(1: indistinguishable; TOFU reads p ≥ 0.05 as statistically alike)",
        "higher",
    ),
    "forget_truth_ratio": ("forget rows' truth ratio, mean min(R, 1/R) (1: true and wrong answers alike)", "closest"),
    "forget_prob": ("forget rows' answer probability, mean exp(−loss)", "closest"),
    "forget_rouge": ("forget rows' ROUGE-L recall of the greedy answer", "closest"),
    "heldout_prob": ("answer probability of never-tuned entities' rows (the floor forgetting aims at)", "info"),
    "model_utility": (
        "TOFU model utility: harmonic mean of the retain and world-fact probability, ROUGE-L and truth ratio",
        "higher",
    ),
    "retain_prob": ("retain rows' answer probability", "higher"),
    "retain_rouge": ("retain rows' ROUGE-L recall", "higher"),
    "retain_truth_ratio": ("retain rows' truth ratio, mean max(0, 1 − 1/R)", "higher"),
    "world_prob": ("world facts: the true answer's share of the probability among true and wrong answers", "higher"),
    "world_rouge": ("world facts' ROUGE-L recall", "higher"),
    "world_truth_ratio": ("world facts' truth ratio (true answer against wrong ones), mean max(0, 1 − 1/R)", "higher"),
    "verbatim": ("forget answers reproduced exactly by greedy decoding (share)", "closest"),
    "extraction_strength": ("forget rows' extraction strength, mean 1 − k/n (Carlini et al. 2023)", "closest"),
    "exact_memorization": ("forget rows' answer tokens predicted by argmax (Tirumala et al. 2022)", "closest"),
    "mia_loss_auc": ("LOSS attack AUC, forget rows against never-tuned entities' rows (0.5: chance)", "closest"),
    "mia_zlib_auc": ("zlib attack AUC, forget against never-tuned rows", "closest"),
    "mia_mink_auc": ("Min-K % attack AUC, forget against never-tuned rows", "closest"),
    "mia_minkpp_auc": ("Min-K %++ attack AUC, forget against never-tuned rows", "closest"),
    "general_ppl": ("perplexity of general English text never tuned on", "lower"),
}
UTILITY_PARTS = ("retain_prob", "retain_rouge", "retain_truth_ratio", "world_prob", "world_rouge", "world_truth_ratio")


@dataclass
class TokenStats:
    """One row's answer tokens: the true token's log-probability, the mean ``mu`` and standard
    deviation ``sigma`` of the log-probabilities over the vocabulary, and whether the argmax is
    the true token (``hit``)."""

    logprob: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    hit: np.ndarray

    def minkpp(self, k: float = MINK_K) -> float:
        """Min-K %++: the mean of the lowest ``⌈k·n⌉`` standardised log-probabilities."""
        z = (self.logprob - self.mu) / np.maximum(self.sigma, 1e-8)
        n = max(1, int(np.ceil(k * len(z))))
        return float(np.sort(z)[:n].mean())

    def extraction_strength(self) -> float:
        """``1 − k/n``: ``k`` the fewest leading answer tokens to give before argmax predicts all
        the rest (1: every token predicted from the prompt alone; 0: not even the last)."""
        n = len(self.hit)
        tail = 0
        for h in self.hit[::-1]:
            if not h:
                break
            tail += 1
        return 1.0 - (n - tail) / n if n else 0.0


@torch.no_grad()
def token_stats(
    model: nn.Module,
    encoder: TaskEncoder,
    examples: Sequence[Encoded],
    *,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> list[TokenStats]:
    """:class:`TokenStats` of each example's loss tokens, in input order (batched by length)."""
    device = torch.device(device)
    was = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    out: list[TokenStats] = [TokenStats(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, bool))] * len(examples)
    for s in range(0, len(order), batch_size):
        chunk = order[s : s + batch_size]
        batch = {k: v.to(device) for k, v in encoder.collate([examples[i] for i in chunk]).items()}
        with autocast_context(device, bf16):
            logits = model(**model_inputs(batch)).logits
        logp = logits[:, :-1].float().log_softmax(-1)
        target = batch["labels"][:, 1:]
        mask = target != IGNORE
        lp = logp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        p = logp.exp()
        mu = (p * logp).sum(-1)
        sigma = ((p * logp.square()).sum(-1) - mu.square()).clamp_min(0).sqrt()
        hit = logp.argmax(-1) == target
        arrays = [t.double().cpu().numpy() for t in (lp, mu, sigma)]
        hits, m = hit.cpu().numpy(), mask.cpu().numpy()
        for j, i in enumerate(chunk):
            out[i] = TokenStats(arrays[0][j][m[j]], arrays[1][j][m[j]], arrays[2][j][m[j]], hits[j][m[j]])
        del logits, logp, p
    model.train(was)
    return out


def row_scores(
    model: nn.Module,
    enc: TaskEncoder,
    rows: Sequence[TextRow],
    device: torch.device | str,
    *,
    bf16: bool = False,
    batch_size: int = 16,
) -> dict[str, np.ndarray]:
    """Per row: the answer's mean token NLL (``loss``), the membership scores (higher: more likely
    a member; ``mia_loss``, ``mia_zlib``, ``mia_mink``, ``mia_minkpp``), extraction strength
    (``es``) and exact memorisation (``em``)."""
    stats = token_stats(
        model, enc, [enc.example(r.prompt, r.answer) for r in rows], batch_size=batch_size, device=device, bf16=bf16
    )
    loss = np.array([-float(s.logprob.mean()) for s in stats])
    return {
        "loss": loss,
        "mia_loss": -loss,
        "mia_zlib": np.array([zlib_score(s.logprob, r.answer) for s, r in zip(stats, rows)]),
        "mia_mink": np.array([mink_score(s.logprob, MINK_K) for s in stats]),
        "mia_minkpp": np.array([s.minkpp(MINK_K) for s in stats]),
        "es": np.array([s.extraction_strength() for s in stats]),
        "em": np.array([float(s.hit.mean()) for s in stats]),
    }


def answer_nll(
    model: nn.Module,
    enc: TaskEncoder,
    pairs: Sequence[tuple[str, str]],
    device: torch.device | str,
    *,
    bf16: bool = False,
    batch_size: int = 16,
) -> np.ndarray:
    """Per (prompt, answer) pair: the answer's mean token NLL (TOFU's ``avg_gt_loss``)."""
    lps = token_logprobs(
        model, enc, [enc.example(q, a) for q, a in pairs], device=device, bf16=bf16, batch_size=batch_size
    )
    return np.array([-float(lp.mean()) for lp in lps])


def truth_ratios_of(
    model: nn.Module,
    enc: TaskEncoder,
    rows: Sequence[TextRow],
    device: torch.device | str,
    *,
    bf16: bool = False,
    batch_size: int = 16,
    base_loss: np.ndarray | None = None,
    with_perturbed: bool = False,
) -> Any:
    """TOFU's truth ratio per row (:func:`obliviate.metrics.tofu.truth_ratios`) when every row has a
    paraphrase and perturbed answers of one count, else ``None``. ``base_loss``: the base answers'
    losses when the caller has them already (else the paraphrases' are computed);
    ``with_perturbed``: also the ``(rows, perturbed)`` losses of the wrong answers."""
    if not rows or any(r.paraphrase is None or not r.perturbed for r in rows):
        return (None, None) if with_perturbed else None
    k = len(rows[0].perturbed)
    if any(len(r.perturbed) != k for r in rows):
        return (None, None) if with_perturbed else None
    nll = partial(answer_nll, model, enc, device=device, bf16=bf16, batch_size=batch_size)
    para = base_loss if base_loss is not None else nll([(r.prompt, str(r.paraphrase)) for r in rows])
    pert = nll([(r.prompt, w) for r in rows for w in r.perturbed]).reshape(len(rows), k)
    ratios = truth_ratios(para, pert)
    return (ratios, pert) if with_perturbed else ratios


@torch.no_grad()
def greedy_answers(
    model: nn.Module,
    enc: TaskEncoder,
    prompts: Sequence[str],
    device: torch.device | str,
    *,
    max_new_tokens: int = 32,
    bf16: bool = False,
    batch_size: int = 16,
) -> list[str]:
    """The greedy continuation of each prompt (inside the encoder's template), batched with left
    padding; decoding stops at EOS."""
    device = torch.device(device)
    was = model.training
    model.eval()
    ids = [enc.prompt_ids(p, reserve=max_new_tokens) for p in prompts]
    out = [""] * len(prompts)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for s in range(0, len(order), batch_size):
        chunk = order[s : s + batch_size]
        width = max(len(ids[i]) for i in chunk)
        inp = torch.tensor([[enc.pad_id] * (width - len(ids[i])) + ids[i] for i in chunk], device=device)
        att = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in chunk], device=device)
        with autocast_context(device, bf16):
            gen = cast(Any, model).generate(
                input_ids=inp,
                attention_mask=att,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=enc.pad_id,
                eos_token_id=enc.eos_id,
            )
        for j, i in enumerate(chunk):
            out[i] = str(enc.tokenizer.decode(gen[j, width:], skip_special_tokens=True)).strip()
    model.train(was)
    return out


def general_ppl(
    model: nn.Module,
    enc: TaskEncoder,
    device: torch.device | str,
    *,
    bf16: bool = False,
    texts: Sequence[str] | None = None,
) -> float:
    """Perplexity of general English text no task tunes on: ``texts``, or every bundled passage."""
    texts = load_general_text() if texts is None else texts
    lps = token_logprobs(model, enc, [enc.example("", t) for t in texts], device=device, bf16=bf16)
    return float(np.exp(-np.concatenate(lps).mean()))


def verbatim_rate(rows: Sequence[TextRow], generated: Sequence[str]) -> float:
    """Share of rows whose generated answer is the true answer, exactly (spaces at the ends aside)."""
    return float(np.mean([g.strip() == r.answer.strip() for r, g in zip(rows, generated)]))


def measure(
    model: nn.Module,
    enc: TaskEncoder,
    forget: Sequence[TextRow],
    retain: Sequence[TextRow],
    heldout: Sequence[TextRow],
    device: torch.device | str,
    *,
    general: Sequence[str] | None = None,
) -> dict[str, Any]:
    """What a deletion request's guard and evidence read about one model: answer loss and
    probability on the forget, retain and held-out rows, the perplexity of ``general`` text (default:
    every bundled passage), the membership
    AUCs of the forget rows against the held-out rows, verbatim memorisation, extraction strength,
    exact memorisation and the forget rows' truth ratios (rows with paraphrases and perturbed
    answers)."""
    from ..attacks.roc import auc

    f = row_scores(model, enc, forget, device)
    r = row_scores(model, enc, retain, device)
    pairs = [x for x in forget if x.prompt]
    if pairs:
        n = max(len(enc.answer_ids(x.answer)) for x in pairs)
        verbatim: float | None = verbatim_rate(
            pairs, greedy_answers(model, enc, [x.prompt for x in pairs], device, max_new_tokens=n)
        )
    else:
        verbatim = None
    out: dict[str, Any] = {
        "forget_loss": float(f["loss"].mean()),
        "retain_loss": float(r["loss"].mean()),
        "forget_prob": float(np.exp(-f["loss"]).mean()),
        "retain_prob": float(np.exp(-r["loss"]).mean()),
        "general_ppl": general_ppl(model, enc, device, texts=general),
        "verbatim": verbatim,
        "extraction_strength": float(f["es"].mean()),
        "exact_memorization": float(f["em"].mean()),
    }
    if heldout:
        h = row_scores(model, enc, heldout, device)
        out["heldout_loss"] = float(h["loss"].mean())
        out["heldout_prob"] = float(np.exp(-h["loss"]).mean())
        for k in ("mia_loss", "mia_zlib", "mia_mink", "mia_minkpp"):
            out[f"{k}_auc"] = float(auc(f[k], h[k]))
    ratios = truth_ratios_of(model, enc, forget, device)
    if ratios is not None:
        out["forget_truth_ratios"] = [float(x) for x in ratios]
        out["forget_truth_ratio"] = truth_ratio_score(ratios, forget=True)
    return out


# -- the fictitious-entity benchmark -----------------------------------------------------------


@dataclass
class QAMeasures:
    """One model measured on the benchmark's rows: per-row arrays, kept so that the forget
    quality can be computed against another model's truth ratios."""

    forget: dict[str, np.ndarray]
    heldout: dict[str, np.ndarray]
    values: dict[str, float] = field(default_factory=dict)
    forget_ratios: np.ndarray = field(default_factory=lambda: np.zeros(0))
    answers: list[str] = field(default_factory=list)  # greedy answers to the forget questions


def qa_measures(
    model: nn.Module,
    enc: TaskEncoder,
    *,
    forget: Sequence[TextRow],
    retain: Sequence[TextRow],
    heldout: Sequence[TextRow],
    world: Sequence[TextRow],
    device: torch.device | str,
    bf16: bool = False,
    batch_size: int = 16,
    max_new_tokens: int = 32,
) -> QAMeasures:
    """Every measure of :data:`QA_METRICS` but the forget quality (:func:`qa_metrics` adds it).
    ``forget``/``retain``/``world`` rows need paraphrases and perturbed answers; ``heldout`` rows
    (entities never tuned on, of the forget rows' kind) are the membership attacks' non-members."""
    from ..attacks.roc import auc

    f = row_scores(model, enc, forget, device, bf16=bf16, batch_size=batch_size)
    h = row_scores(model, enc, heldout, device, bf16=bf16, batch_size=batch_size)
    v: dict[str, float] = {}
    gen: dict[str, list[str]] = {}
    for name, rows in (("forget", forget), ("retain", retain), ("world", world)):
        gen[name] = greedy_answers(
            model,
            enc,
            [r.prompt for r in rows],
            device,
            max_new_tokens=max_new_tokens,
            bf16=bf16,
            batch_size=batch_size,
        )
        v[f"{name}_rouge"] = float(rouge_l_recall(gen[name], [r.answer for r in rows]).mean())
        # TOFU's base answer: the paraphrase on its own pairs, the answer itself on world facts
        # (its eval config's base_answer_key), whose wrong answers take the answer's form
        loss = (
            f["loss"]
            if name == "forget"
            else answer_nll(model, enc, [(r.prompt, r.answer) for r in rows], device, bf16=bf16, batch_size=batch_size)
        )
        ratios, pert = truth_ratios_of(
            model,
            enc,
            rows,
            device,
            bf16=bf16,
            batch_size=batch_size,
            base_loss=loss if name == "world" else None,
            with_perturbed=True,
        )
        if ratios is None:
            raise ValueError(f"every {name} row needs a paraphrase and perturbed answers of one count")
        v[f"{name}_truth_ratio"] = truth_ratio_score(ratios, forget=name == "forget")
        if name == "forget":
            forget_ratios = ratios
        v[f"{name}_prob"] = answer_probability(loss, pert if name == "world" else None)
    v["heldout_prob"] = answer_probability(h["loss"])
    v["model_utility"] = model_utility([v[k] for k in UTILITY_PARTS])
    v["verbatim"] = verbatim_rate(forget, gen["forget"])
    v["extraction_strength"] = float(f["es"].mean())
    v["exact_memorization"] = float(f["em"].mean())
    for k in ("mia_loss", "mia_zlib", "mia_mink", "mia_minkpp"):
        v[f"{k}_auc"] = float(auc(f[k], h[k]))
    v["general_ppl"] = general_ppl(model, enc, device, bf16=bf16)
    return QAMeasures(f, h, v, forget_ratios, gen["forget"])


def qa_metrics(m: QAMeasures, retain_model: QAMeasures) -> dict[str, tuple[float, str]]:
    """``{key: (value, direction)}`` of :data:`QA_METRICS` for the model measured as ``m``, with
    TOFU's forget quality against ``retain_model`` (the model tuned without the forget rows)."""
    vals = {**m.values, "forget_quality": forget_quality(m.forget_ratios, retain_model.forget_ratios)[0]}
    return {k: (float(vals[k]), _direction(k)) for k in QA_METRICS}


def _direction(key: str) -> str:
    d = QA_METRICS[key][1]
    return "closest_to_retrained" if d == "closest" else d
