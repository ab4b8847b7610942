"""The per-example audit against reference models, the probe, honest population attacks and the
study/report wiring — pinned on constructed inputs with known answers, then on a tiny study."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import norm

from obliviate.attacks.per_example import matched_nonmembers, reference_attacks, verdict
from obliviate.metrics import EvalInputs, Outputs, compute_metrics
from obliviate.metrics.membership import AuditInputs, probe_accuracy
from obliviate.report.audit import epsilon_rows, method_verdict, seed_verdict
from obliviate.study.spec import StudySpecError, parse_study


# -- statistics on constructed inputs ------------------------------------------------------------
def _phi_worlds(shifts: tuple[float, ...], k: int = 16, n: int = 1500, m: int = 1500, q: int = 2, seed: int = 0):
    """Per-example means that differ a lot between examples, K reference models, and one target
    model per shift that adds the shift to the forget rows' φ."""
    rng = np.random.default_rng(seed)
    mu_f, mu_h = rng.normal(0, 3, (n, 1)), rng.normal(0, 3, (m, 1))
    refs = [(mu_f + rng.normal(0, 1, (n, q)), mu_h + rng.normal(0, 1, (m, q))) for _ in range(k)]
    # one model-level draw per example shared by the queries (as for a real model), small query noise
    targets = [
        (
            mu_f + s + rng.normal(0, 1, (n, 1)) + rng.normal(0, 0.05, (n, q)),
            mu_h + rng.normal(0, 1, (m, 1)) + rng.normal(0, 0.05, (m, q)),
        )
        for s in shifts
    ]
    return targets, refs


def _phi_world(shift: float, **kw):
    (target,), refs = _phi_worlds((shift,), **kw)
    return target, refs


def test_reference_attacks_recover_a_known_shift_and_chance_without_one() -> None:
    target, refs = _phi_world(1.0)
    v = reference_attacks(target, refs, n_boot=200, seed=0)
    # members' φ ~ N(μ + 1, 1), non-members' N(μ, 1), μ estimated from 16 models: the per-example
    # LiRA score is monotone in φ − μ, so AUC = Φ(1 / √(2 + 2/16)) ≈ 0.752 (a little spread from μ̂)
    truth = norm.cdf(1.0 / np.sqrt(2 + 2 / 16))
    assert v["lira/auc"] == pytest.approx(truth, abs=0.03)
    assert v["lira/auc_lo"] < v["lira/auc"] < v["lira/auc_hi"] and v["lira/auc_hi"] - v["lira/auc_lo"] < 0.08
    assert v["rmia/auc"] > 0.65 and v["k"] == 16.0
    assert v["lira/tpr_at_1pct"] > 0.05 and v["lira/tpr_at_0p1pct"] <= v["lira/tpr_at_1pct"]
    null_t, null_r = _phi_world(0.0, seed=1)
    n = reference_attacks(null_t, null_r, n_boot=200, seed=0)
    for a in ("lira", "rmia"):
        assert n[f"{a}/auc"] == pytest.approx(0.5, abs=0.03)
        assert n[f"{a}/tpr_at_1pct"] < 0.04  # TPR ≈ FPR at chance
    with pytest.raises(ValueError, match="at least 2 reference"):
        reference_attacks(target, refs[:1])


def test_reference_attacks_accept_one_query_columns() -> None:
    (tf, th), refs = _phi_world(1.0, k=4, n=300, m=300, q=1)
    a = reference_attacks((tf[:, 0], th[:, 0]), [(r[0][:, 0], r[1][:, 0]) for r in refs], n_boot=100)
    b = reference_attacks((tf, th), refs, n_boot=100)
    assert a == b


def test_verdict_levels() -> None:
    assert verdict(0.51, 0.49, 0.53, "x")["level"] == "indistinguishable"
    assert verdict(0.70, 0.65, 0.75, "x")["level"] == "distinguishable"
    low = verdict(0.40, 0.35, 0.45, "offline LiRA, K = 4")
    assert low["level"] == "over-forgotten" and "K = 4" in low["text"] and "[0.350, 0.450]" in low["text"]


