"""`obliviate tune`: declared search spaces, the tuning split, a tune interrupted and
resumed with Tuner.restore, and the best config written as a study that `obliviate run` runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from obliviate.core import Choice, Range, search_space
from obliviate.methods import METHODS
from obliviate.study import StudySpecError, load_study
from obliviate.study.presets import preset_path
from obliviate.study.tune import method_space, parse_param, tuning_spec

TUNE_SPLIT = 'tune={requests: [{kind: class, classes: ["5"]}], seeds: [3, 4]}'
STUDY_SET = ["audit.references=0", "methods=[original,retrain,ssd]", TUNE_SPLIT]


def test_methods_declare_ranges_beside_their_fields() -> None:
    space = search_space(METHODS.get("ssd").Config)
    assert space["alpha"] == Range(1.0, 50.0, log=True) and isinstance(space["bn_stats"], Choice)
    # every vision method that edits a model declares something to search
    for name in ("finetune", "neggrad_plus", "scrub", "salun", "l1_sparse", "bad_teacher", "sfron", "ct", "msg"):
        assert len(search_space(METHODS.get(name).Config)) >= 2, name
    # bn_stats: 'retain' is dropped for a method that never reads the retain set (delete reads the forget set)
    assert method_space("delete", ["bn_stats"])["bn_stats"] == Choice(("method", "keep", "eval"))
    assert "retain" in method_space("finetune", ["bn_stats"])["bn_stats"].values


@pytest.mark.bad_input
def test_param_syntax_and_errors() -> None:
    assert parse_param("alpha") == ("alpha", None)
    assert parse_param("alpha=1:20:log") == ("alpha", Range(1.0, 20.0, log=True))
    assert parse_param("batch_size=32:256:int") == ("batch_size", Range(32.0, 256.0, integer=True))
    assert parse_param("bn_stats=keep,eval") == ("bn_stats", Choice(("keep", "eval")))
    with pytest.raises(ValueError, match="low < high"):
        parse_param("alpha=5:1")
    with pytest.raises(ValueError, match="log Range needs low > 0"):
        parse_param("alpha=0:1:log")
    with pytest.raises(ValueError, match="no config field 'alpah'"):
        method_space("ssd", ["alpah"])
    with pytest.raises(ValueError, match="declares no tune range; give one"):
        method_space("ssd", ["batch_size"])
    assert method_space("ssd", ["batch_size=16:128:int"]) == {"batch_size": Range(16.0, 128.0, integer=True)}


def test_tuning_split_is_validated_and_used() -> None:
    spec = load_study(preset_path("default"), overrides=STUDY_SET)
    sub = tuning_spec(spec, "ssd", {"alpha": 4.0})
    assert [r.describe() for r in sub.requests] == ["class:5"] and sub.seeds == [3, 4]
    assert [(m.name, m.config) for m in sub.methods] == [("ssd", {"alpha": 4.0})]
    with pytest.raises(StudySpecError, match="has no tune: split"):
        tuning_spec(load_study(preset_path("default")), "ssd", {})
    with pytest.raises(StudySpecError, match="SSDConfig.alpha must be > 0"):
        tuning_spec(spec, "ssd", {"alpha": -1.0})


def _tune_cmd(out: Path, cache: Path) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "obliviate.cli",
        "tune",
        "ssd",
        "--study",
        "default",
        "--param",
        "alpha=1:12:log",
        "--trials",
        "4",
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--ray-cpus",
        "2",
    ]
    for o in STUDY_SET:
        cmd += ["--set", o]
    return cmd


@pytest.mark.extended
@pytest.mark.fault
def test_tune_is_interrupted_resumed_and_its_best_yaml_runs(tmp_path: Path) -> None:
    out, cache = tmp_path / "tune", tmp_path / "cache"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_tune_cmd(out, cache), stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    first, log, deadline = None, [], time.monotonic() + 300
    for line in proc.stderr:
        log.append(line.rstrip())
        if first is None and "finished (1 of 4)" in line:
            first = line.split("trial ", 1)[1].split()[0]
            proc.send_signal(signal.SIGINT)  # Ctrl-C after the first trial
        assert time.monotonic() < deadline, log
    proc.stdout.read() if proc.stdout else None
    assert proc.wait(timeout=60) == 1, log
    assert first is not None, log
    assert any("run the same command again to resume" in ln for ln in log), log
    assert not (out / "best.yaml").exists()
    interrupted = json.loads((out / "tune.json").read_text())
    assert interrupted["interrupted"] is True
    kept = next(t for t in interrupted["trials"] if t["trial"] == first)

    again = subprocess.run(_tune_cmd(out, cache), capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming the interrupted tune" in again.stderr
    assert f"trial {first} finished" not in again.stderr  # the finished trial is not run again
    done = json.loads((out / "tune.json").read_text())
    assert done["resumed"] is True and done["interrupted"] is False
    assert len(done["trials"]) == 4 and len({t["trial"] for t in done["trials"]}) == 4
    assert next(t for t in done["trials"] if t["trial"] == first) == kept  # kept as it was
    best = done["best"]
    assert done["objective"] == "target"
    assert best["groups"] == 2 and best["score"] == min(t["score"] for t in done["trials"] if t["groups"] == 2)
    assert best["score"] >= best["gap"]  # the gap plus any class drop beyond the target
    assert 1.0 <= best["config"]["alpha"] <= 12.0

    # the written study adds ssd_tuned with the best config and runs as it is (its first seed)
    written = yaml.safe_load((out / "best.yaml").read_text())
    assert written["methods"][-1] == {"name": "ssd", "label": "ssd_tuned", "config": {"alpha": best["config"]["alpha"]}}
    assert written["tune"]["seeds"] == [3, 4] and written["seeds"] == [0, 1, 2]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "obliviate.cli",
            "run",
            str(out / "best.yaml"),
            "--seeds",
            "0",
            "--out",
            str(tmp_path / "heldout"),
            "--cache",
            str(cache),
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    recs = [json.loads(p.read_text()) for p in (tmp_path / "heldout" / "runs").glob("*.json")]
    tuned = [r for r in recs if r["method"] == "ssd_tuned"]
    assert len(tuned) == 1 and tuned[0]["status"] == "ok" and tuned[0]["request"] == "class:3"
    assert tuned[0]["method_config"]["alpha"] == best["config"]["alpha"]


def test_objective_leaves_out_requests_the_method_does_not_apply_to() -> None:
    """A class-only method on a random request, or the calibrated stop on a class request, is not
    a failure: the group is left out of the mean gap (and counted as skipped); a failed run costs
    FAILED_GAP; a method that applies to no tuning request gets the worst objective, failed."""
    from types import SimpleNamespace

    from obliviate.study.tune import FAILED_GAP, _ReportEachGroup

    class Runner:
        def __init__(self, records: dict[str, dict | None]) -> None:
            self.store = SimpleNamespace(load_run=records.get)

        def run_group(self, group: object) -> None:
            pass

    def groups(*keys: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(units=[SimpleNamespace(key=k)]) for k in keys]

    ok = lambda gap: {"status": "ok", "values": {"gap/avg": gap, "efficiency/speedup": 40.0}}  # noqa: E731
    na = {"status": "not_applicable", "reason": "class requests only"}
    reports: list[dict] = []
    _ReportEachGroup(reports.append, 4).run_groups(
        Runner({"a": ok(1.0), "b": na, "c": ok(3.0), "d": na}), groups("a", "b", "c", "d")
    )
    assert [(r["groups"], r["gap"], r["skipped"], r["failed"]) for r in reports] == [
        (1, 1.0, 0, 0),
        (3, 2.0, 1, 0),
        (4, 2.0, 2, 0),
    ]

    reports.clear()
    _ReportEachGroup(reports.append, 3).run_groups(
        Runner({"a": na, "b": ok(0.5), "c": {"status": "failed", "values": {}}}), groups("a", "b", "c")
    )
    assert [(r["groups"], r["gap"], r["failed"]) for r in reports] == [(2, 0.5, 0), (3, (0.5 + FAILED_GAP) / 2, 1)]

    reports.clear()
    _ReportEachGroup(reports.append, 2).run_groups(Runner({"a": na, "b": na}), groups("a", "b"))
    assert len(reports) == 1 and reports[0]["gap"] == FAILED_GAP and reports[0]["failed"] == 2


def test_objective_charges_class_damage_beyond_the_target() -> None:
    """The target-aware score adds the points by which a run's worst retained class drops beyond
    its request kind's bar (the study's targets: class 3 pts, ids 3 pts, random none) to its gap;
    ``objective="gap"`` scores the gap alone. Both are reported, with the worst drop."""
    from types import SimpleNamespace

    from obliviate.study.targets import DEFAULT_TARGETS, Target
    from obliviate.study.tune import _ReportEachGroup

    recs = {
        "a": {"status": "ok", "request": "class:cat", "values": {"gap/avg": 1.0, "worst_class_drop": 7.5}},
        "b": {"status": "ok", "request": "random:0.1", "values": {"gap/avg": 2.0, "worst_class_drop": 9.0}},
        "c": {"status": "ok", "request": "ids:300@f.txt", "values": {"gap/avg": 0.5, "worst_class_drop": 2.0}},
    }

    class Runner:
        store = SimpleNamespace(load_run=recs.get)

        def run_group(self, group: object) -> None:
            pass

    gs = [SimpleNamespace(units=[SimpleNamespace(key=k)]) for k in "abc"]
    reports: list[dict] = []
    _ReportEachGroup(reports.append, 3).run_groups(Runner(), gs)
    assert [r["score"] for r in reports] == pytest.approx([1.0 + 4.5, (5.5 + 2.0) / 2, (5.5 + 2.0 + 0.5) / 3])
    assert reports[-1]["gap"] == pytest.approx(3.5 / 3) and reports[-1]["worst_drop"] == 9.0

    reports.clear()
    _ReportEachGroup(reports.append, 3, objective="gap").run_groups(Runner(), gs)
    assert [r["score"] for r in reports] == [r["gap"] for r in reports] == pytest.approx([1.0, 1.5, 3.5 / 3])

    # the study's own targets set the bar: a 10-point class bar charges nothing here
    reports.clear()
    loose = {**DEFAULT_TARGETS, "class": Target(kind="class", max_gap=0.5, min_speedup=50, max_class_drop=10.0)}
    _ReportEachGroup(reports.append, 3, loose).run_groups(Runner(), gs[:1])
    assert reports[0]["score"] == pytest.approx(1.0)


def test_tune_score() -> None:
    from obliviate.core import ConfigError
    from obliviate.study.targets import DEFAULT_TARGETS, tune_score

    cls, rnd = DEFAULT_TARGETS["class"], DEFAULT_TARGETS["random"]
    assert tune_score({"gap/avg": 0.4, "worst_class_drop": 2.9}, cls) == pytest.approx(0.4)
    assert tune_score({"gap/avg": 0.4, "worst_class_drop": 5.0}, cls) == pytest.approx(2.4)
    assert tune_score({"gap/avg": 0.4, "worst_class_drop": 5.0}, cls, "gap") == pytest.approx(0.4)
    assert tune_score({"gap/avg": 0.4, "worst_class_drop": 50.0}, rnd) == pytest.approx(0.4)  # no class bar
    assert tune_score({"gap/avg": 0.4}, cls) == pytest.approx(0.4)  # no per-class record: the gap
    assert tune_score({"gap/avg": 0.4, "worst_class_drop": float("nan")}, cls) == pytest.approx(0.4)
    with pytest.raises(ConfigError, match="must be one of"):
        tune_score({"gap/avg": 0.4}, cls, "speed")
    from obliviate.study.tune import TuneSettings

    assert TuneSettings().objective == "target"
    with pytest.raises(ConfigError, match="objective must be one of"):
        TuneSettings(objective="speed")


def test_method_entries_run_on_their_kinds_and_tune_per_kind(tmp_path: Path) -> None:
    """``kinds:`` on a method entry: its runs on other request kinds are not applicable (so a
    method can carry one setting for classes and one for sample ids); ``tune --kinds`` tunes on
    the tuning requests of those kinds only, and refuses a kind the split lacks."""
    from obliviate.study.runner import _restrict_to_kinds
    from obliviate.study.tasks.base import GroupPlan, Unit
    from obliviate.study.tune import tune_method

    methods = [
        "original",
        {"name": "ssd", "label": "ssd_class", "kinds": ["class"], "config": {"alpha": 5.0}},
        {"name": "ssd", "label": "ssd_sample", "kinds": ["random", "ids"], "config": {"alpha": 2.0}},
    ]
    spec = load_study(
        preset_path("default"),
        overrides=[
            *STUDY_SET[:1],
            f"methods={json.dumps(methods)}",
            'tune={requests: [{kind: class, classes: ["5"]}, {kind: random, fraction: 0.1}], seeds: [3]}',
        ],
    )
    assert [(m.label, m.kinds) for m in spec.methods] == [
        ("original", ()),
        ("ssd_class", ("class",)),
        ("ssd_sample", ("random", "ids")),
    ]
    plan = [
        GroupPlan("m", req, 0, {}, [Unit(m.label, m.name, {}, {}) for m in spec.methods])
        for req in ("class:5", "random:0.1", "ids:300@x.txt")
    ]
    _restrict_to_kinds(plan, spec.methods)
    skipped = {(g.request, u.label) for g in plan for u in g.units if u.not_applicable}
    assert skipped == {("class:5", "ssd_sample"), ("random:0.1", "ssd_class"), ("ids:300@x.txt", "ssd_class")}
    assert "on class requests only; this one is random" in plan[1].units[1].not_applicable

    with pytest.raises(StudySpecError, match=r"methods\[1\]\.kinds"):
        load_study(preset_path("default"), overrides=["methods=[original, {name: ssd, kinds: [classes]}]"])
    with pytest.raises(StudySpecError, match="has no subclass request"):
        tune_method(spec, "ssd", tmp_path / "t", kinds=("subclass",))
    with pytest.raises(StudySpecError, match="unknown request kind"):
        tune_method(spec, "ssd", tmp_path / "t", kinds=("sample",))
