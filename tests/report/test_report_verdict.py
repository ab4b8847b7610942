"""The report's conclusion: targets from a study, the noise floor, verdicts, the ranked headline."""

from __future__ import annotations

from typing import Any

import pytest

from obliviate.report.blocks import Details, Document, Para, Table
from obliviate.report.verdict import method_verdict, privacy_paragraph, ranked_rows, summary_sentence, tolerances
from obliviate.study.spec import StudySpecError, parse_study
from obliviate.study.targets import DEFAULT_TARGETS, Target, check_target, noise_floor_components, parse_targets

REQUEST = "class:3"


def _stats(**kv: float) -> dict[str, tuple[float, float, int]]:
    return {k.replace("__", "/"): (v, 0.0, 1) for k, v in kv.items()}


def _run(method: str, seed: int, **vals: float) -> dict[str, Any]:
    return {
        "model": "m",
        "request": REQUEST,
        "method": method,
        "method_name": method,
        "seed": seed,
        "values": {k.replace("__", "/"): v for k, v in vals.items()},
    }


RETRAIN = dict(acc__forget=0.0, acc__retain=0.99, acc__test_retain=0.98, mia_efficacy__confidence=1.0)


@pytest.mark.bad_input
def test_targets_parse_merge_and_name_the_bad_field() -> None:
    t = parse_targets({"class": {"max_gap": 1.0, "min_speedup": 2}})
    assert t["class"] == Target(
        kind="class", max_gap=1.0, min_speedup=2.0, max_class_drop=3.0
    )  # the rest from defaults
    assert t["random"] == DEFAULT_TARGETS["random"]
    assert DEFAULT_TARGETS["ids"].max_gap is None  # within the noise floor
    raw = {
        "name": "s",
        "dataset": "digits",
        "models": ["small_cnn"],
        "requests": [{"kind": "class", "classes": ["3"]}],
        "methods": ["original"],
    }
    assert parse_study({**raw, "targets": {"class": {"max_gap": 2.0}}}).targets["class"].max_gap == 2.0
    for bad, where in (
        ({"klass": {}}, "targets.klass"),
        ({"class": {"gap": 1}}, "targets.class.gap"),
        ({"class": {"max_gap": -1}}, "targets.class.max_gap"),
        ({"random": {"min_speedup": "fast"}}, "targets.random.min_speedup"),
        ([1], "targets"),
    ):
        with pytest.raises(StudySpecError, match=where.replace(".", r"\.")):
            parse_study({**raw, "targets": bad})


def test_noise_floor_is_the_mean_pairwise_gap_of_retrains() -> None:
    a = _run("retrain", 0, **RETRAIN)
    b = _run("retrain", 1, **{**RETRAIN, "acc__retain": 0.97})  # 2 points apart on one of four numbers
    c = _run("retrain", 2, **{**RETRAIN, "acc__retain": 0.98})
    comps = noise_floor_components([a, b, c])
    assert comps is not None
    assert comps["acc/retain"] == pytest.approx((2 + 1 + 1) / 3)
    assert comps["avg"] == pytest.approx(comps["acc/retain"] / 4)
    assert noise_floor_components([a]) is None


def test_check_target_names_the_failed_criteria() -> None:
    t = Target(kind="class", max_gap=0.5, min_speedup=50, max_class_drop=3)
    res = check_target([{"gap/avg": 0.4, "efficiency/speedup": 10.0, "worst_class_drop": 4.0}], t)
    assert not res["passes"] and res["failed"] == ["speed", "class"]
    assert res["reasons"] == ["speed-up 10.0× < 50×", "a retained class loses 4.00 > 3 pts"]
    floor_target = Target(kind="ids", max_gap=None, min_speedup=1)
    ok = {"gap/avg": 0.2, "efficiency/speedup": 5.0}
    assert check_target([ok], floor_target, floor=0.3)["passes"]
    assert check_target([ok], floor_target, floor=0.1)["failed"] == ["gap"]
    assert "needs ≥ 2 seeds" in check_target([ok], floor_target, floor=None)["reasons"][0]


