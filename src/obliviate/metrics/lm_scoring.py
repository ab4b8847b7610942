"""LLM metrics: judgement flips and accuracy, perplexity, membership inference, forget quality,
CrowS-Pairs — with a direction for each key.

This module holds the scoring primitives and the one evaluation pass per model
(:func:`evaluate_model` → :class:`ModelEval`). The metrics themselves are registered in the one
``METRICS`` registry with ``kind = "llm"`` (:mod:`obliviate.metrics.llm`), which reads the
unlearned model's :class:`ModelEval` against the original's and the retrained reference's;
:data:`LLM_METRICS` names every key they return with its summary and direction.

* Judgement: the answer whose tokens (+EOS) have the highest summed log-likelihood after the
  prompt (constrained scoring: every model gets the same two choices).
* Perplexity: ``exp`` of the mean token NLL over the held-out examples (prompt + answer).
* Membership inference on the forget set vs the held-out set, as ROC AUC: LOSS (Yeom et al.
  2018; score −mean NLL), Min-K% (Shi et al., ICLR 2024; mean of the k % lowest token
  log-probabilities, k = 20 %) and zlib (Carlini et al. 2021; −mean NLL / zlib-compressed length
  in bytes). Direction: closest to the retrained model, whose AUC is what "never trained on it"
  looks like on these two sets.
* Forget quality (TOFU, Maini et al. 2024): the KS-test p-value between the unlearned and the
  retrained model's per-statement truth ratios on the forget set. TOFU's truth ratio compares a
  paraphrased correct answer with perturbed wrong ones; for a two-answer judgement it becomes
  ``R = P(other answer)^{1/|other|} / P(learned answer)^{1/|learned|}`` (length-normalised).
* CrowS-Pairs (Nangia et al. 2020), causal-LM variant: share of pairs in which ``sent_more`` has
  the higher total log-likelihood (BOS-conditioned); 0.5 is unbiased. The original work scores
  masked LMs by pseudo-log-likelihood of the unmodified tokens; that is not defined for causal
  LMs, so this variant is named ``crows_pairs_score`` and reported as a fraction.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..data.prompts import Encoded, TaskEncoder, model_inputs
from ..data.text import CrowsPair, TextDataset
from ..data.text_requests import StatementSplit
from ..lm_losses import token_nll
from ..utils import autocast_context

# key -> (summary, direction); "flip|ids" directions depend on the request kind
LLM_METRICS: dict[str, tuple[str, str]] = {
    "forget_flip_rate": (
        "share of forget statements whose judgement differs from the original model's",
        "flip:higher|ids:closest_to_retrained",
    ),
    "forget_target_rate": ("share of forget statements answered with the requested answer (flip requests)", "higher"),
    "forget_acc": (
        "judgement accuracy on forget statements w.r.t. their dataset labels",
        "flip:lower|ids:closest_to_retrained",
    ),
    "retain_acc": ("judgement accuracy on retain statements", "higher"),
    "heldout_acc": ("judgement accuracy on held-out statements (never trained on)", "higher"),
    "twin_keep_rate": ("share of forget statements' minimal-edit twins whose judgement is unchanged", "higher"),
    "heldout_ppl": ("perplexity of the held-out examples (prompt + answer)", "lower"),
    "general_ppl": ("perplexity of general English text no task trains on (data/resources/general_text.txt)", "lower"),
    "mia_loss_auc": ("membership-inference AUC, LOSS attack, forget vs held-out", "closest_to_retrained"),
    "mia_mink_auc": ("membership-inference AUC, Min-K% attack (k = 20 %), forget vs held-out", "closest_to_retrained"),
    "mia_zlib_auc": ("membership-inference AUC, zlib attack, forget vs held-out", "closest_to_retrained"),
    "forget_quality": ("TOFU forget quality: KS-test p-value of truth ratios vs the retrained model", "higher"),
    "crows_pairs_score": (
        "CrowS-Pairs: share of pairs where the stereotyping sentence is more likely (0.5 = unbiased)",
        "info",
    ),
    "crows_pairs_bias": ("CrowS-Pairs |score − 0.5|", "lower"),
}
METRIC_GROUPS = {
    "judgement": (
        "forget_flip_rate",
        "forget_target_rate",
        "forget_acc",
        "retain_acc",
        "heldout_acc",
        "twin_keep_rate",
    ),
    "perplexity": ("heldout_ppl", "general_ppl"),
    "mia": ("mia_loss_auc", "mia_mink_auc", "mia_zlib_auc"),
    "forget_quality": ("forget_quality",),
    "crows_pairs": ("crows_pairs_score", "crows_pairs_bias"),
}


def direction_of(key: str, request_kind: str) -> str:
    """Direction of a metric key for a request kind (``"flip"`` or ``"ids"``)."""
    d = LLM_METRICS[key][1]
    if "|" in d:
        table = dict(part.split(":") for part in d.split("|"))
        return table[request_kind]
    return d


# --------------------------------------------------------------------------------------------
# scoring primitives
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def token_logprobs(
    model: nn.Module,
    encoder: TaskEncoder,
    examples: Sequence[Encoded],
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> list[np.ndarray]:
    """Log-probabilities of each example's loss tokens (float64 arrays), in input order.

    Examples are batched by length to limit padding. ``bf16``: the forward pass under bf16
    autocast (the log-softmax stays float32).
    """
    device = torch.device(device)
    was = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    out: list[np.ndarray] = [np.zeros(0)] * len(examples)
    for s in range(0, len(order), batch_size):
        chunk = order[s : s + batch_size]
        batch = encoder.collate([examples[i] for i in chunk])
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast_context(device, bf16):
            logits = model(**model_inputs(batch)).logits
        nll, mask = token_nll(logits, batch["labels"])
        lp = (-nll).double().cpu().numpy()
        m = mask.bool().cpu().numpy()
        for j, i in enumerate(chunk):
            out[i] = lp[j][m[j]]
    model.train(was)
    return out


def answer_scores(
    model: nn.Module,
    encoder: TaskEncoder,
    texts: Sequence[str],
    answers: Sequence[str],
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> np.ndarray:
    """``(N, K)`` summed log-likelihood of each answer (+EOS) after each statement's prompt."""
    lps = sequence_logprobs(model, encoder, texts, answers, batch_size=batch_size, device=device, bf16=bf16)
    return _answer_part(lps, encoder, answers)


