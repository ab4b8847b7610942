"""The tune summary's per-kind choice (bench/frontier_heldout/summarize_tunes.py), on a synthetic tune (no training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import load_bench_script


@pytest.fixture(scope="module")
def summ() -> Any:
    return load_bench_script("summarize_tunes")


def _req(gap: float | None, status: str = "ok", drop: float = 1.0) -> dict[str, Any]:
    return {"status": status, "gap": gap, "forget_acc": 0.5, "worst_drop": drop, "seconds": 1.0, "steps": 3}


def _tune() -> dict[str, Any]:
    # trial a: best on classes, poor on samples; b: the reverse; c: best mean on samples but stopped
    # before the ids request (not a candidate for random + ids); d: a failed class request
    return {
        "base": {"epochs": 1},
        "best": {"trial": "a", "config": {"lr": 0.1}, "gap": 2.0},
        "space": {},
        "trials": [
            {
                "trial": "a",
                "config": {"lr": 0.1},
                "gap": 2.0,
                "groups": 4,
                "requests": {
                    "class:cat": _req(0.5, drop=4.0),
                    "class:dog": _req(1.5),
                    "random:0.1": _req(3.0),
                    "ids:3@x.txt": _req(3.0),
                },
            },
            {
                "trial": "b",
                "config": {"lr": 0.01},
                "gap": 3.0,
                "groups": 4,
                "requests": {
                    "class:cat": _req(5.0),
                    "class:dog": _req(5.0),
                    "random:0.1": _req(1.0),
                    "ids:3@x.txt": _req(1.0),
                },
            },
            {
                "trial": "c",
                "config": {"lr": 0.02},
                "gap": 0.2,
                "groups": 3,
                "requests": {"class:cat": _req(0.1), "class:dog": _req(0.1), "random:0.1": _req(0.4)},
            },
            {
                "trial": "d",
                "config": {"lr": 0.5},
                "gap": 100.0,
                "groups": 1,
                "requests": {"class:cat": _req(None, status="failed")},
            },
        ],
    }


def test_best_per_kind_takes_complete_trials_only(summ: Any) -> None:
    best = summ.best_per_kind(_tune())
    assert best["class"]["trial"] == "c"  # c ran both classes: 0.1 mean beats a's 1.0
    assert best["class"]["gap"] == pytest.approx(0.1)
    assert best["random_ids"]["trial"] == "b"  # c never reached the ids request
    assert best["random_ids"]["gap"] == pytest.approx(1.0)
    assert best["random_ids"]["requests"] == ["ids:3@x.txt", "random:0.1"]


def test_best_per_kind_reports_the_worst_class_drop(summ: Any) -> None:
    t = _tune()
    t["trials"] = t["trials"][:2]
    assert summ.best_per_kind(t)["class"] == {
        "trial": "a",
        "config": {"lr": 0.1},
        "score": pytest.approx(1.0),
        "gap": pytest.approx(1.0),
        "worst_drop": 4.0,
        "requests": ["class:cat", "class:dog"],
    }


def test_target_objective_charges_class_damage_beyond_the_bar(summ: Any, tmp_path: Path) -> None:
    """By gap, trial a wins the classes (1.0 against e's 1.2); a's cat run breaks a retained class
    by 7 points, 4 beyond the class target's 3, so the target-aware score (1.0 + 4 / 2 = 3.0) hands
    the choice to e (1.2, no class beyond the bar). Random requests have no class bar: the same."""
    t = _tune()
    t["trials"] = [t["trials"][0], t["trials"][1]]
    t["trials"][0]["requests"]["class:cat"] = _req(0.5, drop=7.0)
    t["trials"].append(
        {
            "trial": "e",
            "config": {"lr": 0.05},
            "gap": 2.0,
            "groups": 4,
            "requests": {
                "class:cat": _req(1.2, drop=2.9),
                "class:dog": _req(1.2),
                "random:0.1": _req(2.0, drop=40.0),
                "ids:3@x.txt": _req(2.0),
            },
        }
    )
    by_gap, by_target = summ.best_per_kind(t), summ.best_per_kind(t, "target")
    assert by_gap["class"]["trial"] == "a" and by_gap["class"]["score"] == pytest.approx(1.0)
    assert by_target["class"]["trial"] == "e"
    assert by_target["class"]["score"] == pytest.approx(1.2) and by_target["class"]["gap"] == pytest.approx(1.2)
    assert summ._target_score_of(t, by_gap["class"]) == pytest.approx(3.0)
    # ids carry the class bar (b's drops are 1.0: no charge), random does not (e's 40-point drop is free)
    assert by_target["random_ids"]["trial"] == "b" and by_target["random_ids"]["score"] == pytest.approx(1.0)
    summ.write_markdown({"m": t}, tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "The target-aware objective (gap + class drop beyond the target) picks trial e instead" in text
    assert "the gap-chosen trial scores 3.00" in text


def test_no_kind_without_a_complete_trial(summ: Any) -> None:
    t = _tune()
    t["trials"] = [t["trials"][3]]
    assert summ.best_per_kind(t) == {}


def test_summary_renders_from_json(summ: Any, tmp_path: Path) -> None:
    summ.write_markdown({"m": _tune()}, tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "Chosen per kind, class (class:cat, class:dog): trial c" in text
    assert "Chosen per kind, random + ids (ids:3@x.txt, random:0.1): trial b" in text


def test_another_studys_intro_opens_the_summary(summ: Any, tmp_path: Path) -> None:
    summ.write_markdown({"m": _tune()}, tmp_path, intro="# Another study's tunes\n\nIts protocol.\n")
    text = (tmp_path / "summary.md").read_text()
    assert text.startswith("# Another study's tunes\n\nIts protocol.\n\n## m")
    assert "held-out frontier" not in text
