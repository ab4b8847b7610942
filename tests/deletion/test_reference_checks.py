"""A retrained reference is checked before anything is judged against it: the same architecture
(every field of its spec, not only the name), the same data (content fingerprint), other weights
than the model under test and its original, and never shown the forget ids according to its own
recorded training request and the exact deletions of its ledger. A contradiction is refused
(exit 2, nothing written); what the records cannot settle is reported as unverified, with why,
in the audit's output and in the evidence's verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from obliviate.cli import main
from obliviate.data import load_dataset

pytestmark = pytest.mark.bad_input


def _train(out: Path, *extra: str, width: str = "0.25", epochs: str = "1") -> Path:
    args = ["train", "--dataset", "digits", "--model", "small_cnn", "--width", width, "--epochs", epochs]
    assert main([*args, *extra, "--out", str(out), "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("refs")
    ds = load_dataset("digits")
    threes = np.asarray(ds.train_ids)[np.asarray(ds.train_labels) == 3]
    (d / "f.txt").write_text("".join(f"{i}\n" for i in threes[:20]))
    (d / "other.txt").write_text("".join(f"{i}\n" for i in threes[-20:]))
    return {
        "ids": d / "f.txt",
        "original": _train(d / "m0"),
        "retrained": _train(d / "ref", "--forget", f"ids:{d / 'f.txt'}", "--seed", "1"),
        "wider": _train(d / "wide", "--forget", f"ids:{d / 'f.txt'}", width="0.5"),
        "other_data": _train(d / "sub", "--train-per-class", "100"),
        "trained_on_them": _train(d / "full", "--seed", "2"),
        "wrong_ids": _train(d / "wrong", "--forget", f"ids:{d / 'other.txt'}"),
        "class_3": _train(d / "no3", "--forget", "3"),
    }


def _audit(models: dict[str, Path], ref: str, tmp_path: Path, target: str = "original") -> int:
    return main(
        [
            "audit",
            str(models[target]),
            "--forget",
            f"ids:{models['ids']}",
            "--reference",
            str(models[ref]),
            "--json",
            str(tmp_path / "a.json"),
        ]
    )


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("wider", "another architecture than the checkpoint (width: 0.5 vs 0.25)"),
        ("other_data", "trained on other data"),
        ("trained_on_them", "was trained with 20 of the forgotten ids"),
        ("wrong_ids", "was trained with 20 of the forgotten ids"),
        ("original", "has the weights of the audited model"),
    ],
)
def test_audit_refuses_a_reference_that_is_not_one(
    models: dict[str, Path], tmp_path: Path, capsys: Any, ref: str, message: str
) -> None:
    assert _audit(models, ref, tmp_path) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists()


def test_audit_names_a_verified_and_an_unverified_reference(
    models: dict[str, Path], tmp_path: Path, capsys: Any
) -> None:
    assert _audit(models, "retrained", tmp_path) == 0
    res = json.loads((tmp_path / "a.json").read_text())
    assert res["reference"]["provenance"].startswith("verified: same architecture and data fingerprint")
    assert "unverified" not in res["vs_reference"]
    assert "reference verified" in capsys.readouterr().out
    # trained without every class-3 row: it never saw the forget ids, but it is a retraining of
    # another request (it also lacks 160 rows the audited model holds) - said, not trusted
    assert _audit(models, "class_3", tmp_path) == 0
    res = json.loads((tmp_path / "a.json").read_text())
    prov = res["reference"]["provenance"]
    n3 = int((np.asarray(load_dataset("digits").train_labels) == 3).sum())
    assert prov.startswith("unverified: ") and f"trained without {n3 - 20} rows this model holds" in prov
    assert "(the reference is unverified" in res["vs_reference"]


def test_unlearn_checks_the_reference_and_the_verdict_says_when_it_is_unverified(
    models: dict[str, Path], tmp_path: Path, capsys: Any
) -> None:
    base = ["unlearn", str(models["original"]), "--forget", f"ids:{models['ids']}", "--method", "finetune"]
    base += ["--set", "epochs=0.2"]
    # same zoo name, another width: refused before any work (the name alone used to pass)
    assert main([*base, "--reference", str(models["wider"]), "--out", str(tmp_path / "o1")]) == 2
    assert "another architecture" in capsys.readouterr().err and not (tmp_path / "o1").exists()
    # a reference whose own record is another request: the evidence and its verdict say so
    assert main([*base, "--reference", str(models["class_3"]), "--out", str(tmp_path / "o2")]) == 0
    ev = json.loads((tmp_path / "o2" / "evidence.json").read_text())
    (prov,) = ev["request"]["reference_provenance"]
    assert prov.startswith("unverified: it was also trained without")
    assert "The retrained reference it is judged against is unverified" in ev["verdict"]
    assert "is it a retrained reference?" in (tmp_path / "o2" / "evidence.html").read_text()
    # the lineage's own reference, retrained without exactly these ids: verified, and the verdict
    # carries no caveat
    assert main([*base, "--reference", str(models["retrained"]), "--out", str(tmp_path / "o3")]) == 0
    ev = json.loads((tmp_path / "o3" / "evidence.json").read_text())
    assert ev["request"]["reference_provenance"][0].startswith("verified: ")
    assert "unverified" not in ev["verdict"]
    # the unlearned output's audit: its original is no reference either
    assert _audit({**models, "out": tmp_path / "o3"}, "original", tmp_path, target="out") == 2
    assert "has the weights of the audited model's original" in capsys.readouterr().err