def test_verdicts_name_the_deciding_numbers() -> None:
    ref = _stats(**RETRAIN)
    floor = {"acc/forget": 0.0, "acc/retain": 0.2, "acc/test_retain": 0.3, "mia_efficacy/confidence": 0.0, "avg": 0.125}
    target = Target(kind="class", max_gap=1.0, min_speedup=2, max_class_drop=5)
    assert tolerances(floor)["acc/retain"] == 1.0  # at least one point
    assert (
        method_verdict(_stats(**{**RETRAIN, "gap__avg": 0.1}), ref, floor, target)[0]
        == "indistinguishable from retraining"
    )
    label, why = method_verdict(_stats(**{**RETRAIN, "acc__forget": 0.3, "gap__avg": 7.5}), ref, floor, target)
    assert label == "forgets too little" and "forget acc 30.0 vs retrained 0.0" in why
    label, why = method_verdict(
        _stats(**{**RETRAIN, "acc__retain": 0.90, "worst_class_drop": 9.0, "gap__avg": 2.2}), ref, floor, target
    )
    assert label == "loses utility" and "retain (training) acc 90.0 vs 99.0" in why and "−9.0 pts" in why
    # the retained training rows fitted less tightly, at the retrained model's test accuracy, is not lost utility
    label, why = method_verdict(_stats(**{**RETRAIN, "acc__retain": 0.97, "gap__avg": 0.6}), ref, floor, target)
    assert label == "forgets" and "retain (training) acc 97.0 vs 99.0" in why and "fits the rows it keeps" in why
    label, why = method_verdict(
        _stats(**{**RETRAIN, "acc__test_retain": RETRAIN["acc__test_retain"] - 0.02, "gap__avg": 0.6}),
        ref,
        floor,
        target,
    )
    assert label == "loses utility" and "retained-class test acc" in why
    label, _ = method_verdict(
        _stats(**{**RETRAIN, "acc__forget": 0.3, "acc__test_retain": 0.8, "gap__avg": 12.0}), ref, floor, target
    )
    assert label == "forgets too little and loses utility"
    over = {**RETRAIN, "acc__forget": 0.1, "gap__avg": 2.5}
    label, _ = method_verdict(_stats(**over), _stats(**{**RETRAIN, "acc__forget": 0.4}), floor, target)
    assert label == "over-forgets"
    label, why = method_verdict(_stats(**{**RETRAIN, "acc__retain": 0.985, "gap__avg": 0.3}), ref, floor, target)
    assert label == "forgets" and "within the target ≤ 1.00" in why
    _, why = method_verdict(
        _stats(**{**RETRAIN, "acc__retain": 0.8, "gap__avg": 5.0}), ref, floor, target, exact=True, info={"shards": 5}
    )
    assert "exact by construction" in why and "1/5 of the data" in why
    # MIA-efficacy: higher = more rows judged non-members = more forgotten
    label, why = method_verdict(
        _stats(**{**RETRAIN, "mia_efficacy__confidence": 0.6, "gap__avg": 10.0}), ref, floor, target
    )
    assert label == "forgets too little" and "MIA-efficacy 60.0 vs retrained 100.0" in why
    low = _stats(**{**RETRAIN, "mia_efficacy__confidence": 0.5})
    assert (
        method_verdict(_stats(**{**RETRAIN, "mia_efficacy__confidence": 0.9, "gap__avg": 10.0}), low, floor, target)[0]
        == "over-forgets"
    )
    # nothing to judge against: never "forgets"
    label, why = method_verdict(_stats(gap__avg=30.0), {}, None, target)
    assert label == "not judged" and "retrain" in why


def _study_runs() -> list[dict[str, Any]]:
    runs = []
    for seed in (0, 1):
        runs.append(_run("original", seed, **{**RETRAIN, "acc__forget": 0.97, "gap__avg": 40.0}))
        runs.append(_run("retrain", seed, **{**RETRAIN, "acc__retain": 0.99 - 0.01 * seed, "gap__avg": 0.0}))
        runs.append(
            _run("close", seed, **{**RETRAIN, "gap__avg": 0.1, "efficiency__speedup": 60.0, "worst_class_drop": 1.0})
        )
        runs.append(
            _run(
                "far",
                seed,
                **{
                    **RETRAIN,
                    "acc__forget": 0.5,
                    "gap__avg": 12.0,
                    "efficiency__speedup": 80.0,
                    "worst_class_drop": 1.0,
                },
            )
        )
        runs.append(
            _run(
                "mid",
                seed,
                **{
                    **RETRAIN,
                    "acc__retain": 0.985,
                    "gap__avg": 0.4,
                    "efficiency__speedup": 70.0,
                    "worst_class_drop": 0.0,
                },
            )
        )
    return runs


