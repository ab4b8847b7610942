"""LLM metrics in the one registry (``kind = "llm"``): judgement, perplexity, membership
inference, TOFU forget quality and CrowS-Pairs, read from one evaluation pass per model.

The LLM task evaluates every model once (:func:`obliviate.metrics.lm_scoring.evaluate_model` ->
``ModelEval``) and hands the unlearned model's evaluation, with the original's and the retrained
reference's, to these metrics through :class:`LLMEvalInputs` — as the vision task hands logits
through :class:`~obliviate.metrics.EvalInputs`. The formulas, their papers and their checks are
in :mod:`obliviate.metrics.lm_scoring`; the keys and directions in its ``LLM_METRICS`` table. Directions
of the judgement keys depend on the request: a flip request wants the forget judgements changed
(``higher``), a deletion request wants them where the retrained model has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..attacks.roc import auc
from ..data.text import TextDataset
from ..data.text_requests import StatementSplit
from .base import Metric, MissingInputError, compute_metrics, register_metric
from .lm_scoring import (
    LLM_METRICS,
    METRIC_GROUPS,
    ModelEval,
    direction_of,
    truth_ratio,
    twin_positions,
)
from .tofu import forget_quality


@dataclass
class LLMEvalInputs:
    """What LLM metrics read for one unlearned model: its evaluation and the references'."""

    unlearned: ModelEval
    original: ModelEval
    retrained: ModelEval | None
    dataset: TextDataset
    split: StatementSplit

    @property
    def request_kind(self) -> str:
        return "ids" if self.split.target_label is None else "flip"

    def roles(self) -> set[str]:
        return {"unlearned", "original"} | ({"retrained"} if self.retrained is not None else set())


class _LLMMetric(Metric):
    kind: ClassVar[str] = "llm"
    direction: ClassVar[str] = "info"  # per key: LLM_METRICS (request-dependent for judgements)
    _request_kind = "flip"

    def compute(self, inputs: Any) -> dict[str, float]:
        self._request_kind = inputs.request_kind
        out = self.values(inputs)
        return {k: float(v) for k, v in out.items()}

    def values(self, inputs: LLMEvalInputs) -> dict[str, float]:
        raise NotImplementedError

    def direction_of(self, key: str) -> str:
        return direction_of(key, self._request_kind)


@register_metric("llm_judgement")
class Judgement(_LLMMetric):
    """Flip rate, target rate and judgement accuracy on forget / retain / held-out statements, and
    the keep rate of the forget statements' minimal-edit twins (paper §III.B's before/after)."""

    needs = frozenset({"original"})
    summary = "LLM judgements: forget flip and target rates, forget/retain/held-out accuracy, twin keep rate."
    reference = "paper §III.B / §V.A (constrained scoring of the two answers)"

    def values(self, inputs: LLMEvalInputs) -> dict[str, float]:
        u, o, ds, split = inputs.unlearned, inputs.original, inputs.dataset, inputs.split
        f_pred = u.preds("forget")
        out = {"forget_flip_rate": float((f_pred != o.preds("forget")).mean()), "forget_acc": u.acc("forget")}
        if split.target_label is not None:
            out["forget_target_rate"] = float((f_pred == list(ds.answers).index(split.target_label)).mean())
        if "retain" in u.scores:
            out["retain_acc"] = u.acc("retain")
        if "validation" in u.scores:
            out["heldout_acc"] = u.acc("validation")
        twins = twin_positions(ds, split, u.rows)
        if twins:
            out["twin_keep_rate"] = float(np.mean([u.preds(s)[j] == o.preds(s)[j] for s, j in twins]))
        return out


