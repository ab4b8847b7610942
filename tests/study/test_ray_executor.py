"""`obliviate run --executor ray`: the same records as a serial run, and a killed worker
loses nothing that finished and duplicates nothing on the rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("ray")

from obliviate.study import StudyRunner, load_study
from obliviate.study.executors import RayExecutor, StudyIncompleteError, make_executor
from obliviate.study.presets import preset_path
from obliviate.testing import RecordingProgress

# a small digits study: 2 groups (seeds), the references and two methods; no audit references
OVERRIDES = ["methods=[original,retrain,finetune,ssd]", "audit.references=0", "seeds=[0,1]"]
# two requests of one seed: two groups that share one original model, run side by side
SHARED = [
    "methods=[original,retrain,finetune,ssd]",
    "audit.references=0",
    "seeds=[0]",
    'requests=[{kind: class, classes: ["3"]}, {kind: class, classes: ["5"]}]',
]
# wall times and memory are measurements of the machine, not results: everything else must agree
MACHINE = ("efficiency/seconds", "efficiency/speedup", "efficiency/peak_memory_mb")


def _records(out: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))}


def _results(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": rec["status"],
        "method": rec["method"],
        "seed": rec["seed"],
        "inputs": rec["inputs"],
        "values": {k: v for k, v in rec["values"].items() if k not in MACHINE},
    }


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The serial reference, with 1 torch thread like each 1-CPU Ray worker (same float sums)."""
    out = tmp_path_factory.mktemp("serial")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        StudyRunner(
            load_study(preset_path("default"), overrides=SHARED),
            out / "study",
            cache_dir=out / "cache",
            progress=RecordingProgress(),
        ).run()
    finally:
        torch.set_num_threads(threads)
    return out / "study"


def test_ray_executor_writes_the_serial_records(serial_run: Path, tmp_path: Path) -> None:
    spec = load_study(preset_path("default"), overrides=SHARED)
    said = RecordingProgress()
    StudyRunner(
        spec, tmp_path / "study", cache_dir=tmp_path / "cache", progress=said, executor=RayExecutor(num_cpus=2)
    ).run()
    ray_recs, serial_recs = _records(tmp_path / "study"), _records(serial_run)
    assert sorted(ray_recs) == sorted(serial_recs) and len(ray_recs) == 8  # same content keys
    for key, rec in ray_recs.items():
        assert rec["status"] == "ok", rec.get("error")
        assert _results(rec) == _results(serial_recs[key])  # same numbers, bit for bit
    workers = {ln.split("worker pid ")[1].split()[0] for ln in said.lines if "on worker pid" in ln}
    assert len(workers) == 2, said.lines  # both groups ran in Ray workers, side by side
    # they share the original: one worker trained it, the other waited for the cache entry and loaded it
    assert sum(ln.startswith("original small_cnn(width=0.5) seed 0: training") for ln in said.lines) == 1, said.lines
    assert any(ln.startswith("local Ray started (2 CPUs)") for ln in said.lines)
    # a serial rerun on the Ray run's folder finds everything done and trains nothing
    again = RecordingProgress()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "study" / "runs").iterdir()}
    StudyRunner(spec, tmp_path / "study", cache_dir=tmp_path / "cache", progress=again).run()
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "study" / "runs").iterdir()} == before
    assert sum("already finished, skipped" in ln for ln in again.lines) == 2
    assert not any("training" in ln for ln in again.lines)


@pytest.mark.extended
@pytest.mark.fault
def test_killed_worker_loses_nothing_and_the_rerun_completes(tmp_path: Path) -> None:
    out, cache = tmp_path / "study", tmp_path / "cache"
    # finetune long enough (20 digits epochs) to be killed in the middle of it
    cmd = [
        sys.executable,
        "-m",
        "obliviate.cli",
        "run",
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--executor",
        "ray",
        "--ray-cpus",
        "2",
        "--ray-retries",
        "0",
    ]
    for o in OVERRIDES + ["methods[2]={name: finetune, config: {epochs: 20}}"]:
        cmd += ["--set", o]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    pids: dict[str, int] = {}
    killed_group, log = None, []
    deadline = time.monotonic() + 300
    for line in proc.stderr:
        log.append(line.rstrip())
        text = line.split("[obliviate] ", 1)[-1].strip()
        if ": on worker pid " in text:
            label, rest = text.split(": on worker pid ", 1)
            pids[label] = int(rest.split()[0])
        elif killed_group is None and text.endswith("running finetune (3/4)"):
            killed_group = text.split(": running", 1)[0]
            os.kill(pids[killed_group], signal.SIGKILL)  # the worker dies in the middle of finetune
        assert time.monotonic() < deadline, log
    rc = proc.wait(timeout=60)
    assert killed_group is not None, log
    assert rc == 1, log  # the study says it did not finish ...
    assert any(f"{killed_group}: DID NOT FINISH" in ln for ln in log), log
    assert any("run the same command again to resume" in ln for ln in log), log
    plan = json.loads((out / "study.json").read_text())["plan"]["groups"]
    keys = [u["key"] for g in plan for u in g["units"]]
    lost_group = next(g for g in plan if f"seed {g['seed']}" in killed_group)
    stored = {p.stem: p.read_bytes() for p in (out / "runs").glob("*.json")}
    # ... the killed group kept its finished units (original, retrain) and lost only the rest
    assert [u["method"] for u in lost_group["units"] if u["key"] in stored] == ["original", "retrain"]
    assert len(stored) == 6
    # the rerun (serial this time) runs exactly the two missing units and touches nothing else
    spec = load_study(
        preset_path("default"), overrides=OVERRIDES + ["methods[2]={name: finetune, config: {epochs: 20}}"]
    )
    said = RecordingProgress()
    StudyRunner(spec, out, cache_dir=cache, progress=said).run()
    after = {p.stem: p.read_bytes() for p in (out / "runs").glob("*.json")}
    assert sorted(after) == sorted(keys)  # everything, once (a record per key, named by it)
    assert all(after[k] == v for k, v in stored.items())  # nothing finished was redone
    assert [ln for ln in said.lines if ": running " in ln] == [
        f"{killed_group}: running finetune (1/2)",
        f"{killed_group}: running ssd (2/2)",
    ]
    assert not any("training" in ln for ln in said.lines)  # its references came from the cache
    assert all(json.loads(v)["status"] == "ok" for v in after.values())


@pytest.mark.bad_input
def test_executor_options_are_checked() -> None:
    with pytest.raises(ValueError, match="apply to --executor ray only"):
        make_executor("serial", address="auto")
    with pytest.raises(ValueError, match="allowed: serial, ray"):
        make_executor("dask")
    with pytest.raises(ValueError, match="cpus_per_group must be > 0"):
        RayExecutor(cpus_per_group=0)
    with pytest.raises(ValueError, match="sizes a local Ray"):
        RayExecutor(address="auto", num_cpus=2)
    assert "resume" in str(StudyIncompleteError(["g (WorkerCrashedError)"]))
