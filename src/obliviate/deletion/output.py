"""The folder one honoured request leaves, whichever door it came through (``obliviate.unlearn(...,
out=DIR)`` or ``obliviate unlearn ... --out DIR``): ``model.safetensors`` + ``model.json``,
``evidence.json``, ``evidence.html`` and ``ledger.jsonl``.

The folder is checked before any work (it must not exist; its parent must be a writable folder),
written under a temporary name beside it and renamed into place, so it appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..models import read_meta
from ..utils import write_json_atomic, write_text_atomic
from . import ledger
from .evidence import render_html


class OutputError(ValueError):
    """The output folder cannot be written; the message says why and what to do."""


def check_out(out: str | Path) -> Path:
    """``out`` as a path, refused before any work when it exists or its parent is not a writable folder."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise OutputError(f"{out} already exists: give each unlearned model its own new output folder")
    parent = out.parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot create {out}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create {out}: {probe} is not writable by this user")
    return out


def write_output(
    out: Path,
    *,
    save_model: Callable[[Path], object],
    evidence: dict[str, Any],
    entries: list[dict[str, Any]],
    entry: dict[str, Any],
    extra: Callable[[Path], dict[str, Any]] | None = None,
    render: Callable[[dict[str, Any]], str] | None = None,
    model_sha256: str | None = None,
) -> Path:
    """Write the request's folder: the model (``save_model(tmp / "model")``), the evidence with the
    saved weights' hash, and the ledger with ``entry`` chained onto ``entries``. ``extra(tmp)``
    may write more (a SISA shard state) and returns fields for the ledger entry; ``render`` turns
    the evidence into its page (default: a classifier's, :func:`obliviate.deletion.evidence.render_html`).
    ``model_sha256``: the unlearned weights' hash when ``save_model`` writes no checkpoint of them
    (a language model's LoRA adapter: the hash of the model the adapter makes of its base)."""
    out = check_out(out)
    made_parent = not out.parent.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    done = False
    try:
        save_model(tmp / "model")
        after = model_sha256 if model_sha256 is not None else read_meta(tmp / "model")["sha256"]
        evidence["models"]["unlearned_sha256"] = after
        evidence["ledger"] = {"entries": len(entries) + 1, "ids": entry.get("ids_form", "plain")}
        entry = {**entry, "model_after": after, **(extra(tmp) if extra is not None else {})}
        write_json_atomic(tmp / "evidence.json", evidence)
        write_text_atomic(tmp / "evidence.html", (render or render_html)(evidence))
        entry["evidence_sha256"] = ledger.file_sha256(tmp / "evidence.json")
        ledger.write(tmp / "ledger.jsonl", ledger.extended(entries, entry))
        os.rename(tmp, out)  # the folder appears whole, or not at all
        done = True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if not done and made_parent:
            with contextlib.suppress(OSError):
                out.parent.rmdir()  # only the folder this call made, and only when empty
    return out


def ledger_ids(ids: list[int] | list[str], form: str, salt: str | None) -> dict[str, Any]:
    """The ids as the ledger keeps them: ``plain``, or ``salted`` (HMAC-SHA256 of each id under the
    operator's secret ``salt``: nobody without it can test whether an id is in the ledger)."""
    if form == "plain":
        return {"ids": list(ids), "ids_form": "plain"}
    if form != "salted":
        raise OutputError(f"ledger ids must be 'plain' or 'salted', got {form!r}")
    if not salt:
        raise OutputError(
            "salted ledger ids need a secret salt: set OBLIVIATE_LEDGER_SALT (keep it apart from the "
            "ledger; without it nobody, you included, can tell which ids were forgotten)"
        )
    return {"ids": [], "ids_hmac": [ledger.salted(i, salt) for i in ids], "ids_form": "salted"}


def write_user_output(
    out: str | Path,
    res: Any,
    *,
    num_classes: int,
    forget_ids: list[Any],
    ledger_form: str,
    fingerprint: str,
    salt: str | None = None,
) -> Path:
    """The folder of a request made through :func:`obliviate.unlearn` on the user's own model:
    the checkpoint records the architecture's class (rebuild it with ``--model-factory``)."""
    from ..models.checkpoint import save_state

    ev = res.evidence
    model = res.model
    spec = getattr(model, "obliviate_spec", None) or {
        "name": f"factory:{type(model).__module__}:{type(model).__qualname__}",
        "num_classes": num_classes,
    }
    entry = {
        "request_id": ev["request"]["id"],
        "received_at": ev["request"]["received_at"],
        **ledger_ids(forget_ids, ledger_form, salt),
        "ids_sha256": ev["request"]["ids"]["sha256"],
        "method": ev["method"]["name"],
        "exact": ev["method"]["exact"],
        "outcome": ev["outcome"],
        "model_before": ev["models"]["original_sha256"],
    }
    meta = {
        "dataset_fingerprint": fingerprint,
        "unlearned": {
            "request_id": entry["request_id"],
            "method": entry["method"],
            "parent_sha256": entry["model_before"],
        },
        "recipe": ev.get("recipe"),
    }
    return write_output(
        Path(out),
        save_model=lambda p: save_state(p, model.state_dict(), meta, spec=spec),
        evidence=ev,
        entries=[],
        entry=entry,
    )