def test_ranked_headline_draws_floor_and_target_and_keeps_references_apart() -> None:
    from obliviate.report.render import _headline, aggregate

    runs = _study_runs()
    agg = aggregate(runs)
    ranked = ranked_rows(agg, runs, "m", REQUEST, ["original", "retrain", "far", "mid", "close"])
    assert [c["method"] for c in ranked["candidates"]] == ["close", "mid", "far"]
    assert [r["method"] for r in ranked["references"]] == ["original", "retrain"]
    assert ranked["floor"]["avg"] == pytest.approx(0.25)  # retrains 1 point apart on retain acc
    assert ranked["candidates"][0]["label"] == "indistinguishable from retraining"
    assert ranked["candidates"][1]["target"]["passes"]  # 0.4 ≤ 0.5 at 70×
    assert ranked["candidates"][2]["target"]["failed"] == ["gap"]
    text = summary_sentence(ranked)
    assert (
        "**close**" in text
        and "close is within it" in text
        and "reached by close, mid" in text
        and "40.00 pts away" in text
    )
    doc = Document("t")
    _headline(doc, ranked, [0, 1], anchor="headline")
    table, refs = doc.blocks
    assert isinstance(table, Table) and table.id == "headline" and isinstance(refs, Table)
    names = [row[1] for row in table.rows]
    assert names == ["close", "— noise floor —", "mid", "— target —", "far"]  # lines at their place in the ranking
    assert table.row_classes == ["", "mark", "", "mark", ""]
    assert [row[0] for row in refs.rows] == ["original", "retrain"]
    html = doc.to_html()
    assert html.count("<tr class='mark'>") == 2


def test_a_study_without_retrain_or_gap_is_not_ranked_as_if_it_had_them() -> None:
    from obliviate.report.render import _headline, aggregate

    runs = [r for r in _study_runs() if r["method"] != "retrain"]
    ranked = ranked_rows(aggregate(runs), runs, "m", REQUEST, ["original", "far", "mid", "close"])
    assert ranked["retrain_label"] is None and all(c["label"] == "not judged" for c in ranked["candidates"])
    assert "No `retrain` run" in summary_sentence(ranked)
    no_gap = [dict(r, values={k: v for k, v in r["values"].items() if k != "gap/avg"}) for r in _study_runs()]
    ranked = ranked_rows(aggregate(no_gap), no_gap, "m", REQUEST, ["original", "retrain", "far", "mid", "close"])
    assert "unranked" in summary_sentence(ranked)
    doc = Document("t")
    _headline(doc, ranked, [0, 1], anchor="")
    assert "mark" not in doc.blocks[0].row_classes  # no gap column: no lines drawn in another column


def test_privacy_paragraph_says_what_population_attacks_cannot_tell() -> None:
    runs = _study_runs()
    from obliviate.report.render import aggregate

    ranked = ranked_rows(aggregate(runs), runs, "m", REQUEST, ["original", "retrain", "far", "mid", "close"])
    text = privacy_paragraph(
        runs, [{"model": "m", "request": REQUEST, "split_sizes": {"forget": 10}}], "m", REQUEST, ranked
    )
    assert "Population attacks only" in text and "No attack proves the data is gone" in text
    audited = [
        dict(r, values={**r["values"], "lira/k": 4.0, "lira/auc": 0.5, "lira/auc_lo": 0.4, "lira/auc_hi": 0.6})
        for r in runs
    ]
    text = privacy_paragraph(
        audited,
        [{"model": "m", "request": REQUEST, "split_sizes": {"forget": 10}, "audit": {"heldout_rows": 20}}],
        "m",
        REQUEST,
        ranked,
    )
    assert "K = 4" in text and "3 of 3 methods indistinguishable" in text and "about 0.20 wide" in text


def test_details_fold_blocks_in_markdown_and_html() -> None:
    doc = Document("t")
    doc.add(Details("More", [Para("inside"), Table(["a"], [["1"]])]))
    md, html = doc.to_markdown(), doc.to_html()
    assert "<details><summary>More</summary>" in md and "inside" in md and "</details>" in md
    assert (
        "<details><summary>More</summary>" in html
        and "<p>inside</p>" in html
        and html.index("</details>") > html.index("<table>")
    )
