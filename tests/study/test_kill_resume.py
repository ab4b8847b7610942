"""Fault injection: a digits study SIGKILLed at random points, several times, then run to the
end, gives exactly the results of an uninterrupted run (timings aside), with nothing lost,
duplicated or half-written."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

STUDY = {
    "name": "kill",
    "dataset": {"name": "digits"},
    "models": [{"name": "small_cnn", "kwargs": {"width": 0.5}}],
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.05, "crop_pad": 1, "flip": False},
    "requests": [{"kind": "class", "classes": ["3"]}, {"kind": "random", "fraction": 0.1}],
    "methods": [
        "original",
        "retrain",
        {"name": "finetune", "config": {"epochs": 2}},
        {"name": "ssd", "config": {"alpha": 6.0}},
    ],
    "seeds": [0],
    "device": "cpu",
}
TIMING = ("efficiency/", "peak_memory")


def _cmd(study: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "obliviate.cli", "run", str(study), "--out", str(out), "-q"]


def _values(out: Path) -> dict[tuple[str, ...], str]:
    with open(out / "results.csv") as f:
        return {
            (r["model"], r["request"], r["method"], r["seed"], r["metric"]): r["value"]
            for r in csv.DictReader(f)
            if not r["metric"].startswith(TIMING)
        }


@pytest.mark.extended
@pytest.mark.fault
def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OBLIVIATE_TEST_THREADS": "1"}

    ref_env = {**env, "OBLIVIATE_CACHE": str(tmp_path / "cache-ref")}
    t0 = time.perf_counter()
    subprocess.run(_cmd(study, tmp_path / "ref"), env=ref_env, check=True, timeout=600, capture_output=True)
    full = time.perf_counter() - t0

    kill_env = {**env, "OBLIVIATE_CACHE": str(tmp_path / "cache-kill")}
    rng = random.Random(20261201)
    killed = 0
    for _ in range(4):
        p = subprocess.Popen(
            _cmd(study, tmp_path / "kill"), env=kill_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.15, 0.5) * full)  # while runs are going (the report takes the last part)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait(timeout=60)
    assert killed >= 2, "the kills must land while the study runs"
    subprocess.run(_cmd(study, tmp_path / "kill"), env=kill_env, check=True, timeout=600, capture_output=True)

    ref, got = _values(tmp_path / "ref"), _values(tmp_path / "kill")
    assert len(ref) > 200 and got == ref
    runs = [json.loads(p.read_text()) for p in (tmp_path / "kill" / "runs").glob("*.json")]
    assert len(runs) == 2 * 4 and all(r["status"] == "ok" for r in runs)  # none lost, none twice
    assert len({r["key"] for r in runs}) == len(runs)
    assert not (tmp_path / "kill" / "damaged").exists()  # atomic writes: nothing half-written was read
