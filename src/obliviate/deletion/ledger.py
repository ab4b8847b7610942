"""An append-only, hash-chained ledger per model lineage (JSON lines).

Each entry records one deletion request: its id and time, the ids' count and SHA-256, the
method, the SHA-256 of the weights before and after, the hash of the previous entry
(``prev_sha256``; ``"genesis"`` for the first) and its own hash (``entry_sha256``, over every
other field). The ledger travels with the model: ``DIR/ledger.jsonl`` beside ``DIR/model.*``,
each later request copying its parent's entries and appending one.

:func:`verify` detects an edited entry (its hash no longer matches), a removed or reordered
entry (the chain breaks: a ``prev_sha256`` or a ``model_before`` that does not continue the
previous entry), a swapped model file (the last entry's ``model_after`` is not the weights'
hash), an edited ``evidence.json`` and a swapped SISA shard state (their hashes are in the entry).
It proves integrity of the record, not that unlearning worked — that is the evidence's job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..utils import file_sha256, stable_hash, write_text_atomic

GENESIS = "genesis"


class LedgerError(RuntimeError):
    """A ledger is unreadable or does not verify."""


def entry_hash(entry: dict[str, Any]) -> str:
    return stable_hash({k: v for k, v in entry.items() if k != "entry_sha256"}, length=64)


def read(path: str | Path) -> list[dict[str, Any]]:
    """The entries of ``path`` (none when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    entries = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError as err:
            raise LedgerError(f"{path}:{n} is not a JSON ledger entry ({err})") from None
        if not isinstance(e, dict):
            raise LedgerError(f"{path}:{n} is not a JSON object")
        entries.append(e)
    return entries


def extended(entries: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """``entries`` with ``entry`` chained on (``prev_sha256`` and ``entry_sha256`` filled in)."""
    prev = entries[-1]["entry_sha256"] if entries else GENESIS
    e = {**entry, "index": len(entries), "prev_sha256": prev}
    e["entry_sha256"] = entry_hash(e)
    return [*entries, e]


def write(path: str | Path, entries: list[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))


def salted(i: Any, salt: str) -> str:
    """HMAC-SHA256 of one id under the operator's secret salt (hex)."""
    import hashlib
    import hmac

    return hmac.new(salt.encode(), str(i).encode(), hashlib.sha256).hexdigest()


def forgotten_ids(entries: list[dict[str, Any]], universe: Any = None, salt: str | None = None) -> set[int]:
    """Every sample id forgotten by any request of the lineage. Entries that keep their ids
    salted (``ids_hmac``) are matched against ``universe`` (the training ids) under ``salt``."""
    plain = {int(i) for e in entries for i in e.get("ids", [])}
    hashed = {h for e in entries for h in e.get("ids_hmac", [])}
    if hashed:
        if not salt:
            raise LedgerError(
                "this lineage keeps its ids as salted hashes: set OBLIVIATE_LEDGER_SALT to the salt "
                "they were written with, or the ids forgotten before would return to the retain set"
            )
        found = {int(i) for i in (universe if universe is not None else []) if salted(int(i), salt) in hashed}
        if len(found) < len(hashed):
            raise LedgerError(
                f"{len(hashed) - len(found)} salted id(s) in the ledger match no training id under this "
                "salt: OBLIVIATE_LEDGER_SALT is not the one the ledger was written with"
            )
        plain |= found
    return plain


def check_request_id(entries: list[dict[str, Any]], request_id: str | None) -> None:
    """A request id names one request of a lineage: one the ledger already holds is refused."""
    at = [e.get("index") for e in entries if request_id is not None and e.get("request_id") == request_id]
    if at:
        raise LedgerError(
            f"request id {request_id!r} is already entry {at[0]} of this lineage's ledger: request ids name one "
            "request each (give another --request-id, or none for a generated one)"
        )


def verify(folder: str | Path, key: Any = None) -> list[str]:
    """Problems found in ``folder/ledger.jsonl`` against ``folder/model.safetensors`` (or, for a
    language model's adapter-only output, ``adapter_model.safetensors``; an empty list: the ledger
    verifies). With ``key`` (the operator's :class:`~obliviate.deletion.signing.Key`, public or
    private), the folder's head must also be signed by it and be the head of the ledger and files
    (:func:`~obliviate.deletion.signing.check_head`): what a rewrite of the files cannot forge."""
    from .signing import check_head

    folder = Path(folder)
    path = folder / "ledger.jsonl"
    try:
        entries = read(path) if path.is_file() else []
    except LedgerError as err:
        entries = []
        problems = [str(err)]
    else:
        problems = [] if path.is_file() else [f"no ledger at {path}"]
    if path.is_file() and not entries and not problems:
        problems.append(f"{path} has no entries")
    problems += check_head(folder, entries, key)
    if not entries:
        return problems
    prev_hash: str | None = GENESIS
    prev_after: str | None = None
    for i, e in enumerate(entries):
        if e.get("index") != i:
            problems.append(f"entry {i}: its index is {e.get('index')!r}: an entry was removed, added or moved")
        if e.get("entry_sha256") != entry_hash(e):
            problems.append(
                f"entry {i} (request {e.get('request_id')!r}) was edited: its hash does not match its content"
            )
        if e.get("prev_sha256") != prev_hash:
            problems.append(
                f"entry {i}: prev_sha256 does not continue the chain: an entry before it was removed or changed"
            )
        if prev_after is not None and e.get("model_before") != prev_after:
            problems.append(f"entry {i}: model_before is not the previous request's model_after")
        prev_hash, prev_after = e.get("entry_sha256"), e.get("model_after")
    last = entries[-1]
    evidence = folder / "evidence.json"
    if last.get("evidence_sha256") and (not evidence.is_file() or file_sha256(evidence) != last["evidence_sha256"]):
        problems.append(
            f"{evidence} is not the evidence the last request wrote (its SHA-256 differs): edited or swapped"
        )
    if last.get("sisa_plan_sha256"):
        plan = folder / "model.sisa" / "plan.json"
        if not plan.is_file() or file_sha256(plan) != last["sisa_plan_sha256"]:
            problems.append(f"{plan} is not the SISA shard state the last request wrote: swapped or edited")
    if last.get("adapter_sha256"):  # a language model's adapter-only output: the adapter is what was written
        adapter = folder / "adapter_model.safetensors"
        if not adapter.is_file():
            problems.append(f"no adapter at {adapter}")
        elif file_sha256(adapter) != last["adapter_sha256"]:
            problems.append(
                f"{adapter} is not the adapter the last request wrote (its SHA-256 differs): swapped or edited"
            )
        return problems
    weights = folder / "model.safetensors"
    if not weights.is_file():
        problems.append(f"no model at {weights}")
    elif file_sha256(weights) != entries[-1].get("model_after"):
        problems.append(
            f"{weights} is not the model the last request produced (its SHA-256 differs): swapped or edited"
        )
    return problems