def sequence_logprobs(
    model: nn.Module,
    encoder: TaskEncoder,
    texts: Sequence[str],
    answers: Sequence[str],
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> list[list[np.ndarray]]:
    """Per statement, per answer: the log-probabilities of every token after BOS of
    ``prompt + answer + EOS`` — the answer's score and the whole example's likelihood, which the
    membership attacks and the perplexity read.

    The prompt is run once per statement and every answer continues it from the key/value cache
    (left-padded batches); a statement whose prompt is truncated differently per answer (longer
    than ``max_length`` allows) is scored one example per answer instead.
    """
    device = torch.device(device)
    ans = [encoder.answer_ids(a) for a in answers]
    prompts = [[encoder.prompt_ids(t, reserve=len(a)) for a in ans] for t in texts]
    out: list[list[np.ndarray]] = [[] for _ in texts]
    shared = [i for i, ps in enumerate(prompts) if all(q == ps[0] for q in ps)]
    rest = sorted(set(range(len(texts))) - set(shared))
    if rest:
        ex = [
            Encoded([*prompts[i][k], *a], [True] * (len(prompts[i][k]) + len(a)))
            for i in rest
            for k, a in enumerate(ans)
        ]
        lps = token_logprobs(model, encoder, ex, batch_size=batch_size, device=device, bf16=bf16)
        for j, i in enumerate(rest):
            out[i] = lps[j * len(ans) : (j + 1) * len(ans)]
    was = model.training
    model.eval()
    order = sorted(shared, key=lambda i: len(prompts[i][0]))
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            chunk = order[s : s + batch_size]
            for i, row in zip(
                chunk, _continue_prompts(model, encoder, [prompts[i][0] for i in chunk], ans, device, bf16)
            ):
                out[i] = row
    model.train(was)
    return out


@functools.cache
def _cache_arg() -> str:
    """The name of a causal LM's key/value cache argument: ``cache`` (transformers ≥ 5.2x) or
    ``past_key_values`` (earlier)."""
    import inspect

    from transformers import LlamaForCausalLM

    return "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


def _continue_prompts(
    model: nn.Module,
    encoder: TaskEncoder,
    prompts: list[list[int]],
    answers: list[list[int]],
    device: torch.device,
    bf16: bool,
) -> list[list[np.ndarray]]:
    """One left-padded prompt pass, then each answer from the cache (cropped back after each)."""
    b, width = len(prompts), max(len(q) for q in prompts)
    ids = torch.full((b, width), encoder.pad_id, dtype=torch.long)
    att = torch.zeros((b, width), dtype=torch.long)
    for j, q in enumerate(prompts):
        ids[j, width - len(q) :] = torch.tensor(q)
        att[j, width - len(q) :] = 1
    ids, att = ids.to(device), att.to(device)
    pos = (att.cumsum(1) - 1).clamp(min=0)
    with autocast_context(device, bf16):
        o = model(input_ids=ids, attention_mask=att, position_ids=pos, use_cache=True)
    logp = torch.log_softmax(o.logits.float(), -1)
    prompt_lp = logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0].double().cpu().numpy()
    last = logp[:, -1]  # predicts each answer's first token
    cache_arg = _cache_arg()
    cache = o.cache if cache_arg == "cache" else o.past_key_values
    rows: list[list[np.ndarray]] = [[] for _ in prompts]
    for a in answers:
        n = len(a)
        a_ids = torch.tensor(a, device=device).expand(b, n)
        with autocast_context(device, bf16):
            o2 = model(
                input_ids=a_ids,
                attention_mask=torch.cat([att, torch.ones_like(a_ids)], 1),
                position_ids=pos[:, -1:] + 1 + torch.arange(n, device=device),
                use_cache=True,
                **{cache_arg: cache},
            )
        lp2 = torch.log_softmax(o2.logits.float(), -1)
        first = last.gather(-1, a_ids[:, :1])
        tail = lp2[:, :-1].gather(-1, a_ids[:, 1:, None])[..., 0]
        a_lp = torch.cat([first, tail], 1).double().cpu().numpy()
        cache.crop(-n)  # back to the prompt
        for j, q in enumerate(prompts):
            rows[j].append(np.concatenate([prompt_lp[j, width - len(q) :], a_lp[j]]))
    return rows