def test_matched_nonmembers_follow_the_members_class_proportions() -> None:
    rng = np.random.default_rng(0)
    members = np.r_[np.zeros(60, int), np.ones(30, int), np.full(10, 2)]
    candidates = rng.integers(0, 5, 5000)
    rows = matched_nonmembers(members, candidates, seed=3)
    got = np.bincount(candidates[rows], minlength=5)
    assert got[3] == got[4] == 0  # classes the members do not have are left out
    assert np.allclose(got[:3] / got[:3].sum(), [0.6, 0.3, 0.1], atol=0.01)
    assert len(np.unique(rows)) == len(rows)  # without replacement
    assert np.array_equal(rows, matched_nonmembers(members, candidates, seed=3))  # seeded
    one = matched_nonmembers(np.full(50, 4), candidates, seed=0)
    assert np.array_equal(one, np.flatnonzero(candidates == 4))  # one class: every candidate of it
    with pytest.raises(ValueError, match="no held-out row"):
        matched_nonmembers(np.full(5, 7), candidates)


# -- metrics -------------------------------------------------------------------------------------
def _inputs(with_audit: bool = True, draws: int = 1, seed: int = 0) -> EvalInputs:
    rng = np.random.default_rng(seed)

    def outs(n: int, sharp: float) -> Outputs:
        y = torch.as_tensor(rng.integers(0, 4, n))
        z = torch.as_tensor(rng.normal(0, 1, (n, 4)))
        z[torch.arange(n), y] += sharp
        return Outputs(z.float(), y)

    def model(f: float) -> dict[str, Outputs]:
        return {
            "retain": outs(400, 4.0),
            "test": outs(300, 1.0),
            "forget": outs(100, f),
            "test_forget": outs(0, 1.0),
            "test_retain": outs(300, 1.0),
        }

    audit = None
    if with_audit:
        (member, nul), refs = _phi_worlds((1.5, 0.0), k=4, n=100, m=300, seed=seed + 1)
        audit = AuditInputs(
            phi={"unlearned": member, "retrained": nul, "original": member}, references=refs, n_boot=200
        )
    return EvalInputs(
        {"unlearned": model(4.0), "retrained": model(1.0), "original": model(4.0)},
        num_classes=4,
        seed=seed,
        audit=audit,
        draws=draws,
    )


def test_lira_and_rmia_metrics_report_every_audited_model_and_skip_without_references() -> None:
    values, directions = compute_metrics(["lira", "rmia"], _inputs())
    assert values["lira/auc"] > 0.75 and values["lira/auc_lo"] > 0.5  # the unlearned model remembers
    assert values["lira/auc@retrained"] == pytest.approx(0.5, abs=0.1)
    assert values["lira/auc@original"] == values["lira/auc"]
    assert values["lira/k"] == 4 and "rmia/tpr_at_0p1pct@retrained" in values
    assert directions["lira/auc"] == "closest_to_retrained"
    assert directions["lira/auc_lo"] == directions["lira/auc@retrained"] == directions["lira/k"] == "info"
    assert compute_metrics(["lira", "rmia", "linear_probe"], _inputs(with_audit=False)) == ({}, {})


def test_reference_values_are_memoised_across_methods() -> None:
    a, b = _inputs(), _inputs()
    b.memo = a.memo
    compute_metrics(["lira"], a)
    assert ("reference_attacks", "retrained") in a.memo
    a.memo[("reference_attacks", "retrained")] = {**a.memo[("reference_attacks", "retrained")], "lira/auc": -1.0}
    values, _ = compute_metrics(["lira"], b)  # the second method reads the group's value
    assert values["lira/auc@retrained"] == -1.0


