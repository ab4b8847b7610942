"""The evidence of one deletion request, as JSON and as a page a data-protection officer can
read without reading code (``evidence.json``, ``evidence.html``)."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from ..report.blocks import Document, Heading, Para, Table

FORMAT = 1


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of the model's weights serialised as safetensors — the same bytes, and so the
    same hash, as the ``model.safetensors`` file :func:`obliviate.models.save_checkpoint` writes."""
    from safetensors.torch import save

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return hashlib.sha256(save(state)).hexdigest()


def tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _num(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def render_html(ev: dict[str, Any]) -> str:
    """The certificate page: what was asked, what was done, what was measured, the verdict."""
    req, m = ev["request"], ev["method"]
    doc = Document(f"Deletion request {req['id']}: evidence")
    doc.add(Para(f"**Verdict:** {ev['verdict']}"))
    doc.add(Heading("What was asked"))
    ids = req.get("ids", {})
    rows = [["request id", req["id"]], ["received (UTC)", req["received_at"]],
            ["rows to forget", str(ids.get("count", "–"))],
            [ids.get("what", "SHA-256 of the sorted ids"), f"`{ids.get('sha256', '–')}`"]]
    for prov in req.get("reference_provenance", []):
        rows.append(["retrained reference", prov])
    if ids.get("classes_touched"):
        rows.append(["classes they belong to", ", ".join(f"{k} ({v})" for k, v in ids["classes_touched"].items())])
    if ids.get("duplicates_removed"):
        rows.append(["duplicate ids in the request (removed)", ", ".join(map(str, ids["duplicates_removed"][:20]))])
    if ids.get("already_forgotten"):
        rows.append(["ids already forgotten by an earlier request (not repeated)",
                     ", ".join(map(str, ids["already_forgotten"][:20]))])
    if ids.get("excluded_from_retain"):
        rows.append(["ids forgotten earlier, kept out of the retain set", str(ids["excluded_from_retain"])])
    doc.add(Table(["", ""], rows))
    doc.add(Heading("What was done"))
    rows = [["method", f"`{m['name']}` ({'chosen by the policy' if m['chosen_by'] == 'policy' else 'chosen by the user'})"],
            ["why", m.get("reason") or "–"], ["paper", m.get("reference") or "–"],
            ["exact (provably no influence left)", "yes" if m.get("exact") else "no (approximate: see the audit)"],
            ["data the method read", ", ".join(ev["splits_read"]) or "none"],
            ["wall time", f"{ev['wall_seconds']:.2f} s"],
            ["model before (SHA-256 of the weights)", f"`{ev['models']['original_sha256']}`"],
            ["model after (SHA-256 of the weights)", f"`{ev['models']['unlearned_sha256']}`"],
            ["dataset fingerprint", f"`{ev['data'].get('fingerprint', '–')}`"],
            ["library", ", ".join(f"{k} {v}" for k, v in ev["library"].items())]]
    doc.add(Table(["", ""], rows))
    doc.add(Para("Configuration: " + ", ".join(f"`{k}={v}`" for k, v in m["config"].items())))
    doc.add(Heading("What was measured"))
    head = ["split", "rows", "accuracy before", "accuracy after", "loss before", "loss after"]
    trows = []
    for split in ("forget", "retain", "heldout"):
        b, a = ev["before"].get(split, {}), ev["after"].get(split, {})
        if b.get("n"):
            trows.append([split, str(b["n"]), _pct(b.get("accuracy")), _pct(a.get("accuracy")),
                          _num(b.get("loss")), _num(a.get("loss"))])
    d = ev.get("data", {})
    sampled = (f" The retain figures are on a seeded sample of {d['retain_rows_measured']:,} of the "
               f"{d['retain_rows_total']:,} retain rows." if d.get("retain_rows_measured", 0) < d.get("retain_rows_total", 0)
               else "")
    if d.get("validation_rows"):
        sampled += (f" The method read {d['validation_rows']:,} held-out rows ({d.get('validation_source', 'given')}); "
                    "the held-out figures and the audits are on the others.")
    doc.add(Table(head, trows, caption="Accuracy and mean cross-entropy (nats) of the model before and after." + sampled))
    mem = ev["membership"]
    mrows = []
    for role in ("original", "unlearned", "retrained"):
        a = mem.get(role)
        if a and a.get("available"):
            mrows.append([role, _num(a["auc"]), f"[{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]", a["level"]])
    if mrows:
        doc.add(Table(["model", "AUC", "95 % interval", "reading"], mrows,
                      caption=f"Membership audit: {mem.get('attack', '')}."))
    pe = mem.get("per_example")
    if pe:
        prow = []
        for role in ("original", "unlearned", "retrained"):
            a = pe.get(role) or {}
            if a.get("available"):
                r = a.get("rmia") or {}
                prow.append([role, _num(a["auc"]), f"[{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]",
                             f"{a['tpr_at_1pct_fpr']:.3f} [{a['tpr_ci95'][0]:.3f}, {a['tpr_ci95'][1]:.3f}]",
                             _num(a.get("tpr_at_0p1pct_fpr", float("nan"))),
                             f"{r['auc']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]" if r else "–", a["level"]])
        if prow:
            doc.add(Table(["model", "LiRA AUC", "95 % interval", "TPR at 1 % FPR", "TPR at 0.1 % FPR", "RMIA AUC",
                           "reading"], prow,
                          caption=f"Per-example audit: {pe['unlearned'].get('attack', '')}. The verdict: "
                                  f"{pe['unlearned'].get('verdict', '')}."))
    if mem.get("vs_reference"):
        doc.add(Para(f"Against the retrained reference: {mem['vs_reference']}."))
    if ev.get("reference"):
        r = ev["reference"]
        doc.add(Para(f"Gap to the retrained reference (`{r['sha256'][:16]}…`): average {r['avg_gap_points']:.2f} "
                     "percentage points over forget / retain / held-out accuracy and the audit AUC."))
    doc.add(Para(f"Population attacks can show that a forget set is still recognisable; they cannot prove "
                 f"that one person's rows are gone. {'' if m.get('exact') else 'This method is approximate.'}"))
    return doc.to_html()