def _answer_part(lps: Sequence[Sequence[np.ndarray]], encoder: TaskEncoder, answers: Sequence[str]) -> np.ndarray:
    """``(N, K)`` sums of the answer tokens (+EOS): the last ``len(answer_ids)`` log-probs."""
    lengths = [len(encoder.answer_ids(a)) for a in answers]
    return np.array([[float(lp[-n:].sum()) for lp, n in zip(row, lengths)] for row in lps], dtype=np.float64).reshape(
        len(lps), len(answers)
    )


def perplexity(token_lps: Sequence[np.ndarray]) -> float:
    """``exp(−Σ log p / #tokens)`` over all tokens of all sequences."""
    total = sum(float(lp.sum()) for lp in token_lps)
    count = sum(len(lp) for lp in token_lps)
    if count == 0:
        raise ValueError("perplexity of no tokens is undefined")
    return float(np.exp(-total / count))


def loss_score(lp: np.ndarray) -> float:
    """LOSS attack (Yeom et al. 2018): −mean NLL = mean log-probability (higher: member)."""
    return float(lp.mean())


def mink_score(lp: np.ndarray, k: float = 0.2) -> float:
    """Min-K% Prob (Shi et al. 2024): mean of the ⌈k·n⌉ lowest token log-probs (at least one)."""
    n = max(1, int(np.ceil(k * len(lp))))
    return float(np.sort(lp)[:n].mean())


def zlib_score(lp: np.ndarray, text: str) -> float:
    """zlib attack (Carlini et al. 2021): −mean NLL divided by the zlib-compressed length (bytes)."""
    return float(lp.mean()) / len(zlib.compress(text.encode("utf-8")))


def truth_ratio(scores: np.ndarray, label_idx: np.ndarray, answer_lengths: np.ndarray) -> np.ndarray:
    """Per statement ``log R = mean_{other}(log P(other)/|other|) − log P(learned)/|learned|``."""
    per_token = scores / answer_lengths[None, :]
    n, k = per_token.shape
    own = per_token[np.arange(n), label_idx]
    others = (per_token.sum(1) - own) / (k - 1)
    return others - own


def crows_pairs_score(
    model: nn.Module,
    encoder: TaskEncoder,
    pairs: Sequence[CrowsPair],
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> float:
    """Share of pairs in which ``sent_more`` gets the higher total log-likelihood."""
    if not pairs:
        raise ValueError("CrowS-Pairs score of no pairs is undefined")
    ex = [encoder.lm_example(s) for p in pairs for s in (p.sent_more, p.sent_less)]
    lps = token_logprobs(model, encoder, ex, batch_size=batch_size, device=device, bf16=bf16)
    more = np.array([lps[2 * i].sum() for i in range(len(pairs))])
    less = np.array([lps[2 * i + 1].sum() for i in range(len(pairs))])
    return float((more > less).mean())


@torch.no_grad()
def generate_answer(
    model: nn.Module,
    encoder: TaskEncoder,
    text: str,
    *,
    max_new_tokens: int = 16,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> str:
    """Greedy continuation of the statement's prompt (the answer the model would write)."""
    was = model.training
    model.eval()
    ids = torch.tensor([encoder.prompt_ids(text, reserve=max_new_tokens)], device=device)
    with autocast_context(torch.device(device), bf16):
        out = cast(Any, model).generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=encoder.pad_id,
            eos_token_id=encoder.eos_id,
        )
    model.train(was)
    return str(encoder.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)).strip()


# --------------------------------------------------------------------------------------------
# one model, evaluated once
# --------------------------------------------------------------------------------------------


