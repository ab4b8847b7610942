"""The folder one honoured request leaves, whichever door it came through (``obliviate.unlearn(...,
out=DIR)`` or ``obliviate unlearn ... --out DIR``): ``model.safetensors`` + ``model.json``,
``evidence.json``, ``evidence.html`` and ``ledger.jsonl``.

The folder is claimed before any work (:func:`claim_out`, :func:`claims_out`): it must not exist,
its parent must be a writable folder, and one process at a time may write it — a lock file
``.<name>.lock`` beside it, held until the request ends. The folder is written under a temporary
name beside it (``.tmp-<name>-<pid>-*``) and renamed into place, so it appears whole or not at all;
a temporary folder left by a killed process is named and removed by the next claim. Files get the
user's umask, as any other file the user writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import glob
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from safetensors import SafetensorError

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


_HELD: dict[Path, int] = {}  # output folders this process holds the lock of, with its depth
_HELD_LOCK = threading.Lock()
F = TypeVar("F", bound=Callable[..., Any])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove_stale(out: Path) -> list[Path]:
    """Remove the temporary folders a killed writer of ``out`` left (``.tmp-<name>-<pid>-*`` whose
    process is gone); called under the lock, so no live writer of ``out`` can own one."""
    removed = []
    for p in out.parent.glob(glob.escape(f".tmp-{out.name}-") + "*"):
        pid_part = p.name[len(f".tmp-{out.name}-") :].split("-", 1)[0]
        if p.is_dir() and not p.is_symlink() and pid_part.isdigit() and not _alive(int(pid_part)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


@contextlib.contextmanager
def claim_out(out: str | Path) -> Iterator[Path]:
    """Hold ``out`` for this process until the block ends: :func:`check_out`, then an exclusive
    lock on ``.<name>.lock`` beside it (a second writer is refused at once, naming the holder's
    pid), then the stale temporary folders of killed writers removed with a warning naming them.
    Re-entrant within a process; a folder the claim made for the lock is removed again when empty."""
    out = check_out(out)
    key = out.absolute()
    with _HELD_LOCK:
        if key in _HELD:
            _HELD[key] += 1
            held = True
        else:
            held = False
    if held:
        try:
            yield out
        finally:
            with _HELD_LOCK:
                _HELD[key] -= 1
        return
    made: list[Path] = []
    probe = out.parent
    while not probe.exists():
        made.append(probe)
        probe = probe.parent
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out.parent}: {e.strerror}") from None
    lock_path = out.parent / f".{out.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise OutputError(
                f"{out} is being written by another process (pid {holder}): wait for it to finish, "
                "or give this request its own output folder"
            ) from None
        if os.fstat(fd).st_ino != os.stat(lock_path).st_ino:  # the holder removed it as we opened it
            raise OutputError(f"{out} was just written by another process: give this request its own output folder")
        check_out(out)  # the previous holder may have written it meanwhile
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        for p in _remove_stale(out):
            warnings.warn(
                f"removed {p}: an unfinished write of {out.name} by a process that no longer runs", stacklevel=3
            )
        with _HELD_LOCK:
            _HELD[key] = 1
        try:
            yield out
        finally:
            with _HELD_LOCK:
                del _HELD[key]
            with contextlib.suppress(OSError):
                lock_path.unlink()
    finally:
        os.close(fd)  # releases the lock
        for d in made:  # the folders this claim made, innermost first, only when left empty
            with contextlib.suppress(OSError):
                d.rmdir()


def claims_out(fn: F) -> F:
    """Run ``fn`` holding its ``out=`` folder (:func:`claim_out`), when it is given one; an
    output folder that cannot be claimed is a :class:`~obliviate.deletion.errors.DeletionError`."""
    from .errors import DeletionError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("out") is None:
            return fn(*args, **kwargs)
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(claim_out(kwargs["out"]))
        except OutputError as e:
            raise DeletionError(str(e)) from None
        with stack:
            return fn(*args, **kwargs)

    return cast(F, wrapper)


def _umask() -> int:
    """The process's umask (read by setting it and putting it back: POSIX has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _apply_umask(root: Path) -> None:
    """Give ``root`` and what is under it the modes the user's umask allows (a temporary folder
    and its files are made 0700 / 0600)."""
    mask = _umask()
    for d, _dirs, files in os.walk(root):
        os.chmod(d, 0o777 & ~mask)
        for f in files:
            os.chmod(os.path.join(d, f), 0o666 & ~mask)


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
    key: Any = None,
) -> Path:
    """Write the request's folder: the model (``save_model(tmp / "model")``), the evidence with the
    saved weights' hash, and the ledger with ``entry`` chained onto ``entries``. ``extra(tmp)``
    may write more (a SISA shard state) and returns fields for the ledger entry; ``render`` turns
    the evidence into its page (default: a classifier's, :func:`obliviate.deletion.evidence.render_html`).
    ``model_sha256``: the unlearned weights' hash when ``save_model`` writes no checkpoint of them
    (a language model's LoRA adapter: the hash of the model the adapter makes of its base).
    ``key`` (a :class:`~obliviate.deletion.signing.Key` that can sign): the entry records its id
    and the folder's head is signed (:func:`~obliviate.deletion.signing.sign_folder`)."""
    from . import signing

    with claim_out(out) as out:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-{os.getpid()}-", dir=out.parent))
        try:
            save_model(tmp / "model")
            after = model_sha256 if model_sha256 is not None else read_meta(tmp / "model")["sha256"]
            evidence["models"]["unlearned_sha256"] = after
            evidence["ledger"] = {
                "entries": len(entries) + 1,
                "ids": entry.get("ids_form", "plain"),
                "signed_by": key.key_id if key is not None else None,
            }
            entry = {**entry, "model_after": after, **(extra(tmp) if extra is not None else {})}
            if key is not None:
                entry["key_id"] = key.key_id
            write_json_atomic(tmp / "evidence.json", evidence)
            write_text_atomic(tmp / "evidence.html", (render or render_html)(evidence))
            entry["evidence_sha256"] = ledger.file_sha256(tmp / "evidence.json")
            chain = ledger.extended(entries, entry)
            ledger.write(tmp / "ledger.jsonl", chain)
            if key is not None:
                first = next(i for i, e in enumerate(chain) if e.get("key_id"))
                signing.sign_folder(tmp, chain, key, first)
            _apply_umask(tmp)
            os.rename(tmp, out)  # the folder appears whole, or not at all
        except (OSError, SafetensorError) as e:  # a full disk, a file-size limit, a vanished folder
            raise OutputError(f"writing {out} failed ({e}); nothing was written") from None
        finally:  # only this call's own temporary folder is ever removed
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
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
    key: Any = None,
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
        key=key,
    )