def test_linear_probe_finds_a_class_the_classifier_hides() -> None:
    rng = np.random.default_rng(0)

    def feats(separable: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
            y = rng.integers(0, 3, n)
            centres = np.eye(3, 16) * (4.0 if separable else 0.0)
            x = centres[y] + rng.normal(0, 1, (n, 16))
            if not separable:  # class 2 is gone from the features: it looks like class 0 or 1
                x[y == 2] = (np.eye(3, 16) * 4.0)[rng.integers(0, 2, int((y == 2).sum()))] + rng.normal(
                    0, 1, ((y == 2).sum(), 16)
                )
                x[y != 2] += (np.eye(3, 16) * 4.0)[y[y != 2]]
            return x, y

        (xt, yt), (xf, yf) = draw(600), draw(600)
        return {"train": (xt, yt), "test_forget": (xf[yf == 2], yf[yf == 2]), "test_retain": (xf[yf != 2], yf[yf != 2])}

    kept, gone = probe_accuracy(feats(True)), probe_accuracy(feats(False))
    assert kept["probe/test_forget_acc"] > 0.95 and kept["probe/test_retain_acc"] > 0.95
    # class 2 shares the features of classes 0 and 1: at best a third of the pooled rows are its
    assert gone["probe/test_forget_acc"] < 0.45 and gone["probe/test_retain_acc"] > 0.6
    inputs = _inputs()
    inputs.audit.features = {"unlearned": feats(True), "retrained": feats(False)}
    values, directions = compute_metrics(["linear_probe"], inputs)
    assert values["probe/test_forget_acc"] > 0.95 and values["probe/test_forget_acc@retrained"] < 0.45
    assert directions["probe/test_forget_acc"] == "closest_to_retrained"
    assert directions["probe/test_retain_acc"] == "higher"


def test_population_attacks_over_draws_give_a_range_and_one_draw_gives_none() -> None:
    one, _ = compute_metrics(["mia_efficacy", "mia_entropy"], _inputs(False, draws=1))
    assert not any("/draws_" in k for k in one)
    many, directions = compute_metrics(["mia_efficacy", "mia_entropy"], _inputs(False, draws=4))
    for key in ("mia_efficacy/confidence", "mia_entropy/forget_member_rate", "mia_efficacy/entropy@retrained"):
        base, _, role = key.partition("@")
        tail = f"@{role}" if role else ""
        lo, hi = many[f"{base}/draws_lo{tail}"], many[f"{base}/draws_hi{tail}"]
        assert lo <= many[key] <= hi
        assert directions[f"{base}/draws_lo{tail}"] == "info"
    assert many["mia_efficacy/confidence/draws_lo"] < many["mia_efficacy/confidence/draws_hi"]  # the draw matters
    # the first draw is the single-draw value, so it lies in the range
    assert (
        many["mia_efficacy/confidence/draws_lo"]
        <= one["mia_efficacy/confidence"]
        <= many["mia_efficacy/confidence/draws_hi"]
    )


def test_salun_protocol_fits_on_the_test_set_without_the_forgotten_class() -> None:
    from obliviate.attacks.mia import mia_efficacy, svc_attack

    inputs = _inputs(False)
    inputs.forget_classes = (0,)
    values, _ = compute_metrics(["mia_efficacy_salun", "gap_to_retrain_salun", "gap_to_retrain"], inputs)
    r, t, f = (inputs.out(s) for s in ("retain", "test_retain", "forget"))
    svc = svc_attack("confidence", max_per_side=None, seed=0).fit(r.probs, r.labels, t.probs, t.labels)
    assert values["mia_efficacy_salun"] == mia_efficacy(svc, f.probs, f.labels)
    assert "gap_salun/avg" in values and "gap/avg" in values
    assert values["gap_salun/mia_efficacy"] == pytest.approx(
        100 * abs(values["mia_efficacy_salun"] - values["mia_efficacy_salun@retrained"])
    )


# -- spec validation -----------------------------------------------------------------------------
BASE = {
    "name": "t",
    "dataset": "digits",
    "models": ["small_cnn"],
    "requests": [{"kind": "class", "classes": ["3"]}],
    "methods": ["original"],
    "train": {"epochs": 1.0},
}


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "audit, field",
    [
        ({"references": 1}, "audit.references"),
        ({"draws": 0}, "audit.draws"),
        ({"queries": "rotate"}, "audit.queries"),
        ({"n_boot": 10}, "audit.n_boot"),
        ({"reference": 4}, "audit"),
    ],
)
def test_audit_spec_errors_name_the_field(audit: dict, field: str) -> None:
    with pytest.raises(StudySpecError, match=field.replace(".", r"\.")):
        parse_study({**BASE, "audit": audit})


# -- the report's reading ------------------------------------------------------------------------
def _vals(a: float, lo: float, hi: float, rlo: float = 0.45, rhi: float = 0.55) -> dict[str, float]:
    return {
        "lira/auc": a,
        "lira/auc_lo": lo,
        "lira/auc_hi": hi,
        "lira/auc_lo@retrained": rlo,
        "lira/auc_hi@retrained": rhi,
    }


