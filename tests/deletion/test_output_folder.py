"""The output folder of a deletion request: one writer at a time, nothing removed but the writer's
own temporary folder, the temporary folders of killed writers removed by the next one, and the
user's umask on every file written."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from obliviate.deletion import DeletionError
from obliviate.deletion.output import OutputError, claim_out, claims_out, write_output

pytestmark = pytest.mark.fault


def _write(out: Path, fail: bool = False) -> Path:
    def save_model(p: Path) -> None:
        p.mkdir()
        (p / "model.safetensors").write_bytes(b"weights")
        if fail:
            raise RuntimeError("disk full")

    return write_output(
        out,
        save_model=save_model,
        evidence={"models": {}},
        entries=[],
        entry={"request_id": "r1", "ids": [1]},
        render=lambda ev: "<html></html>",
        model_sha256="0" * 64,
    )


def _holder(out: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process that claims ``out`` and holds it for ``seconds``."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from obliviate.deletion.output import claim_out
        with claim_out({str(out)!r}):
            print("held", flush=True)
            time.sleep({seconds})
        """
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def test_a_second_writer_is_refused_at_once_and_the_first_finishes(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    p = _holder(out, 30)
    try:
        t0 = time.monotonic()
        with pytest.raises(OutputError, match=rf"being written by another process \(pid {p.pid}\)"):
            _write(out)
        assert time.monotonic() - t0 < 5  # refused at once, not after the work
        # the door refuses before any work too: the model is never looked at
        import obliviate

        with pytest.raises(DeletionError, match="being written by another process"):
            obliviate.unlearn(object(), forget=[], retain=[], out=out)
    finally:
        p.kill()
        p.wait()
    # the holder was killed: its lock went with it, and the next writer gets the folder
    assert _write(out) == out and (out / "ledger.jsonl").is_file()
    assert sorted(x.name for x in out.parent.iterdir()) == ["out"]  # no lock file, no temporary folder left


def test_the_losers_cleanup_never_touches_the_winners_output(tmp_path: Path) -> None:
    out = tmp_path / "made" / "out"
    _write(out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(OutputError, match="already exists"):
        _write(out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # a write that fails removes its own temporary folder and the folders it made, nothing else
    with pytest.raises(RuntimeError, match="disk full"):
        _write(tmp_path / "a" / "b" / "out2", fail=True)
    assert not (tmp_path / "a").exists()
    with pytest.raises(RuntimeError, match="disk full"):
        _write(tmp_path / "made" / "out3", fail=True)
    assert sorted(x.name for x in (tmp_path / "made").iterdir()) == ["out"]


def test_killed_writers_temporary_folders_are_named_and_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".tmp-out-{dead.pid}-k1ll3d"
    (stale / "model").mkdir(parents=True)
    live = tmp_path / f".tmp-out-{os.getpid()}-l1ve"  # a live process's: left alone
    live.mkdir()
    other = tmp_path / f".tmp-other-{dead.pid}-x"  # another folder's: left alone
    other.mkdir()
    with pytest.warns(UserWarning, match=rf"removed .*{stale.name}: an unfinished write of out"):
        _write(out)
    assert not stale.exists() and live.is_dir() and other.is_dir() and (out / "evidence.json").is_file()


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_files_get_the_users_umask(tmp_path: Path, umask: int, file_mode: int, dir_mode: int) -> None:
    old = os.umask(umask)
    try:
        out = _write(tmp_path / "out")
    finally:
        os.umask(old)
    modes: dict[str, Any] = {str(p.relative_to(out)): p.stat().st_mode & 0o777 for p in out.rglob("*")}
    assert modes and all(m == (dir_mode if (out / k).is_dir() else file_mode) for k, m in modes.items()), modes
    assert out.stat().st_mode & 0o777 == dir_mode


def test_a_claim_is_reentrant_in_its_process_and_released_on_error(tmp_path: Path) -> None:
    out = tmp_path / "out"

    @claims_out
    def request(*, out: Path, fail: bool) -> Path:
        with claim_out(out):  # the same process may claim it again (the doors nest)
            if fail:
                raise ValueError("refused")
            return _write(out)

    with pytest.raises(ValueError, match="refused"):
        request(out=out, fail=True)
    assert list(tmp_path.iterdir()) == []  # the lock file went with the claim
    assert request(out=out, fail=False) == out
    with pytest.raises(DeletionError, match="already exists"):
        request(out=out, fail=False)