@dataclass
class ModelEval:
    """Everything the metrics read about one model on one split of statements."""

    scores: dict[str, np.ndarray]  # split -> (N, K) answer log-likelihoods
    rows: dict[str, np.ndarray]  # split -> dataset rows scored
    label_idx: dict[str, np.ndarray]  # split -> index of the dataset label in the answer order
    answer_lengths: np.ndarray  # (K,) tokens per answer incl. EOS
    mia: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # attack -> split -> scores
    heldout_ppl: float | None = None
    general_ppl: float | None = None
    crows: float | None = None

    def preds(self, split: str) -> np.ndarray:
        return self.scores[split].argmax(1)

    def acc(self, split: str) -> float:
        return float((self.preds(split) == self.label_idx[split]).mean())


def evaluate_model(
    model: nn.Module,
    encoder: TaskEncoder,
    dataset: TextDataset,
    split: StatementSplit,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    groups: Sequence[str] = tuple(METRIC_GROUPS),
    retain_rows: np.ndarray | None = None,
    crows_pairs: Sequence[CrowsPair] | None = None,
    mink_k: float = 0.2,
    general_text: Sequence[str] | None = None,
    bf16: bool = False,
) -> ModelEval:
    """Score ``model`` once: judgements on every split, plus what ``groups`` need.

    ``retain_rows`` (a subset of ``split.retain``) bounds the cost on large retain sets;
    ``general_text``: passages for the general-text perplexity (``perplexity`` group); ``bf16``:
    forward passes under bf16 autocast. One forward pass per (statement, answer) gives the
    judgement scores and — from the example with the dataset's answer — the whole-example
    log-probabilities the membership attacks and the held-out perplexity read.
    """
    labels = list(dataset.answers)
    answers = [dataset.answers[label] for label in labels]
    rows = {
        "forget": split.forget,
        "retain": split.retain if retain_rows is None else retain_rows,
        "validation": split.validation,
    }
    rows = {k: np.asarray(v) for k, v in rows.items() if len(v)}
    recs = dataset.records
    scores: dict[str, np.ndarray] = {}
    label_idx: dict[str, np.ndarray] = {}
    seqs: dict[str, list[np.ndarray]] = {}
    for name, r in rows.items():
        lps = sequence_logprobs(
            model, encoder, [recs[i].text for i in r], answers, batch_size=batch_size, device=device, bf16=bf16
        )
        scores[name] = _answer_part(lps, encoder, answers)
        label_idx[name] = np.array([labels.index(recs[i].label) for i in r])
        seqs[name] = [row[k] for row, k in zip(lps, label_idx[name])]  # the example with its dataset answer
    lengths = np.array([len(encoder.answer_ids(a)) for a in answers], dtype=np.float64)
    ev = ModelEval(scores, rows, label_idx, lengths)
    if "perplexity" in groups and "validation" in rows:
        ev.heldout_ppl = perplexity(seqs["validation"])
    if "mia" in groups and "validation" in rows:
        for name in ("forget", "validation"):
            seq = seqs[name]
            texts = [f"{recs[i].text} {dataset.answers[recs[i].label]}" for i in rows[name]]
            ev.mia.setdefault("loss", {})[name] = np.array([loss_score(lp) for lp in seq])
            ev.mia.setdefault("mink", {})[name] = np.array([mink_score(lp, mink_k) for lp in seq])
            ev.mia.setdefault("zlib", {})[name] = np.array([zlib_score(lp, t) for lp, t in zip(seq, texts)])
    if "perplexity" in groups and general_text:
        ev.general_ppl = perplexity(
            token_logprobs(
                model,
                encoder,
                [encoder.lm_example(t) for t in general_text],
                batch_size=batch_size,
                device=device,
                bf16=bf16,
            )
        )
    if "crows_pairs" in groups and crows_pairs:
        ev.crows = crows_pairs_score(model, encoder, crows_pairs, batch_size=batch_size, device=device, bf16=bf16)
    return ev


def load_general_text() -> list[str]:
    """The bundled general-English passages (``data/resources/general_text.txt``)."""
    from importlib.resources import files

    text = files("obliviate.data").joinpath("resources/general_text.txt").read_text(encoding="utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def twin_positions(dataset: TextDataset, split: StatementSplit, rows: dict[str, np.ndarray]) -> list[tuple[str, int]]:
    """(split, position) of each forget statement's group twins that are scored outside the forget set."""
    forget_groups = {dataset.records[i].group for i in split.forget} - {None}
    found = []
    for name in ("retain", "validation"):
        for j, i in enumerate(rows.get(name, ())):
            if dataset.records[i].group in forget_groups:
                found.append((name, j))
    return found


def summarise(ev: ModelEval) -> dict[str, Any]:
    """A compact JSON-able view (accuracies per split) for logs and answers files."""
    return {f"{s}_acc": ev.acc(s) for s in ev.scores}
