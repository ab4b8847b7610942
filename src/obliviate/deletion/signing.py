"""The operator's key that anchors a lineage's ledger: a signed chain head in the model's metadata.

A hash chain shows that a ledger was not edited *inside* — but anyone who can write the files can
empty it, drop its first entries and re-hash the rest, or delete it and strip the model's lineage.
The remedy of append-only logs (Certificate Transparency's signed tree head, Sigstore's
transparency log, TUF's signed metadata) is a signature by a key the writer alone holds over the
log's head. Here: every request written with a key records a *head* — the number of entries, the
last entry's hash, and the SHA-256 of every file of the folder (the weights or adapter, the
evidence and its page, the ledger, the model's metadata) — and signs it; the head is kept in
``model.json`` (``ledger_head``; ``ledger_head.json`` beside an adapter, which has no
``model.json``). :func:`check_head` with the operator's key then rejects a folder whose head is
missing (unanchored or stripped), not signed by that key, or not the head of the files beside it.

Keys (``obliviate keygen``): Ed25519 (``cryptography``; the private key signs, the ``.pub`` file
verifies, so verifiers need no secret) or an HMAC-SHA256 secret (one file both signs and verifies).
A signing key comes from ``signing_key=`` / ``--signing-key PATH`` or ``$OBLIVIATE_LEDGER_KEY``.

What it does not do: a folder replaced whole by an *older* folder of the same lineage is genuinely
signed; catching that rollback needs the latest head kept elsewhere (compare ``entries``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils import file_sha256

HEAD_FORMAT = "obliviate-ledger-head/1"
HMAC_PREFIX = "obliviate-hmac-sha256:"
KEY_ENV = "OBLIVIATE_LEDGER_KEY"
HEAD_FIELD = "ledger_head"  # in model.json
HEAD_FILE = "ledger_head.json"  # beside an adapter-only output, which has no model.json


class SigningKeyError(ValueError):
    """A key file that cannot be read as a signing or verifying key; the message says which kind is expected."""


@dataclass(frozen=True)
class Key:
    """A signing key (``private``) or a verifying key (``public`` only; for HMAC one secret is both)."""

    algorithm: str  # "ed25519" or "hmac-sha256"
    key_id: str  # the first 16 hex digits of the SHA-256 of the public key (of the secret, for HMAC)
    private: Any = None  # Ed25519PrivateKey, or the HMAC secret's bytes
    public: Any = None  # Ed25519PublicKey, or the HMAC secret's bytes

    @property
    def can_sign(self) -> bool:
        return self.private is not None

    def sign(self, payload: bytes) -> str:
        if self.private is None:
            raise SigningKeyError(f"key {self.key_id} is a public key: it verifies heads but cannot sign them")
        if self.algorithm == "hmac-sha256":
            return hmac.new(self.private, payload, hashlib.sha256).hexdigest()
        return str(self.private.sign(payload).hex())

    def verifies(self, payload: bytes, signature: str) -> bool:
        if self.algorithm == "hmac-sha256":
            return hmac.compare_digest(hmac.new(self.public, payload, hashlib.sha256).hexdigest(), signature)
        from cryptography.exceptions import InvalidSignature

        try:
            self.public.verify(bytes.fromhex(signature), payload)
        except (InvalidSignature, ValueError):
            return False
        return True


def _ed25519_id(public: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _hmac_key(secret: bytes) -> Key:
    kid = hashlib.sha256(b"hmac:" + secret).hexdigest()[:16]
    return Key("hmac-sha256", kid, private=secret, public=secret)


def generate(path: str | Path, algorithm: str = "ed25519") -> tuple[Path, Path | None]:
    """Write a new key: ``path`` (the signing key, mode 0600) and, for Ed25519, ``path.pub`` (the
    verifying key, for anyone who checks the ledgers). Refuses to overwrite. Returns both paths."""
    path = Path(path)
    if algorithm not in ("ed25519", "hmac-sha256"):
        raise SigningKeyError(f"key algorithm must be 'ed25519' or 'hmac-sha256', got {algorithm!r}")
    pub = path.with_name(path.name + ".pub") if algorithm == "ed25519" else None
    for p in (path, pub):
        if p is not None and (p.exists() or p.is_symlink()):
            raise SigningKeyError(f"{p} already exists: a key is never overwritten (choose another path)")
    if algorithm == "hmac-sha256":
        blob = (HMAC_PREFIX + secrets.token_hex(32) + "\n").encode()
    else:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        sk = Ed25519PrivateKey.generate()
        blob = sk.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    if pub is not None:
        pub.write_bytes(
            sk.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return path, pub


def load_key(path: str | Path) -> Key:
    """A key file written by :func:`generate`: an Ed25519 private key (signs and verifies), its
    ``.pub`` (verifies only) or an HMAC secret (both)."""
    path = Path(path)
    if not path.is_file():
        raise SigningKeyError(
            f"key file {path} does not exist or is not a regular file (make one with `obliviate keygen`)"
        )
    blob = path.read_bytes()
    if blob.startswith(HMAC_PREFIX.encode()):
        hexed = blob[len(HMAC_PREFIX) :].strip().decode(errors="replace")
        try:
            secret = bytes.fromhex(hexed)
        except ValueError:
            secret = b""
        if len(secret) < 16:
            raise SigningKeyError(f"{path} is not an HMAC key: it needs at least 16 bytes of hex after {HMAC_PREFIX!r}")
        return _hmac_key(secret)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    try:
        if b"PRIVATE KEY" in blob:
            sk = serialization.load_pem_private_key(blob, password=None)
            if isinstance(sk, Ed25519PrivateKey):
                return Key("ed25519", _ed25519_id(sk.public_key()), private=sk, public=sk.public_key())
        elif b"PUBLIC KEY" in blob:
            pk = serialization.load_pem_public_key(blob)
            if isinstance(pk, Ed25519PublicKey):
                return Key("ed25519", _ed25519_id(pk), public=pk)
    except (ValueError, TypeError):
        pass
    raise SigningKeyError(
        f"{path} is not an obliviate ledger key: expected an Ed25519 key in PEM (private to sign, .pub to "
        f"verify) or an HMAC secret ({HMAC_PREFIX}<hex>), as `obliviate keygen` writes"
    )


def signing_key(given: str | Path | Key | None) -> Key | None:
    """The key to sign with: ``given`` (a path or a :class:`Key`), else ``$OBLIVIATE_LEDGER_KEY``, else none."""
    if isinstance(given, Key):
        key = given
    elif given is not None:
        key = load_key(given)
    elif os.environ.get(KEY_ENV):
        key = load_key(os.environ[KEY_ENV])
    else:
        return None
    if not key.can_sign:
        raise SigningKeyError(
            f"key {key.key_id} is a public key (.pub): signing needs the private key it was made with"
        )
    return key


def lineage_anchor(folder: str | Path, entries: list[dict[str, Any]], key: Key | None) -> list[str]:
    """Why the lineage in ``folder`` may not be extended with ``key`` (empty: it may). An anchored
    lineage (a signed head) is extended only under the key that signed it, and only when its head
    is the head of its ledger and files; a ledger whose entries were written under a key but whose
    head is gone was stripped. An unanchored lineage may be extended with or without a key (from
    then on, anchored)."""
    try:
        head = read_head(folder)
    except ValueError as e:
        return [f"{folder}: model.json or {HEAD_FILE} is not readable JSON ({e})"]
    if head is None:
        signed = [e.get("index") for e in entries if e.get("key_id")]
        if signed:
            return [
                f"{folder}: ledger entries {signed} were written under a signing key but the folder has no "
                "signed head: it was stripped from model.json"
            ]
        return []
    if key is None:
        return [
            f"{folder}'s lineage is anchored (its head is signed by key {head.get('key_id')}): give that "
            f"key (--signing-key PATH or ${KEY_ENV}) to extend it"
        ]
    return check_head(folder, entries, key)


# -- the head ----------------------------------------------------------------------------------


def _meta_sha(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != HEAD_FIELD}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _payload(head: dict[str, Any]) -> bytes:
    return json.dumps(
        {k: v for k, v in head.items() if k != "signature"}, sort_keys=True, separators=(",", ":")
    ).encode()


COVERED = (  # the files of a folder a request writes, when present (model.json: all but its head)
    *("model.safetensors", "adapter_model.safetensors", "evidence.json", "evidence.html", "ledger.jsonl"),
    *("config.json", "adapter_config.json", "generation_config.json"),
    *("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"),
)


def _files(folder: Path) -> dict[str, str]:
    files = {n: file_sha256(folder / n) for n in COVERED if (folder / n).is_file()}
    meta = folder / "model.json"
    if meta.is_file():
        files["model.json"] = _meta_sha(json.loads(meta.read_text()))
    return files


def read_head(folder: str | Path) -> dict[str, Any] | None:
    """The signed head of ``folder`` (from ``model.json``, else ``ledger_head.json``), or None."""
    folder = Path(folder)
    meta = folder / "model.json"
    if meta.is_file():
        head = json.loads(meta.read_text()).get(HEAD_FIELD)
        if head is not None:
            return dict(head)
    if (folder / HEAD_FILE).is_file():
        return dict(json.loads((folder / HEAD_FILE).read_text()))
    return None


def sign_folder(folder: Path, entries: list[dict[str, Any]], key: Key, first_signed: int) -> dict[str, Any]:
    """Record the signed head of ``folder`` (written whole, not yet renamed into place): in
    ``model.json`` when there is one, else in ``ledger_head.json``. ``first_signed``: the index of
    the lineage's first entry written under a key (the entries before it were unanchored)."""
    head: dict[str, Any] = {
        "format": HEAD_FORMAT,
        "algorithm": key.algorithm,
        "key_id": key.key_id,
        "entries": len(entries),
        "head_sha256": entries[-1]["entry_sha256"],
        "first_signed_entry": first_signed,
        "files": _files(folder),
        "signed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    head["signature"] = key.sign(_payload(head))
    meta = folder / "model.json"
    if meta.is_file():
        record = json.loads(meta.read_text())
        record[HEAD_FIELD] = head
        meta.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    else:
        (folder / HEAD_FILE).write_text(json.dumps(head, indent=2, sort_keys=True) + "\n")
    return head


def check_head(folder: str | Path, entries: list[dict[str, Any]], key: Key | None) -> list[str]:
    """Problems with ``folder``'s head against its ledger ``entries`` and files. With ``key`` (the
    operator's, public or private): the head must exist and carry that key's valid signature.
    Without: a head, if any, must still match the files (the signature is not checked)."""
    folder = Path(folder)
    try:
        head = read_head(folder)
    except ValueError as e:
        return [f"{folder}: model.json or {HEAD_FILE} is not readable JSON ({e})"]
    if head is None:
        if key is None:
            return []
        return [
            f"{folder} has no signed ledger head: its lineage is unanchored (written without a signing key), "
            "or its head was stripped from model.json"
        ]
    problems = []
    if key is not None:
        if head.get("key_id") != key.key_id or head.get("algorithm") != key.algorithm:
            problems.append(
                f"the head is signed by key {head.get('key_id')!r} ({head.get('algorithm')}), not by key {key.key_id}"
            )
        elif not key.verifies(_payload(head), str(head.get("signature", ""))):
            problems.append("the head's signature does not verify under the key: the head was forged or edited")
    if head.get("entries") != len(entries):
        problems.append(
            f"the signed head records {head.get('entries')} ledger entries, the ledger holds {len(entries)}: "
            "entries were removed, added or the ledger was emptied"
        )
    elif not entries or head.get("head_sha256") != entries[-1].get("entry_sha256"):
        problems.append("the ledger's last entry is not the signed head: the chain was rewritten")
    files = _files(folder)
    for name, digest in (head.get("files") or {}).items():
        if name not in files:
            problems.append(f"{name} is covered by the signed head but missing")
        elif files[name] != digest:
            problems.append(f"{name} is not the file the signed head covers (its SHA-256 differs): edited or swapped")
    return problems