def test_seed_and_method_verdicts() -> None:
    assert seed_verdict(_vals(0.52, 0.48, 0.56))[0] == "indistinguishable"
    assert seed_verdict(_vals(0.80, 0.75, 0.85))[0] == "distinguishable"
    assert seed_verdict(_vals(0.40, 0.36, 0.44))[0] == "over-forgotten"
    # off 0.5 but where the retrained model itself sits: the attack's own bias at this K
    level, text = seed_verdict(_vals(0.42, 0.38, 0.46, rlo=0.40, rhi=0.48))
    assert level == "indistinguishable" and "overlaps the retrained" in text
    runs = [{"seed": 0, "values": _vals(0.52, 0.48, 0.56)}, {"seed": 1, "values": _vals(0.8, 0.75, 0.85)}]
    text = method_verdict(runs, 4)
    assert text.startswith("still recognisable as members on 1 of 2 seed(s) at K = 4") and "seed 1: AUC 0.800" in text


def test_epsilon_rows_pool_references_across_seeds_of_one_forget_set() -> None:
    rng = np.random.default_rng(0)
    n = 40
    groups = {
        f"g{s}": {
            "key": f"g{s}",
            "inputs": {"forget_ids_sha256": "same"},
            "audit": {"reference_phi_forget": rng.normal(0, 1, (4, n)).tolist()},
        }
        for s in (0, 1)
    }
    runs = [
        {"method": m, "seed": s, "group_key": f"g{s}", "audit": {"phi_forget": (rng.normal(0, 1, n) + off).tolist()}}
        for m, off in (("retrain", 0.0), ("original", 8.0))
        for s in (0, 1)
    ]
    eps = epsilon_rows(runs, groups)
    assert eps["original"][2:4] == (2, 8) and eps["original"][0] > eps["retrain"][0] + 0.5
    # fully separated outputs sit at the cap that 2 against 8 models allow
    assert eps["original"][0] == pytest.approx(eps["original"][4]) == pytest.approx(np.log((0.95 - 1 / 3) * 9))
    one_seed = epsilon_rows([r for r in runs if r["seed"] == 0], groups)
    assert one_seed == {}  # ε needs at least 2 unlearned models


# -- a tiny study end to end ---------------------------------------------------------------------
def test_study_trains_references_once_and_reports_the_audit(tmp_path: Path) -> None:
    from obliviate.api import run_study

    spec = parse_study(
        {
            **BASE,
            "train": {"epochs": 2.0, "batch_size": 64, "flip": False},
            "models": [{"name": "small_cnn", "kwargs": {"width": 0.25}}],
            "methods": ["original", "retrain", {"name": "finetune", "config": {"epochs": 1}}],
            "seeds": [0, 1],
            "device": "cpu",
            "audit": {"references": 2, "draws": 2, "n_boot": 100},
        }
    )
    cache = tmp_path / "cache"
    run_study(spec, tmp_path / "out", cache_dir=cache)
    runs = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*.json")]
    groups = [json.loads(p.read_text()) for p in (tmp_path / "out" / "groups").glob("*.json")]
    assert len(runs) == 6 and all(r["status"] == "ok" for r in runs)
    for r in runs:
        v = r["values"]
        assert {
            "lira/auc",
            "lira/auc@retrained",
            "rmia/auc",
            "probe/test_forget_acc@retrained",
            "mia_efficacy/confidence/draws_lo",
            "mia_loss/auc_lo",
            "gap_salun/avg",
        } <= set(v)
        g = next(g for g in groups if g["key"] == r["group_key"])
        assert len(r["audit"]["phi_forget"]) == g["audit"]["forget_rows"] == g["split_sizes"]["forget"]
    for g in groups:
        a = g["audit"]
        assert a["references"] == 2 and len(a["reference_phi_forget"]) == 2 and a["queries"] == ["image"]
        assert [m["seed"] for m in a["references_models"]] == [g["seed"] + 100_003, g["seed"] + 200_006]
    by_method = {r["method"]: r for r in runs if r["seed"] == 0}
    assert by_method["retrain"]["values"]["lira/auc"] == by_method["retrain"]["values"]["lira/auc@retrained"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Membership audit" in report and "offline, K = 2 reference models" in report
    assert "Avg. gap (SalUn protocol)" in report and "seed 1: AUC" in report
    # a second study with the same inputs trains nothing: the references come from the cache
    spec2 = parse_study({**spec.raw, "name": "again"})
    rec = run_study(spec2, tmp_path / "out2", cache_dir=cache)
    g2 = [json.loads(p.read_text()) for p in (tmp_path / "out2" / "groups").glob("*.json")]
    assert rec and all(m["timing_source"] == "model cache" for g in g2 for m in g["audit"]["references_models"])
