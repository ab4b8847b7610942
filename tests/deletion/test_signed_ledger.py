"""A lineage anchored by the operator's key: the head of the ledger, signed inside model.json, so
that emptying, truncating, re-hashing or deleting the ledger, stripping the model's lineage, or
editing evidence.html or model.json is detected by `ledger verify --key` — and a forger without the
key cannot make a chain that verifies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from obliviate.cli import main
from obliviate.deletion import ledger, signing

pytestmark = pytest.mark.fault


@pytest.fixture(scope="module")
def lineage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A digits checkpoint, the operator's Ed25519 key, and two signed requests on it (u1, u2)."""
    d = tmp_path_factory.mktemp("signed")
    args = ["train", "--dataset", "digits", "--model", "small_cnn", "--width", "0.5", "--epochs", "3"]
    assert main([*args, "--out", str(d / "m0"), "-q"]) == 0
    assert main(["keygen", str(d / "keys" / "operator")]) == 0
    key = d / "keys" / "operator"
    for i, (src, ids) in enumerate([(d / "m0", range(0, 20)), (d / "u1", range(20, 30))], 1):
        (d / f"r{i}.txt").write_text("".join(f"{j}\n" for j in ids))
        cmd = ["unlearn", str(src), "--forget", f"ids:{d / f'r{i}.txt'}", "--method", "finetune", "--set", "epochs=1"]
        assert main([*cmd, "--signing-key", str(key), "--out", str(d / f"u{i}")]) == 0
    return {"dir": d, "key": key, "pub": d / "keys" / "operator.pub", "u1": d / "u1", "u2": d / "u2"}


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def _verify(folder: Path, key: Path | None, capsys: Any) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["ledger", "verify", str(folder), *(["--key", str(key)] if key else [])])
    return rc, capsys.readouterr().out


def test_keys_are_made_once_and_read_back(tmp_path: Path, capsys: Any) -> None:
    key, pub = signing.generate(tmp_path / "k")
    assert key.stat().st_mode & 0o777 == 0o600 and pub is not None and b"PUBLIC KEY" in pub.read_bytes()
    sk, pk = signing.load_key(key), signing.load_key(pub)
    assert sk.can_sign and not pk.can_sign and sk.key_id == pk.key_id and pk.verifies(b"x", sk.sign(b"x"))
    with pytest.raises(signing.SigningKeyError, match="already exists: a key is never overwritten"):
        signing.generate(tmp_path / "k")
    with pytest.raises(signing.SigningKeyError, match="is a public key"):
        signing.signing_key(pub)
    (tmp_path / "junk").write_text("not a key")
    with pytest.raises(signing.SigningKeyError, match="is not an obliviate ledger key"):
        signing.load_key(tmp_path / "junk")
    h, none = signing.generate(tmp_path / "h", "hmac-sha256")
    hk = signing.load_key(h)
    assert none is None and hk.can_sign and hk.verifies(b"x", hk.sign(b"x")) and not hk.verifies(b"y", hk.sign(b"x"))
    assert main(["keygen", str(tmp_path / "k")]) == 2 and "never overwritten" in capsys.readouterr().err


def test_a_signed_lineage_verifies_under_the_operators_public_key(lineage: dict[str, Path], capsys: Any) -> None:
    rc, out = _verify(lineage["u2"], lineage["pub"], capsys)
    assert rc == 0 and "2 request(s)" in out and "head signed by key" in out, out
    head = signing.read_head(lineage["u2"])
    assert head is not None and head["entries"] == 2 and head["first_signed_entry"] == 0
    assert set(head["files"]) == {"model.safetensors", "model.json", "evidence.json", "evidence.html", "ledger.jsonl"}
    entries = ledger.read(lineage["u2"] / "ledger.jsonl")
    assert all(e["key_id"] == head["key_id"] for e in entries)
    ev = json.loads((lineage["u2"] / "evidence.json").read_text())
    assert ev["ledger"]["signed_by"] == head["key_id"]
    # without the key the files still match their head, but the CLI says the signature was not checked
    rc, out = _verify(lineage["u2"], None, capsys)
    assert rc == 0 and "signature NOT checked" in out


