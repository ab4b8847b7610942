"""The full-scale GPU script: the command of every job at full scale validates as a study, and the
smoke mode runs jobs end to end on the CPU (extended tier: minutes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import load_bench_script

from obliviate.study import load_study
from obliviate.study.presets import preset_path


@pytest.fixture(scope="module")
def fs() -> Any:
    return load_bench_script("run_full_scale")


def _overrides(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]


def test_every_full_scale_job_is_a_valid_study_on_the_gpu(fs: Any, tmp_path: Path) -> None:
    args = fs.argparse.Namespace(smoke=False, device="cuda", data_root=tmp_path, download=False)
    for job in fs.JOBS:
        cmd = fs.command(job, args, tmp_path / job)
        path = fs.FRONTIER if job == "frontier_memorise" else preset_path(job)
        spec = load_study(path, scale="full", overrides=_overrides(cmd))
        assert spec.scale == "full" and "--scale" in cmd and cmd[cmd.index("--scale") + 1] == "full"
        assert spec.device == "cuda" or cmd[cmd.index("--device") + 1] == "cuda"
        if job == "frontier_memorise":  # the literature's regime: ResNet-18, all of CIFAR-10, 182 epochs
            assert [m.name for m in spec.models] == ["resnet18"] and spec.train.epochs == 182
            assert spec.dataset.train_per_class is None and "amun" in {m.name for m in spec.methods}
        if job == "bad_teacher_resnet18":  # CIFAR-100 at full scale: the given CIFAR-10 root is not passed
            assert "--data-root" not in cmd


@pytest.mark.extended
def test_the_smoke_mode_runs_a_preset_and_the_frontier_end_to_end(fs: Any, tmp_path: Path) -> None:
    assert fs.main(["--smoke", "--only", "resnet9_airplane_cat", "frontier_memorise", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "full_scale.json").read_text())
    assert report["scale"] == "smoke" and report["device"] == "cpu"
    for job in ("resnet9_airplane_cat", "frontier_memorise"):
        r = report["jobs"][job]
        assert r["returncode"] == 0 and r["rows"], job
        assert {"original", "retrain"} <= {row["method"] for row in r["rows"]}
    rows = report["jobs"]["frontier_memorise"]["rows"]
    assert any(row["method"] == "amun" and "gap/avg" in row and "efficiency/speedup" in row for row in rows)
    assert "| frontier_memorise | 0 |" in (tmp_path / "full_scale.md").read_text()
