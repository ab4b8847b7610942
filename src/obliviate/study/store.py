"""Where a study's results live: one JSON record per run, named by its content key.

``out_dir/runs/<key>.json`` exists only for finished runs (written atomically), so an
interrupted study re-run skips exactly what is done and never reads a half-written result.
A record is reused only when its file name, its stored ``key`` and the key the current spec
asks for all agree. Records the current spec does not ask for are moved to
``out_dir/superseded/`` (and said so) — never mixed into a report — and moved back if a later
spec asks for the same key again. A record that cannot be read (truncated, ``{}``, another key
inside) is moved to ``out_dir/damaged/`` with its path named, and recomputed.

``results.jsonl`` and ``results.csv`` (one row per run × metric) are regenerated from the
records of the current spec only. ``StudyLock`` keeps a second process out of the folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..utils import write_json_atomic, write_text_atomic
from .keys import RECORD_FORMAT

ROW_FIELDS = ("study", "scale", "dataset", "model", "request", "method", "seed", "metric", "value", "direction")
STATUSES = ("ok", "failed", "not_applicable")


def safe_key(*parts: Any) -> str:
    """A filesystem-safe name from labels (``resnet9(width=0.25)`` -> ``resnet9_width-0.25_``)."""
    text = "__".join(str(p) for p in parts)
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-")


class StudyLockedError(RuntimeError):
    """Another process holds the study folder (or a cache entry) this one needs."""


class FileLock:
    """An exclusive ``flock`` on ``path``; released when the process dies, so a killed run never
    leaves a folder locked. ``wait=False`` raises :class:`StudyLockedError` naming the holder."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = Path(path), what
        self._fd: int | None = None

    def acquire(self, wait: bool, on_wait: Callable[[str], None] | None = None) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            if not wait:
                os.close(fd)
                raise StudyLockedError(
                    f"{self.what} is in use by another obliviate process ({holder}); wait for it to finish, "
                    f"or give this run another output folder"
                ) from None
            if on_wait is not None:
                on_wait(f"waiting for another process ({holder}) that holds {self.what}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self._fd = fd

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown pid"
        except OSError:
            return "unknown pid"

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire(wait=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class ResultStore:
    """Content-addressed run and group records of one study folder."""

    def __init__(self, out_dir: str | Path, say: Callable[[str], None] | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.runs_dir = self.out_dir / "runs"
        self.groups_dir = self.out_dir / "groups"
        self.superseded_dir = self.out_dir / "superseded"
        self.damaged_dir = self.out_dir / "damaged"
        self.say = say or (lambda _m: None)

    def lock(self) -> FileLock:
        return FileLock(self.out_dir / ".lock", f"the study folder {self.out_dir}")

    # -- records by key ---------------------------------------------------------------------------
    def _read(self, folder: Path, key: str) -> dict[str, Any] | None:
        path = folder / f"{key}.json"
        if not path.is_file():
            back = self.superseded_dir / folder.name / f"{key}.json"
            if not back.is_file():
                return None
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(back, path)  # a spec asks for it again: exact key match, so it is current
            self.say(f"restored {folder.name}/{key}.json from superseded/ (its key is asked for again)")
        try:
            rec = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
            self._damaged(path, f"not readable JSON ({e})")
            return None
        if (
            not isinstance(rec, dict)
            or rec.get("key") != key
            or rec.get("format") != RECORD_FORMAT
            or rec.get("status") not in STATUSES
        ):
            self._damaged(path, "not a record of this key and format")
            return None
        return rec

    def _damaged(self, path: Path, why: str) -> None:
        dest = self.damaged_dir / path.parent.name / f"{path.stem}.{time.strftime('%Y%m%d-%H%M%S')}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), dest)
        self.say(f"damaged record {path} ({why}): moved to {dest}; it will be recomputed")

    def load_run(self, key: str) -> dict[str, Any] | None:
        """The finished record of ``key``, or ``None`` (absent, damaged, or a retryable error)."""
        return self._read(self.runs_dir, key)

    def load_group(self, key: str) -> dict[str, Any] | None:
        return self._read(self.groups_dir, key)

    def save_run(self, key: str, record: dict[str, Any]) -> None:
        write_json_atomic(self.runs_dir / f"{key}.json", _checked(record, key))

    def save_group(self, key: str, record: dict[str, Any]) -> None:
        write_json_atomic(self.groups_dir / f"{key}.json", _checked({"status": "ok", **record}, key))

    def retire(self, run_keys: Iterable[str], group_keys: Iterable[str]) -> list[str]:
        """Move every record the current spec does not ask for to ``superseded/``; returns them."""
        moved = []
        for folder, keep in ((self.runs_dir, set(run_keys)), (self.groups_dir, set(group_keys))):
            for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
                if path.stem not in keep:
                    dest = self.superseded_dir / folder.name / path.name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, dest)
                    moved.append(f"{folder.name}/{path.name}")
        return moved

    def runs(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Run records of ``keys`` (default: the keys listed in ``study.json``), in that order."""
        return self._records(self.runs_dir, self.current_keys()["runs"] if keys is None else keys)

    def groups(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        return self._records(self.groups_dir, self.current_keys()["groups"] if keys is None else keys)

    @staticmethod
    def _records(folder: Path, keys: Iterable[str]) -> list[dict[str, Any]]:
        out = []
        for k in keys:
            p = folder / f"{k}.json"
            if p.is_file():
                try:
                    rec = json.loads(p.read_text())
                except (json.JSONDecodeError, OSError):
                    continue
                if isinstance(rec, dict) and rec.get("key") == k:
                    out.append(rec)
        return out

    def current_keys(self) -> dict[str, list[str]]:
        """The run and group keys of the spec that last ran here (from ``study.json``)."""
        path = self.out_dir / "study.json"
        try:
            plan = json.loads(path.read_text()).get("plan")
        except (OSError, json.JSONDecodeError, AttributeError) as e:
            raise RuntimeError(f"{path} is missing or damaged ({e}): run the study again to rewrite it") from None
        if plan is None:
            raise RuntimeError(
                f"{path} was written before content-addressed runs (it has no plan): run the study "
                "again with this version; its old records will be moved to superseded/"
            )
        return {
            "runs": [u["key"] for g in plan.get("groups", []) for u in g["units"]],
            "groups": [g["key"] for g in plan.get("groups", [])],
        }

    def write_tables(self, rows: list[dict[str, Any]]) -> None:
        write_text_atomic(self.out_dir / "results.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(ROW_FIELDS), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        write_text_atomic(self.out_dir / "results.csv", buf.getvalue())


def _checked(record: dict[str, Any], key: str) -> dict[str, Any]:
    """The record with its key and format stamped, refusing non-finite numbers anywhere in it."""
    rec = {**record, "key": key, "format": RECORD_FORMAT}
    json.dumps(rec, allow_nan=False, default=_finite_default)  # raises ValueError on NaN / inf
    return rec


def _finite_default(obj: Any) -> Any:
    from ..utils import _json_default

    return _json_default(obj)


def record_rows(record: dict[str, Any], study: str, scale: str | None) -> list[dict[str, Any]]:
    """Flatten one finished run record into result rows (one per metric); none for a failure."""
    if record.get("status", "ok") != "ok":
        return []
    base = {
        "study": study,
        "scale": scale or "",
        "dataset": record.get("dataset", ""),
        "model": record["model"],
        "request": record["request"],
        "method": record["method"],
        "seed": record["seed"],
    }
    return [
        {**base, "metric": k, "value": v, "direction": record.get("directions", {}).get(k, "info")}
        for k, v in sorted(record["values"].items())
    ]