def _rehash(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a forger does after dropping entries: rebuild the chain so every hash matches again."""
    chain: list[dict[str, Any]] = []
    for e in entries:
        chain = ledger.extended(
            chain, {k: v for k, v in e.items() if k not in ("index", "prev_sha256", "entry_sha256")}
        )
    return chain


def _strip(folder: Path) -> None:
    meta = json.loads((folder / "model.json").read_text())
    for k in ("unlearned", signing.HEAD_FIELD):
        meta.pop(k, None)
    (folder / "model.json").write_text(json.dumps(meta))


def test_every_rewrite_is_detected_under_the_key(lineage: dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    u2, pub = lineage["u2"], lineage["pub"]
    cases: dict[str, str] = {}

    emptied = _copy(u2, tmp_path / "emptied")
    (emptied / "ledger.jsonl").write_text("")
    cases["emptied"] = "ledger was emptied"

    truncated = _copy(u2, tmp_path / "truncated")  # the first request dropped, the rest re-hashed
    kept = _rehash(ledger.read(truncated / "ledger.jsonl")[1:])
    ledger.write(truncated / "ledger.jsonl", kept)
    cases["truncated"] = "ledger entries"

    resigned = _copy(truncated, tmp_path / "resigned")  # ... and the head re-signed with the forger's own key
    forger = signing.load_key(signing.generate(tmp_path / "forger")[0])
    signing.sign_folder(resigned, kept, forger, 0)
    cases["resigned"] = "not by key"

    spoofed = _copy(resigned, tmp_path / "spoofed")  # ... claiming the operator's key id
    meta = json.loads((spoofed / "model.json").read_text())
    meta[signing.HEAD_FIELD]["key_id"] = signing.load_key(pub).key_id
    (spoofed / "model.json").write_text(json.dumps(meta))
    cases["spoofed"] = "signature does not verify"

    deleted = _copy(u2, tmp_path / "deleted")  # the ledger deleted and the model's lineage stripped
    (deleted / "ledger.jsonl").unlink()
    _strip(deleted)
    cases["deleted"] = "no signed ledger head"

    page = _copy(u2, tmp_path / "page")
    (page / "evidence.html").write_text((page / "evidence.html").read_text() + "<p>verified by the auditor</p>")
    cases["page"] = "evidence.html is not the file the signed head covers"

    meta_edit = _copy(u2, tmp_path / "meta_edit")
    meta = json.loads((meta_edit / "model.json").read_text())
    meta["note"] = "retrained from scratch"
    (meta_edit / "model.json").write_text(json.dumps(meta))
    cases["meta_edit"] = "model.json is not the file the signed head covers"

    for name, why in cases.items():
        rc, out = _verify(tmp_path / name, pub, capsys)
        assert rc == 1 and why in out, (name, out)
    # the forger's own rewrite passes the unkeyed check: only the key tells it apart
    assert _verify(resigned, None, capsys)[0] == 0
    # and the original passes under the key, the forger's key does not pass it
    assert _verify(u2, pub, capsys)[0] == 0
    assert _verify(u2, tmp_path / "forger.pub", capsys)[0] == 1


def test_an_anchored_lineage_is_extended_only_under_its_key(
    lineage: dict[str, Path], tmp_path: Path, capsys: Any
) -> None:
    d, u2 = lineage["dir"], lineage["u2"]
    ids = tmp_path / "r.txt"
    ids.write_text("40\n41\n")
    cmd = ["unlearn", str(u2), "--forget", f"ids:{ids}", "--method", "finetune", "--set", "epochs=1"]
    capsys.readouterr()
    assert main([*cmd, "--out", str(tmp_path / "a")]) == 2
    assert "is anchored" in capsys.readouterr().err and not (tmp_path / "a").exists()
    other = signing.generate(tmp_path / "other")[0]
    assert main([*cmd, "--signing-key", str(other), "--out", str(tmp_path / "b")]) == 2
    assert "not by key" in capsys.readouterr().err and not (tmp_path / "b").exists()
    stripped = _copy(u2, tmp_path / "stripped")  # the head stripped, the signed entries kept
    meta = json.loads((stripped / "model.json").read_text())
    meta.pop(signing.HEAD_FIELD)
    (stripped / "model.json").write_text(json.dumps(meta))
    cmd[1] = str(stripped)
    assert main([*cmd, "--signing-key", str(lineage["key"]), "--out", str(tmp_path / "c")]) == 2
    assert "were written under a signing key but the folder has no signed head" in capsys.readouterr().err
    emptied = _copy(u2, tmp_path / "emptied")
    (emptied / "ledger.jsonl").write_text("")
    cmd[1] = str(emptied)
    assert main([*cmd, "--signing-key", str(lineage["key"]), "--out", str(tmp_path / "e")]) == 2
    assert "holds no entries: it was emptied" in capsys.readouterr().err
    # under its key the lineage goes on, and the new head covers all three requests
    cmd[1] = str(u2)
    assert main([*cmd, "--signing-key", str(lineage["key"]), "--out", str(tmp_path / "u3")]) == 0
    assert _verify(tmp_path / "u3", lineage["pub"], capsys)[0] == 0
    assert (signing.read_head(tmp_path / "u3") or {})["entries"] == 3
    assert d.is_dir()


def test_an_unsigned_lineage_says_it_is_unanchored(lineage: dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    ids = tmp_path / "r.txt"
    ids.write_text("50\n")
    m0 = lineage["dir"] / "m0"
    assert (
        main(
            [
                "unlearn",
                str(m0),
                "--forget",
                f"ids:{ids}",
                "--method",
                "finetune",
                "--set",
                "epochs=1",
                "--out",
                str(tmp_path / "u"),
            ]
        )
        == 0
    )
    rc, out = _verify(tmp_path / "u", None, capsys)
    assert rc == 0 and "UNANCHORED" in out
    rc, out = _verify(tmp_path / "u", lineage["pub"], capsys)
    assert rc == 1 and "unanchored" in out
    # an HMAC key signs and verifies with one file
    h = signing.generate(tmp_path / "h", "hmac-sha256")[0]
    cmd = ["unlearn", str(m0), "--forget", f"ids:{ids}", "--method", "finetune", "--set", "epochs=1"]
    assert main([*cmd, "--signing-key", str(h), "--out", str(tmp_path / "hm")]) == 0
    assert _verify(tmp_path / "hm", h, capsys)[0] == 0
    assert _verify(tmp_path / "hm", signing.generate(tmp_path / "h2", "hmac-sha256")[0], capsys)[0] == 1
