"""Fault injection on the deletion path (`obliviate unlearn`, a process each): SIGKILL at seeded
random points of a two-request lineage, a full disk, a diverging method. Every rerun ends in the
ledger and weights of an uninterrupted run; nothing partial or temporary is left; a failure writes
nothing and says why."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from obliviate.cli import main
from obliviate.deletion import ledger

pytestmark = pytest.mark.fault

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OBLIVIATE_TEST_THREADS": "1", "PYTHONWARNINGS": "default"}
# what differs between two runs of one request: the time, and the hashes over it (the evidence
# records the time and the seconds taken)
TIMES = ("received_at", "evidence_sha256", "entry_sha256", "prev_sha256")


@pytest.fixture(scope="module")
def m0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("faults")
    args = ["train", "--dataset", "digits", "--model", "small_cnn", "--width", "0.5", "--epochs", "3"]
    assert main([*args, "--out", str(d / "m0"), "-q"]) == 0
    for i, ids in enumerate([range(0, 25), range(25, 40)], 1):
        (d / f"r{i}.txt").write_text("".join(f"{j}\n" for j in ids))
    return d / "m0"


def _cmd(src: Path, ids: Path, out: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "obliviate.cli", "unlearn", str(src), "--forget", f"ids:{ids}"),
        *("--method", "finetune", "--set", "epochs=2", "--seed", "0", "--request-id", ids.stem, "--out", str(out)),
    ]


def _entries(folder: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in TIMES} for e in ledger.read(folder / "ledger.jsonl")]


@pytest.mark.extended
def test_sigkill_at_random_points_of_a_lineage_then_rerun_equals_an_uninterrupted_one(m0: Path, tmp_path: Path) -> None:
    ref, got = tmp_path / "ref", tmp_path / "got"
    ref.mkdir()
    got.mkdir()
    took = []
    for i, src in ((1, m0), (2, ref / "u1")):
        t0 = time.perf_counter()
        subprocess.run(
            _cmd(src, m0.parent / f"r{i}.txt", ref / f"u{i}"), env=ENV, check=True, capture_output=True, timeout=300
        )
        took.append(time.perf_counter() - t0)
    rng = random.Random(20261207)
    kills = 0
    for i, src in ((1, m0), (2, got / "u1")):
        out = got / f"u{i}"
        # a kill per request, at a seeded random point of its run; where the run finished first (the
        # machine was faster than the reference run), its whole output is removed and the kill is
        # tried earlier
        frac = rng.uniform(0.25, 0.8)
        for _ in range(4):
            p = subprocess.Popen(
                _cmd(src, m0.parent / f"r{i}.txt", out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(frac * took[i - 1])
            landed = p.poll() is None
            if landed:
                p.send_signal(signal.SIGKILL)
            p.wait(timeout=60)
            assert not out.exists() or ledger.verify(out) == []  # whole or absent: never half-written
            if landed:
                kills += 1
                break
            shutil.rmtree(out)
            frac /= 2
        if not out.exists():  # the rerun: the same command, run to the end
            run = subprocess.run(
                _cmd(src, m0.parent / f"r{i}.txt", out), env=ENV, capture_output=True, text=True, timeout=300
            )
            assert run.returncode == 0, run.stderr[-2000:]
    assert kills == 2, "the kills must land while a request runs"
    assert _entries(got / "u2") == _entries(ref / "u2")  # the same ledger: requests, ids, hashes
    assert (got / "u2" / "model.safetensors").read_bytes() == (ref / "u2" / "model.safetensors").read_bytes()
    assert ledger.verify(got / "u2") == []
    left = [p.name for p in got.iterdir() if p.name.startswith(".")]
    assert left == [], f"temporary or lock files left behind: {left}"


def test_a_full_disk_writes_nothing_and_says_so(m0: Path, tmp_path: Path) -> None:
    limit = (m0.parent / "m0.safetensors").stat().st_size // 2  # the unlearned weights do not fit

    def full_disk() -> None:  # in the child: a file past the limit fails with EFBIG instead of SIGXFSZ
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "u1"
    run = subprocess.run(
        _cmd(m0, m0.parent / "r1.txt", out), env=ENV, capture_output=True, text=True, timeout=300, preexec_fn=full_disk
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert f"writing {out} failed" in run.stderr and "nothing was written" in run.stderr, run.stderr[-2000:]
    assert list(tmp_path.iterdir()) == [], [p.name for p in tmp_path.iterdir()]  # no folder, no temporary, no lock


def test_a_diverging_method_is_never_delivered(m0: Path, tmp_path: Path, capsys: Any) -> None:
    """lr = 1e8: the attempt's loss goes non-finite; with the default fallback the model is retrained
    (the diverged attempt recorded, no NaN in the record); with --fallback refuse nothing is written."""
    cmd = ["unlearn", str(m0), "--forget", f"ids:{m0.parent / 'r1.txt'}", "--method", "neggrad_plus"]
    cmd += ["--set", "lr=1e8", "--set", "beta=0.0", "--set", "forget_loss_cap=null"]
    assert main([*cmd, "--fallback", "refuse", "--out", str(tmp_path / "refused")]) == 3
    assert "diverged" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    assert main([*cmd, "--out", str(tmp_path / "retrained")]) == 0
    text = (tmp_path / "retrained" / "evidence.json").read_text()
    ev = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-finite {c} in evidence.json"))
    assert ev["method"]["name"] == "retrain" and "diverged" in " ".join(ev["attempts"][0]["failures"])
