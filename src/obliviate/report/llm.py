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
OVERSHOOT = 0.15  # a loss-attack AUC this far below the retain model's: the forget rows stand out as unlikely
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
            out += [_qa_sentence(sub, methods), ""]
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
        qa = b.get("kind") == "qa"
        for st in b.get("statements", []):
            target = f", requested: **{_cell(st['target'])}**" if st.get("target") else ""
            learned = "true answer" if qa else "learned label"
            out += [
                f"> {_cell(st.get('text', ''))}",
                "",
                f"`{_cell(st.get('id', ''))}` — {learned}: **{_cell(st.get('label', ''))}**{target}",
                "",
                "| model | generated |" if qa else "| model | judgement | generated |",
                "|---|---|" if qa else "|---|---|---|",
            ]
            ans = st.get("answers", {})
            for meth in _ordered(ans):
                a = ans.get(meth) or {}
                text = _cell(a.get("text", "")) or "∅"
                out.append(
                    f"| {_cell(meth)} | {text} |"
                    if qa
                    else f"| {_cell(meth)} | {_cell(a.get('judgement', '–'))} | {text} |"
                )
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def _qa_sentence(rows: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> str:
    """Which methods reach the retain model's forget quality without losing utility, seed by seed
    (a mean of p-values would let one lucky seed speak for all), and which overshoot it."""
    at = {(r["method"], r["metric"], r["seed"]): float(r["value"]) for r in rows}
    seeds = sorted({r["seed"] for r in rows})

    def passes(m: str, s: Any) -> bool | None:
        fq, mu, full = (
            at.get((m, "forget_quality", s)),
            at.get((m, "model_utility", s)),
            at.get(("original", "model_utility", s)),
        )
        if fq is None or mu is None or full is None:
            return None
        return fq >= FQ_ALIKE and mu >= UTILITY_KEPT * full

    every, some, never = [], [], []
    for m in methods:
        if m in REFERENCES:
            continue
        got = [p for p in (passes(m, s) for s in seeds) if p is not None]
        if not got:
            continue
        k = sum(got)
        if k == len(got):
            every.append(f"`{m}`")
        elif k:
            some.append(f"`{m}` ({k} of {len(got)})")
        else:
            never.append(f"`{m}`")

    def names(x: list[str]) -> str:
        return ", ".join(x) or "none"

    text = (
        f"**Reach the retain model without losing utility**, seed by seed (forget quality ≥ {FQ_ALIKE:g}: the KS "
        f"test cannot tell the forget rows' truth ratios from the retain model's; model utility ≥ "
        f"{100 * UTILITY_KEPT:.0f} % of the full model's on the same seed): on every seed {names(every)}; on some "
        f"seeds {names(some)}; on none {names(never)}."
    )
    full_fq = [at[("original", "forget_quality", s)] for s in seeds if ("original", "forget_quality", s) in at]
    if full_fq and min(full_fq) >= FQ_ALIKE:
        text += (
            f" The full model itself has forget quality ≥ {FQ_ALIKE:g} on every seed: with this few forget rows the KS "
            "test cannot tell it from the retain model either, so forget quality does not separate the methods here — "
            "read the memorisation and membership columns."
        )
    ref = [at[("retrained", "mia_loss_auc", s)] for s in seeds if ("retrained", "mia_loss_auc", s) in at]
    if ref:
        floor = sum(ref) / len(ref) - OVERSHOOT
        over = []
        for m in methods:
            v = [at[(m, "mia_loss_auc", s)] for s in seeds if (m, "mia_loss_auc", s) in at]
            if m not in REFERENCES and v and sum(v) / len(v) < floor:
                over.append(f"`{m}` ({sum(v) / len(v):.2f})")
        if over:
            text += (
                f" **Overshoot**: the forget rows end less likely than entities no model saw — loss-attack AUC more "
                f"than {OVERSHOOT:g} below the retain model's {sum(ref) / len(ref):.2f} — for {', '.join(over)}: "
                "an attacker reading the loss still tells them apart, from the other side."
            )
    return text
