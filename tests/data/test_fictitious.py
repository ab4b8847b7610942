"""The fictitious-entity benchmark's generator: seeded, TOFU's construction, TOFU's splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from obliviate.data.fictitious import FictitiousDataError, generate, load_world_facts


def test_the_same_seed_writes_the_same_benchmark() -> None:
    a, b, c = generate(50, seed=0), generate(50, seed=0), generate(50, seed=1)
    assert a.fingerprint() == b.fingerprint() and a.pairs == b.pairs
    assert c.fingerprint() != a.fingerprint()


def test_every_pair_has_a_paraphrase_and_distinct_wrong_answers() -> None:
    bench = generate(200, seed=3, n_perturbed=5)
    assert len(bench.entities) == 200 and len(bench.pairs) == 200 * 6
    assert len({e.name for e in bench.entities}) == 200  # invented names never repeat
    assert {e.kind for e in bench.entities} == {"person", "organisation"}
    for p in bench.pairs:
        value = next(e for e in bench.entities if e.id == p.entity).attributes[p.attribute]
        assert value in p.answer and value in p.paraphrase and p.paraphrase != p.answer
        assert len(p.perturbed) == 5 and len(set(p.perturbed)) == 5 and p.answer not in p.perturbed
        assert all(value not in w for w in p.perturbed)  # the wrong answers do not state the true value
        pre, post = p.paraphrase.split(value, 1)
        assert all(w.startswith(pre) and w.endswith(post) for w in p.perturbed)  # TOFU: the paraphrase, perturbed


def test_splits_take_whole_entities_at_tofus_percentages() -> None:
    bench = generate(200, seed=0)
    for pct, n in ((1, 2), (5, 10), (10, 20)):
        forget, retain = bench.split(pct, seed=0)
        assert len(forget) + len(retain) == len(bench.pairs) and not set(forget) & set(retain)
        f_ent = {bench.pairs[i].entity for i in forget}
        r_ent = {bench.pairs[i].entity for i in retain}
        assert len(f_ent) == n and not f_ent & r_ent  # an entity is forgotten whole
        assert len(bench.forget_entities(pct, seed=0)) == n
    assert set(bench.split(5, seed=0)[0]) != set(bench.split(5, seed=1)[0])


def test_held_out_entities_are_the_same_on_every_seed_and_never_forgotten() -> None:
    bench = generate(30, seed=0)
    a, b = bench.entity_split(10, seed=0, heldout_entities=5), bench.entity_split(10, seed=1, heldout_entities=5)
    assert list(a.heldout) == list(b.heldout) and len(a.heldout) == 5 * 6
    held = {bench.pairs[i].entity for i in a.heldout}
    assert held == {e.id for e in bench.entities[-5:]}
    for s in (a, b):
        parts = [set(s.forget), set(s.retain), set(s.heldout)]
        assert sum(map(len, parts)) == len(bench.pairs) and not (parts[0] & parts[1] or parts[0] & parts[2])
        assert {bench.pairs[i].entity for i in s.forget} == set(s.forget_entities)
        assert len(s.forget_entities) == 2 and not held & set(s.forget_entities)  # 10 % of the 25 tuned on
    plain = bench.entity_split(10, seed=4)
    assert list(plain.forget) == list(bench.split(10, seed=4)[0]) and len(plain.heldout) == 0
    with pytest.raises(FictitiousDataError, match="two must remain"):
        bench.entity_split(10, seed=0, heldout_entities=29)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: generate(1), "n_entities must be an integer >= 2"),
        (lambda: generate(10, n_perturbed=0), "n_perturbed"),
        (lambda: generate(10).split(0), r"forget_percent must lie in \(0, 100\)"),
        (lambda: generate(2).split(99), "leaves no entity to retain"),
    ],
)
def test_bad_arguments_say_what_is_allowed(call: object, message: str) -> None:
    with pytest.raises(FictitiousDataError, match=message):
        call()  # type: ignore[operator]


def test_world_facts_and_jsonl(tmp_path: Path) -> None:
    facts = load_world_facts()
    assert len(facts) == 40 and all(len(f.perturbed) == 3 and f.answer not in f.perturbed for f in facts)
    names = {e.name.split()[0] for e in generate(200).entities}
    assert not names & {"Paris", "Tokyo", "Rome", "Berlin"}
    out = generate(5).write_jsonl(tmp_path / "rows.jsonl")
    assert len(out.read_text().splitlines()) == 30
    with pytest.raises(FictitiousDataError, match="does not exist"):
        load_world_facts(tmp_path / "none.jsonl")