@register_metric("llm_perplexity")
class HeldoutPerplexity(_LLMMetric):
    """``exp`` of the mean token NLL of the held-out examples (prompt + answer) and, for a
    pretrained model, of general English text no task trains on (``general_ppl``)."""

    summary = "Perplexity of held-out examples and of general text; lower is better."
    reference = "standard LM perplexity"

    def values(self, inputs: LLMEvalInputs) -> dict[str, float]:
        if inputs.unlearned.heldout_ppl is None and inputs.unlearned.general_ppl is None:
            raise MissingInputError("no perplexity was computed")
        return {
            k: v
            for k, v in (("heldout_ppl", inputs.unlearned.heldout_ppl), ("general_ppl", inputs.unlearned.general_ppl))
            if v is not None
        }


@register_metric("llm_mia")
class LLMMembership(_LLMMetric):
    """LOSS, Min-K% and zlib membership-inference AUCs, forget vs held-out statements."""

    summary = "Membership-inference AUCs (LOSS, Min-K%, zlib), forget vs held-out; closest to retrained is best."
    reference = "Yeom et al. 2018; Shi et al., ICLR 2024 (Min-K%); Carlini et al. 2021 (zlib)"

    def values(self, inputs: LLMEvalInputs) -> dict[str, float]:
        return {
            f"mia_{attack}_auc": auc(parts["forget"], parts["validation"])
            for attack, parts in inputs.unlearned.mia.items()
            if "forget" in parts and "validation" in parts
        }


@register_metric("llm_forget_quality")
class ForgetQuality(_LLMMetric):
    """TOFU forget quality: the KS-test p-value between the unlearned and the retrained model's
    per-statement truth ratios on the forget set."""

    needs = frozenset({"retrained"})
    summary = "TOFU forget quality: KS p-value of truth ratios against the retrained model; higher is better."
    reference = "Maini et al., 'TOFU', 2024"

    def values(self, inputs: LLMEvalInputs) -> dict[str, float]:
        u, r = inputs.unlearned, inputs.retrained
        assert r is not None
        tr_u = truth_ratio(u.scores["forget"], u.label_idx["forget"], u.answer_lengths)
        tr_r = truth_ratio(r.scores["forget"], r.label_idx["forget"], r.answer_lengths)
        return {"forget_quality": forget_quality(tr_u, tr_r)[0]}


@register_metric("llm_crows_pairs")
class CrowsPairs(_LLMMetric):
    """CrowS-Pairs, causal-LM variant: share of pairs whose stereotyping sentence is more likely."""

    summary = "CrowS-Pairs score (0.5 = unbiased) and its distance from 0.5."
    reference = "Nangia et al., EMNLP 2020 (causal-LM variant)"

    def values(self, inputs: LLMEvalInputs) -> dict[str, float]:
        if inputs.unlearned.crows is None:
            raise MissingInputError("no CrowS-Pairs were scored")
        return {"crows_pairs_score": inputs.unlearned.crows, "crows_pairs_bias": abs(inputs.unlearned.crows - 0.5)}


# The study's metric groups (``metrics.groups`` of an LLM study) -> registered metric names.
GROUP_METRICS = {
    "judgement": "llm_judgement",
    "perplexity": "llm_perplexity",
    "mia": "llm_mia",
    "forget_quality": "llm_forget_quality",
    "crows_pairs": "llm_crows_pairs",
}
assert set(GROUP_METRICS) == set(METRIC_GROUPS)


def compute_llm_metrics(
    unlearned: ModelEval,
    original: ModelEval,
    retrained: ModelEval | None,
    *,
    dataset: TextDataset,
    split: StatementSplit,
    groups: tuple[str, ...] = tuple(METRIC_GROUPS),
) -> dict[str, tuple[float, str]]:
    """``{key: (value, direction)}`` for one unlearned model through the registry (keys of
    ``LLM_METRICS``); keys whose inputs are missing are absent."""
    values, directions = compute_metrics(
        [GROUP_METRICS[g] for g in groups], LLMEvalInputs(unlearned, original, retrained, dataset, split)
    )
    assert set(values) <= set(LLM_METRICS)
    return {k: (v, directions[k]) for k, v in values.items()}


__all__ = ["GROUP_METRICS", "LLMEvalInputs", "compute_llm_metrics"]
