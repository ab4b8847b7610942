"""The evidence of one deletion request, as JSON and as a page a data-protection officer can
read without reading code (``evidence.json``, ``evidence.html``)."""

from __future__ import annotations

import hashlib
import html
from typing import Any

import torch
from torch import nn

FORMAT = 1


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of the model's weights serialised as safetensors — the same bytes, and so the
    same hash, as the ``model.safetensors`` file :func:`obliviate.models.save_checkpoint` writes."""
    from safetensors.torch import save

    from ..models.user import untied

    return hashlib.sha256(save(untied(model.state_dict()))).hexdigest()


def tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _num(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _ci(a: dict[str, Any]) -> str:
    return f"{a['auc']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]"


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:56em;margin:1.5em auto;padding:0 1em;color:#222;"
    "line-height:1.45}h1{font-size:1.4em;overflow-wrap:anywhere}h2{font-size:1.15em;margin-top:1.6em}"
    ".outcome{border-left:6px solid #888;padding:0.6em 0.9em;background:#f6f6f6;margin:1em 0}"
    ".outcome b{font-size:1.15em;letter-spacing:0.02em}.exact,.verified{border-color:#2e7d32;background:#eef7ee}"
    ".not-verifiable{border-color:#b58900;background:#fdf6e0}.refused{border-color:#c62828;background:#fdecea}"
    "dl{display:grid;grid-template-columns:minmax(8em,14em) 1fr;gap:0.3em 1em;margin:0.5em 0}"
    "dt{color:#555}dd{margin:0;overflow-wrap:anywhere;min-width:0}code{overflow-wrap:anywhere;font-size:0.9em}"
    ".bad{color:#c62828;font-weight:600}"
    "@media (max-width:600px){dl{grid-template-columns:1fr}dt{font-weight:600;margin-top:0.4em}}"
)


def _dl(rows: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _e(v: Any) -> str:
    return html.escape(str(v))


def render_html(ev: dict[str, Any]) -> str:
    """The certificate page a data-protection officer reads: the outcome and the numbers that
    decide it first, then what was asked, what was tried and done, and what was measured. Laid
    out as label/value lists that wrap on a 390 px phone (nothing clipped, no sideways scroll)."""
    req, m = ev["request"], ev["method"]
    outcome = ev.get("outcome", "")
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><meta name='viewport' "
        f"content='width=device-width, initial-scale=1'><title>Deletion request {_e(req['id'])}</title>"
        f"<style>{_CSS}</style></head><body><h1>Deletion request {_e(req['id'])}</h1>"
    ]
    head, _, rest = ev["verdict"].partition(" — ")
    parts.append(f"<div class='outcome {_e(outcome.replace(' ', '-'))}'><b>{_e(head)}</b><br>{_e(rest)}</div>")
    ids = req.get("ids", {})
    asked = [
        ("request id", _e(req["id"])),
        ("received (UTC)", _e(req["received_at"])),
        ("rows to forget", _e(ids.get("count", "–"))),
        (ids.get("what", "SHA-256 of the sorted ids"), f"<code>{_e(ids.get('sha256', '–'))}</code>"),
    ]
    if ids.get("classes_touched"):
        asked.append(("classes they belong to", _e(", ".join(f"{k} ({v})" for k, v in ids["classes_touched"].items()))))
    for key, label in (
        ("duplicates_removed", "duplicate ids in the request (removed)"),
        ("already_forgotten", "ids already forgotten by an earlier request (not repeated)"),
        ("never_trained_on", "ids the model's own training left out (nothing to forget)"),
    ):
        if ids.get(key):
            asked.append((label, _e(", ".join(map(str, ids[key][:20])))))
    if ids.get("excluded_from_retain"):
        asked.append(
            ("rows kept out of the retain set (forgotten before, or never trained on)", _e(ids["excluded_from_retain"]))
        )
    for prov in req.get("reference_provenance", []):
        asked.append(("retrained reference", _e(prov)))
    parts += ["<h2>What was asked</h2>", _dl(asked)]
    done = [
        (
            "method",
            f"<code>{_e(m['name'])}</code> "
            f"({'exact: provably no influence of the rows left' if m.get('exact') else 'approximate'})",
        ),
        (
            "chosen by",
            _e({"policy": "the policy", "guard": "the guard (the fallback)"}.get(m["chosen_by"], "the user"))
            + (f", after {m['rolled_back_before']} attempt(s) were rolled back" if m.get("rolled_back_before") else ""),
        ),
        ("why", _e(m.get("reason") or "–")),
        ("paper", _e(m.get("reference") or "–")),
    ]
    if m.get("derived"):
        d = m["derived"]
        done.append(
            (
                "settings derived from this model",
                _e(
                    f"{d.get('rule', '')}: ρ = {d.get('rho')}, ‖θ‖ = "
                    f"{d.get('weight_norm', 0):.4g}, ‖∇L‖ = "
                    f"{d.get('grad_norm', 0):.4g} → η = {d.get('lr', 0):.4g}"
                ),
            )
        )
    done += [
        ("configuration", _e(", ".join(f"{k}={v}" for k, v in m["config"].items()) or "–")),
        ("data the method read", _e(", ".join(ev.get("splits_read", [])) or "none")),
        ("wall time (all attempts)", _e(f"{ev['wall_seconds']:.2f} s")),
        ("model before (SHA-256 of the weights)", f"<code>{_e(ev['models']['original_sha256'])}</code>"),
        ("model after (SHA-256 of the weights)", f"<code>{_e(ev['models']['unlearned_sha256'])}</code>"),
        ("dataset fingerprint", f"<code>{_e(ev['data'].get('fingerprint', '–'))}</code>"),
        ("library", _e(", ".join(f"{k} {v}" for k, v in ev["library"].items()))),
    ]
    rec = ev.get("recipe") or {}
    if rec:
        done.append(
            (
                "training recipe (retraining, fine-tuning)",
                _e(
                    f"{rec.get('source', '–')}; retraining: {rec.get('retraining', '–')}; model factory: "
                    f"{rec.get('model_factory', '–')}"
                ),
            )
        )
    if ev.get("ledger"):
        kept = (
            "as salted hashes (HMAC-SHA256 under the operator’s secret)"
            if ev["ledger"].get("ids") == "salted"
            else "as given"
        )
        done.append(("ledger", _e(f"{ev['ledger']['entries']} request(s) in this lineage; ids kept {kept}")))
    parts += ["<h2>What was done</h2>", _dl(done)]
    if len(ev.get("attempts", [])) > 1 or any(not a["passed"] for a in ev.get("attempts", [])):
        parts.append("<h2>Every attempt</h2>")
        for i, a in enumerate(ev["attempts"], 1):
            fails = "".join(f"<br><span class='bad'>✗ {_e(w)}</span>" for w in a["failures"])
            parts.append(
                _dl(
                    [
                        (
                            f"attempt {i}",
                            f"<code>{_e(a['method'])}</code> — "
                            f"{'delivered' if a['passed'] else 'rolled back'}, "
                            f"{a['seconds']:.2f} s, {a['steps']} step(s){fails}",
                        )
                    ]
                )
            )
    tol = ev.get("tolerance", {})
    meas = []
    names = {
        "forget": "forget rows",
        "retain": "retain rows",
        "heldout": "held-out rows",
        "heldout_forgotten": "held-out rows of the forgotten class(es)",
    }
    for split, label in names.items():
        b, a = ev["before"].get(split, {}), ev["after"].get(split, {})
        if b.get("n"):
            t = tol.get(split)
            tt = f"; tolerance ±{100 * t['accuracy']:.2f} points" if t else ""
            meas.append(
                (
                    f"{label} ({b['n']:,})",
                    _e(
                        f"accuracy {_pct(b.get('accuracy'))} → {_pct(a.get('accuracy'))}"
                        f"{tt}; loss {_num(b.get('loss'))} → {_num(a.get('loss'))} nats"
                    ),
                )
            )
    for w in ev.get("utility_violations", []):
        meas.append(("utility lost", f"<span class='bad'>{_e(w)}</span>"))
    d = ev.get("data", {})
    note = []
    if d.get("retain_rows_measured", 0) < d.get("retain_rows_total", 0):
        note.append(
            f"retain figures on a seeded sample of {d['retain_rows_measured']:,} of {d['retain_rows_total']:,} rows"
        )
    if d.get("validation_rows"):
        note.append(
            f"the method read {d['validation_rows']:,} other held-out rows ({d.get('validation_source', 'given')})"
        )
    if note:
        meas.append(("note", _e("; ".join(note))))
    parts += ["<h2>What was measured (doing nothing is the “before”)</h2>", _dl(meas)]
    cl = ev.get("classes")
    if cl:
        rows = [
            (
                f"forgotten class {c}",
                _e(
                    f"held-out accuracy {_pct(v['before'])} → {_pct(v['after'])}"
                    + (f" (retrained reference {_pct(v['reference'])})" if "reference" in v else "")
                ),
            )
            for c, v in cl["forgotten"].items()
        ]
        rows += [
            (f"retained class {c}", _e("–" if v is None else f"{v:+.1f} points"))
            for c, v in cl["retained_change_points"].items()
        ]
        parts += ["<h2>Classes</h2>", _dl(rows)]
    mem = ev["membership"]
    power = ev.get("audit_power") or {}
    aud = [
        ("can the audit see these rows?", _e(("yes — " if power.get("has_power") else "no — ") + power.get("why", "")))
    ]
    for role in ("original", "unlearned", "retrained"):
        a = mem.get(role)
        if a and a.get("available"):
            reading = a["level"] if (role != "original" or power.get("has_power")) else "not separated"
            aud.append((f"population audit, {role}", _e(f"AUC {_ci(a)} — {reading}")))
    pe = mem.get("per_example") or {}
    for role in ("original", "unlearned", "retrained"):
        a = pe.get(role) or {}
        if a.get("available"):
            reading = a["level"] if (role != "original" or power.get("has_power")) else "not separated"
            aud.append(
                (
                    f"per-example audit (offline LiRA), {role}",
                    _e(f"AUC {_ci(a)}, TPR at 1 % FPR {a['tpr_at_1pct_fpr']:.3f} — {reading}"),
                )
            )
    if mem.get("vs_reference"):
        aud.append(("against the retrained reference", _e(mem["vs_reference"])))
    parts += [
        "<h2>Membership audit</h2>",
        _dl(aud),
        "<p>A membership audit can show that rows are still recognisable; when it cannot separate even the "
        "original from data it never saw, it can prove nothing about the result. Only an exact method "
        "(retraining, SISA) guarantees that no influence is left.</p>",
    ]
    if ev.get("reference"):
        r = ev["reference"]
        rows = [
            (
                "gap to the retrained reference",
                _e(
                    f"{r['avg_gap_points']:.2f} points (the study's Avg. gap: forget, "
                    "retain and test accuracy, MIA-efficacy)"
                ),
            ),
            ("doing nothing", _e(f"{r['doing_nothing_gap_points']:.2f} points")),
        ]
        if r.get("noise_floor_points") is not None:
            rows.append(("two references apart (noise floor)", _e(f"{r['noise_floor_points']:.2f} points")))
        rows.append(("reference weights", f"<code>{_e(r['sha256'])}</code>"))
        for prov in req.get("reference_provenance", []):
            rows.append(("is it a retrained reference?", _e(prov)))
        parts += ["<h2>Against a model retrained without the rows</h2>", _dl(rows)]
    parts.append("</body></html>")
    return "\n".join(parts)
