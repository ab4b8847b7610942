"""Markdown for the LLM half of a report: :func:`render_llm_section` (rows + answers → text)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..metrics.lm_rows import QA_METRICS
from ..metrics.lm_scoring import LLM_METRICS

ARROWS = {"higher": "↑", "lower": "↓", "closest_to_retrained": "≈R", "info": ""}
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Judgement and utility",
        (
            "forget_flip_rate",
            "forget_target_rate",
            "forget_acc",
            "retain_acc",
            "heldout_acc",
            "twin_keep_rate",
            "heldout_ppl",
            "general_ppl",
        ),
    ),
    (
        "Privacy, bias and cost",
        ("mia_loss_auc", "mia_mink_auc", "mia_zlib_auc", "forget_quality", "crows_pairs_score", "seconds", "steps"),
    ),
)
# the fictitious-entity study's tables (TOFU's measures), chosen when its rows carry model_utility
QA_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Forgetting (TOFU)", ("forget_quality", "forget_truth_ratio", "forget_prob", "heldout_prob", "forget_rouge")),
    (
        "Utility",
        (
            "model_utility",
            "retain_prob",
            "retain_rouge",
            "retain_truth_ratio",
            "world_prob",
            "world_rouge",
            "world_truth_ratio",
            "general_ppl",
        ),
    ),
    (
        "Memorisation, membership and cost",
        (
            "verbatim",
            "extraction_strength",
            "exact_memorization",
            "mia_loss_auc",
            "mia_zlib_auc",
            "mia_mink_auc",
            "mia_minkpp_auc",
            "seconds",
            "steps",
        ),
    ),
)
FQ_ALIKE = 0.05  # TOFU reads a forget-quality p-value at or above 0.05 as "cannot be told from the retain model"
UTILITY_KEPT = 0.95  # ... and a model utility at least 95 % of the full model's as utility kept
REFERENCES = ("pretrained", "original", "retrained")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _fmt(values: Sequence[float], metric: str) -> str:
    if not values:
        return "–"
    mean = sum(values) / len(values)
    digits = 1 if metric in ("seconds", "steps", "heldout_ppl", "general_ppl") else 3
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _ordered(items: Iterable[str]) -> list[str]:
    seen = list(dict.fromkeys(items))
    return [m for m in REFERENCES if m in seen] + [m for m in seen if m not in REFERENCES]


def render_llm_section(rows: Sequence[Mapping[str, Any]], answers: Mapping[str, Any] | None) -> str:
    """One table per (model, request) and metric group — a line per method (original, retrained,
    then the unlearning methods), mean ± std over seeds (std with ddof = 1) — and the generated
    answers of every model for a few forget statements, side by side."""
    out = ["## LLM unlearning", ""]
    if not rows:
        out.append("No finished LLM runs yet.")
    pairs = list(dict.fromkeys((r["model"], r["request"]) for r in rows))
    for model, request in pairs:
        sub = [r for r in rows if r["model"] == model and r["request"] == request]
        methods = _ordered(r["method"] for r in sub)
        seeds = sorted({r["seed"] for r in sub})
        values: dict[tuple[str, str], list[float]] = {}
        direction: dict[str, str] = {}
        for r in sub:
            values.setdefault((r["method"], r["metric"]), []).append(float(r["value"]))
            if r["method"] not in REFERENCES or r["metric"] not in direction:
                direction[r["metric"]] = r["direction"]
        out += [
            f"### {model} — request `{request}`",
            "",
            (
                f"Seeds {seeds}; mean ± std over seeds. ↑ higher is better, ↓ lower is better, "
                "≈R closest to the retrained model (trained without the forget set) is better. "
                "`original` is the model before unlearning; `retrained` the reference"
                + ("; `pretrained` the model as loaded, before the task tuning." if "pretrained" in methods else ".")
            ),
            "",
        ]
        present = {r["metric"] for r in sub}
        qa = "model_utility" in present
        if qa:
            out += [_qa_sentence(values, methods), ""]
        for title, metrics in QA_TABLES if qa else TABLES:
            cols = [m for m in metrics if m in present]
            if not cols:
                continue
            head = [f"{m} {ARROWS.get(direction.get(m, 'info'), '')}".strip() for m in cols]
            out += [f"**{title}**", "", "| method | " + " | ".join(head) + " |", "|---|" + "---|" * len(cols)]
            for meth in methods:
                out.append(f"| {_cell(meth)} | " + " | ".join(_fmt(values.get((meth, m), []), m) for m in cols) + " |")
            out.append("")
        defs = {k: v[0] for k, v in LLM_METRICS.items()} | ({k: v[0] for k, v in QA_METRICS.items()} if qa else {})
        legend = [f"`{k}`: {defs[k]}" for k in sorted(present) if k in defs]
        if legend:
            out += [
                "<details><summary>Metric definitions</summary>",
                "",
                *[f"- {x}" for x in legend],
                "",
                "</details>",
                "",
            ]
    blocks = (answers or {}).get("blocks", []) if isinstance(answers, Mapping) else []
    for b in blocks:
        out += [
            (
                f"### Answers before and after unlearning — {b.get('model', '')}, `{b.get('request', '')}`, "
                f"seed {b.get('seed', '')}"
            ),
            "",
            (
                "Each forget question, its true answer, and every model's greedy answer."
                if b.get("kind") == "qa"
                else f"Prompt: *{_cell(b.get('instruction', ''))}* followed by the statement. `generated` is the "
                "greedy continuation; `judgement` the more likely of the two answers."
            ),
            "",
        ]
        for st in b.get("statements", []):
            target = f", requested: **{_cell(st['target'])}**" if st.get("target") else ""
            out += [
                f"> {_cell(st.get('text', ''))}",
                "",
                f"`{_cell(st.get('id', ''))}` — learned label: **{_cell(st.get('label', ''))}**{target}",
                "",
                "| model | judgement | generated |",
                "|---|---|---|",
            ]
            ans = st.get("answers", {})
            for meth in _ordered(ans):
                a = ans.get(meth) or {}
                out.append(f"| {_cell(meth)} | {_cell(a.get('judgement', '–'))} | {_cell(a.get('text', '')) or '∅'} |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def _qa_sentence(values: Mapping[tuple[str, str], list[float]], methods: Sequence[str]) -> str:
    """Which methods reach the retain model's forget quality without losing utility, in words."""

    def mean(method: str, metric: str) -> float | None:
        v = values.get((method, metric))
        return sum(v) / len(v) if v else None

    full = mean("original", "model_utility")
    groups: dict[str, list[str]] = {"both": [], "forget only": [], "utility only": [], "neither": []}
    for m in methods:
        fq, mu = mean(m, "forget_quality"), mean(m, "model_utility")
        if m in REFERENCES or fq is None or mu is None or full is None:
            continue
        alike, kept = fq >= FQ_ALIKE, mu >= UTILITY_KEPT * full
        groups["both" if alike and kept else "forget only" if alike else "utility only" if kept else "neither"].append(
            f"`{m}`"
        )

    def names(key: str) -> str:
        return ", ".join(groups[key]) or "none"

    before = mean("original", "forget_quality")
    caveat = (
        f" The full model itself has forget quality {before:.3f}, above {FQ_ALIKE:g}: with this few forget rows "
        "the KS test cannot tell the full model from the retain model either, so forget quality does not "
        "separate the methods here — read the memorisation and membership columns."
        if before is not None and before >= FQ_ALIKE
        else ""
    )
    return (
        f"**Reach the retain model without losing utility** (mean forget quality ≥ {FQ_ALIKE:g}: the KS test "
        f"cannot tell their forget rows' truth ratios from the retain model's; mean model utility ≥ "
        f"{100 * UTILITY_KEPT:.0f} % of the full model's): {names('both')}. Reach it but lose utility: "
        f"{names('forget only')}. Keep utility but do not reach it: {names('utility only')}. Neither: "
        f"{names('neither')}.{caveat}"
    )
