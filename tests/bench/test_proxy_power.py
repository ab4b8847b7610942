"""The memorisation proxies' power, read from a study's group records: Spearman's ρ against the φ
of the models that never saw the rows, and the AUC for the rows they put below even odds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import load_bench_script


@pytest.fixture(scope="module")
def pp() -> Any:
    return load_bench_script("proxy_power")


def _group(proxy: list[float], final: list[float], unseen: list[list[float]]) -> dict[str, Any]:
    return {
        "request": "random:0.1",
        "seed": 0,
        "audit": {
            "original_training_confidence_forget": proxy,
            "original_phi_forget": final,
            "retrained_phi_forget": unseen[0],
            "reference_phi_forget": unseen[1:],
        },
    }


def test_a_proxy_that_orders_rows_as_the_unseen_models_do_scores_one_and_a_reversed_one_minus_one(
    pp: Any, tmp_path: Path
) -> None:
    unseen = [[-2.0, -1.0, 1.0, 3.0, 4.0], [-1.5, -0.5, 0.5, 2.5, 5.0]]
    groups = tmp_path / "study" / "groups"
    groups.mkdir(parents=True)
    (groups / "a.json").write_text(json.dumps(_group([0.1, 0.2, 0.5, 0.8, 0.9], [5.0, 4.0, 3.0, 2.0, 1.0], unseen)))
    (groups / "old.json").write_text(json.dumps({"request": "x", "seed": 0, "audit": {}}))  # no proxy: skipped
    whole_class = {**_group([0.1, 0.2, 0.5, 0.8, 0.9], [5.0] * 5, unseen), "request": "class:airplane"}
    (groups / "c.json").write_text(json.dumps(whole_class))  # a whole class: nothing to rank, skipped
    assert pp.main(["--study", str(tmp_path / "study")]) == 0
    (row,) = json.loads((tmp_path / "proxy_power.json").read_text())
    assert row["learning_speed_spearman"] == 1.0 and row["learning_speed_auc_hard"] == 1.0
    assert row["final_phi_spearman"] == -1.0 and row["final_phi_auc_hard"] == 0.0
    assert row["rows_below_even_odds"] == 2 and row["unseen_models"] == 2


def test_unrelated_proxy_scores_near_zero(pp: Any) -> None:
    rng = np.random.default_rng(0)
    unseen = rng.normal(size=(3, 400))
    row = pp.group_power(_group(rng.random(400).tolist(), rng.normal(size=400).tolist(), unseen.tolist()))
    assert abs(row["learning_speed_spearman"]) < 0.15 and abs(row["learning_speed_auc_hard"] - 0.5) < 0.1


@pytest.mark.bad_input
def test_a_study_without_the_proxy_says_so(pp: Any, tmp_path: Path) -> None:
    (tmp_path / "s" / "groups").mkdir(parents=True)
    with pytest.raises(SystemExit):
        pp.main(["--study", str(tmp_path / "s")])
    (tmp_path / "s" / "groups" / "g.json").write_text(json.dumps({"request": "x", "seed": 0, "audit": {}}))
    with pytest.raises(SystemExit):
        pp.main(["--study", str(tmp_path / "s")])
