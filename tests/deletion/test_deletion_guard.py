"""The deletion path on a model nobody here tuned: the guard (a result that wrecks utility or
diverges is rolled back, never delivered), the audit's power (an original the audit cannot
separate never yields "indistinguishable"), the user's own architecture through the CLI
(``obliviate import`` + ``--model-factory``), tied weights, salted ledger ids, and one output
folder whichever door the request came through."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import obliviate
from obliviate.cli import main
from obliviate.deletion import DeletionError, DeletionRefused, verify


def _problem(seed: int = 0, n: int = 1200) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    y = (x @ torch.randn(16, 4, generator=g)).argmax(1)
    return x, y


def _loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))


def _trained(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    return _loop(_mlp(0), x[:800], y[:800], 0).eval()


@pytest.mark.fault
def test_a_method_that_wrecks_utility_is_rolled_back_never_delivered() -> None:
    x, y = _problem()
    net = _trained(x, y)
    f, r = torch.arange(0, 40), torch.arange(40, 800)
    wreck = {"lr": 3.0, "beta": 0.0, "epochs": 0.5, "forget_loss_cap": None}  # pure ascent at a huge step
    res = obliviate.unlearn(
        net,
        forget=(x[f], y[f]),
        retain=(x[r], y[r]),
        heldout=(x[800:], y[800:]),
        method="neggrad_plus",
        config=wreck,
        model_factory=_mlp,
        train_fn=_loop,
    )
    ev = res.evidence
    first = ev["attempts"][0]
    assert first["method"] == "neggrad_plus" and not first["passed"]
    assert any("accuracy fell" in why or "diverged" in why for why in first["failures"])
    # what was delivered is the user's own retraining, not the wrecked model
    assert ev["outcome"] == "exact" and ev["method"]["name"] == "retrain" and not ev["utility_violations"]
    assert (
        ev["after"]["heldout"]["accuracy"]
        >= ev["before"]["heldout"]["accuracy"] - ev["tolerance"]["heldout"]["accuracy"]
    )
    assert "rolled back" in ev["verdict"] and ev["verdict"].startswith("EXACT")
    # with retraining forbidden nothing is delivered, and the evidence says why
    with pytest.raises(DeletionRefused) as e:
        obliviate.unlearn(
            net,
            forget=(x[f], y[f]),
            retain=(x[r], y[r]),
            heldout=(x[800:], y[800:]),
            method="neggrad_plus",
            config=wreck,
            fallback="refuse",
        )
    assert e.value.evidence["outcome"] == "refused" and e.value.evidence["verdict"].startswith("REFUSED")
    assert e.value.evidence["attempts"][0]["failures"]


@pytest.mark.fault
def test_a_diverged_attempt_is_a_failure_not_a_result() -> None:
    x, y = _problem(1)
    net = _trained(x, y)
    f, r = torch.arange(0, 40), torch.arange(40, 800)
    res = obliviate.unlearn(
        net,
        forget=(x[f], y[f]),
        retain=(x[r], y[r]),
        heldout=(x[800:], y[800:]),
        method="neggrad_plus",
        config={"lr": 1e8, "beta": 0.0, "forget_loss_cap": None},
        model_factory=_mlp,
        train_fn=_loop,
    )
    first = res.evidence["attempts"][0]
    assert not first["passed"]
    json.dumps(res.evidence, allow_nan=False)  # nothing non-finite reaches the record
    assert res.evidence["method"]["name"] == "retrain"


def test_an_original_the_audit_cannot_separate_never_reads_indistinguishable() -> None:
    """A model that generalises (it treats its training rows like unseen ones): the audit cannot see
    the forget rows even in the original, so the outcome is 'not verifiable', never a success."""
    x, y = _problem(3, n=4000)
    net = _loop(nn.Linear(16, 4), x[:3000], y[:3000], 0).eval()  # a linear model on linear labels: no memory
    f, r = torch.arange(0, 60), torch.arange(60, 3000)
    res = obliviate.unlearn(
        net,
        forget=(x[f], y[f]),
        retain=(x[r], y[r]),
        heldout=(x[3000:], y[3000:]),
        model_factory=lambda s: nn.Linear(16, 4),
        train_fn=_loop,
    )
    ev = res.evidence
    assert ev["audit_power"]["has_power"] is False
    assert ev["outcome"] == "not verifiable" and ev["verdict"].startswith("NOT VERIFIABLE AT THIS SIZE")
    assert "indistinguishable" not in ev["verdict"].lower()
    assert ev["membership"]["unlearned"]["level"] == "no power"
    assert "proves nothing" in ev["membership"]["unlearned"]["verdict"]
    html = obliviate.deletion.render_html(ev)
    assert "indistinguishable" not in html.lower() and "NOT VERIFIABLE" in html


@pytest.mark.bad_input
def test_method_original_is_refused_and_the_evidence_measures_doing_nothing() -> None:
    x, y = _problem(4)
    net = _trained(x, y)
    f, r = torch.arange(0, 40), torch.arange(40, 800)
    with pytest.raises(DeletionError, match="changes nothing"):
        obliviate.unlearn(net, forget=(x[f], y[f]), retain=(x[r], y[r]), heldout=(x[800:], y[800:]), method="original")
    ref = _loop(_mlp(1), x[40:800], y[40:800], 1).eval()
    res = obliviate.unlearn(
        net,
        forget=(x[f], y[f]),
        retain=(x[r], y[r]),
        heldout=(x[800:], y[800:]),
        reference=ref,
        train_fn=_loop,
        model_factory=_mlp,
    )
    r_ = res.evidence["reference"]
    assert r_["doing_nothing_gap_points"] >= 0 and "doing nothing" in res.evidence["verdict"]
    # the gap is the study's protocol (gap_to_retrain's four components)
    assert set(r_["gap"]) == {"forget_acc", "retain_acc", "test_acc", "mia_efficacy", "avg"}
    if res.evidence["outcome"] != "exact":  # a delivered approximate result is no farther than doing nothing
        assert r_["avg_gap_points"] <= r_["doing_nothing_gap_points"]


class Tied(nn.Module):
    """An embedding and a head sharing one weight (as GPT-2's), over a bag of 8 token ids."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(4, 16)
        self.body = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))


def test_tied_weights_hash_and_save(tmp_path: Path) -> None:
    x, y = _problem(5)
    torch.manual_seed(0)
    net = _loop(Tied(), x[:800], y[:800], 0).eval()
    assert net.head.weight.data_ptr() == net.emb.weight.data_ptr()
    h = obliviate.deletion.weights_sha256(net)
    assert h == obliviate.deletion.weights_sha256(net) and len(h) == 64
    f, r = torch.arange(0, 30), torch.arange(30, 800)
    res = obliviate.unlearn(
        net,
        forget=(x[f], y[f]),
        retain=(x[r], y[r]),
        heldout=(x[800:], y[800:]),
        method="finetune",
        config={"epochs": 0.2},
        fallback="refuse",
        out=tmp_path / "o",
    )
    assert res.model.head.weight.data_ptr() == res.model.emb.weight.data_ptr()  # still tied
    assert verify(tmp_path / "o") == []
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "o" / "model.safetensors"))
    assert torch.equal(saved["head.weight"], saved["emb.weight"])


def test_api_writes_the_folder_the_cli_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from obliviate.data import load_dataset

    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--model",
                "small_cnn",
                "--width",
                "0.5",
                "--epochs",
                "3",
                "--out",
                str(tmp_path / "m0"),
                "-q",
            ]
        )
        == 0
    )
    (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in range(20)))
    assert (
        main(
            [
                "unlearn",
                str(tmp_path / "m0"),
                "--forget",
                f"ids:{tmp_path / 'ids.txt'}",
                "--exact",
                "--out",
                str(tmp_path / "cli"),
            ]
        )
        == 0
    )
    from obliviate.models import load_checkpoint

    model, _ = load_checkpoint(tmp_path / "m0")
    ds = load_dataset("digits")
    xs = (ds.train_images.float() / 255 - ds.mean[0]) / ds.std[0]
    monkeypatch.setenv("OBLIVIATE_LEDGER_SALT", "operator-secret")
    obliviate.unlearn(
        model,
        forget=(xs[:20], ds.train_labels[:20]),
        retain=(xs[20:], ds.train_labels[20:]),
        heldout=((ds.test_images.float() / 255 - ds.mean[0]) / ds.std[0], ds.test_labels),
        exact=True,
        out=tmp_path / "api",
        request_id="req-api",
        ids=list(range(20)),
        ledger_ids="salted",
        class_names=list(ds.class_names),
    )
    files = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "api").iterdir())
    assert files == ["evidence.html", "evidence.json", "ledger.jsonl", "model.json", "model.safetensors"]
    cli_ev = json.loads((tmp_path / "cli" / "evidence.json").read_text())
    api_ev = json.loads((tmp_path / "api" / "evidence.json").read_text())
    assert set(cli_ev) == set(api_ev) and api_ev["request"]["id"] == "req-api"
    assert verify(tmp_path / "api") == [] and verify(tmp_path / "cli") == []
    entry = json.loads((tmp_path / "api" / "ledger.jsonl").read_text().splitlines()[0])
    assert entry["ids"] == [] and len(entry["ids_hmac"]) == 20 and api_ev["ledger"]["ids"] == "salted"
    with pytest.raises(DeletionError, match="already exists"):  # refused before any work
        obliviate.unlearn(
            model, forget=(xs[:20], ds.train_labels[:20]), retain=(xs[20:], ds.train_labels[20:]), out=tmp_path / "api"
        )


FACTORY = """
from torch import nn

def make(num_classes):
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, num_classes))
"""


def test_cli_brings_the_users_own_architecture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """A model the zoo does not know, trained by the user's own loop and saved as a plain state dict,
    goes through `obliviate import` and `obliviate unlearn --model-factory`; each wrong step is told
    what to do."""
    from obliviate.data import load_dataset

    (tmp_path / "usermodels.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("usermodels", None)
    import usermodels  # type: ignore[import-not-found]

    ds = load_dataset("digits")
    xs = (ds.train_images.float() / 255 - ds.mean[0]) / ds.std[0]
    net = _loop(usermodels.make(10), xs, ds.train_labels, 0)
    torch.save(net.state_dict(), tmp_path / "model.pt")
    (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in range(0, 60, 3)))
    forget = ["--forget", f"ids:{tmp_path / 'ids.txt'}"]
    # a plain state dict is not a checkpoint: the error says how to import it
    assert main(["unlearn", "model.pt", *forget, "--out", "o"]) == 2
    assert "obliviate import" in capsys.readouterr().err
    assert main(["import", "model.pt", "--model-factory", "usermodels:nope", "--dataset", "digits", "--out", "ck"]) == 2
    assert "has no function 'nope'" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    assert main(["import", "junk.pt", "--model-factory", "usermodels:make", "--dataset", "digits", "--out", "ck"]) == 2
    assert "weights_only=True" in capsys.readouterr().err
    assert (
        main(
            [
                "import",
                "model.pt",
                "--model-factory",
                "usermodels:make",
                "--dataset",
                "digits",
                "--train-json",
                '{"optimizer": "adamw", "lr": 0.01, "epochs": 20, "batch_size": 256}',
                "--out",
                "ck",
            ]
        )
        == 0
    )
    meta = json.loads((tmp_path / "ck.json").read_text())
    assert meta["model"]["name"] == "factory:usermodels:make" and meta["dataset_fingerprint"]
    assert meta["imported_from"]["file"] == "model.pt" and meta["recipe_source"].startswith("the user's")
    assert meta["input_normalisation"]["source"] == "the dataset's own statistics"
    assert (
        main(
            [
                "import",
                "model.pt",
                "--model-factory",
                "usermodels:make",
                "--dataset",
                "digits",
                "--mean",
                "0.5,0.5",
                "--std",
                "0.5,0.5",
                "--out",
                "ck2",
            ]
        )
        == 2
    )
    assert "1 value(s) each" in capsys.readouterr().err
    # the factory is named by the caller, never imported from the file
    assert main(["unlearn", "ck", *forget, "--out", "o"]) == 2
    assert "--model-factory usermodels:make" in capsys.readouterr().err
    assert main(["unlearn", "ck", *forget, "--model-factory", "usermodels:make", "--out", "o"]) == 0
    ev = json.loads((tmp_path / "o" / "evidence.json").read_text())
    assert (
        ev["outcome"] in ("exact", "verified", "not verifiable") and ev["recipe"]["model_factory"] == "usermodels:make"
    )
    assert main(["ledger", "verify", "o"]) == 0


def test_the_evidence_page_reads_on_a_390px_phone(tmp_path: Path) -> None:
    """Laid out by headless Chromium 390 px wide: nothing sticks out of the page (every value wraps),
    and the outcome is the first thing on it."""
    import os

    from obliviate.report.browser import check_report, find_browser

    if find_browser() is None:
        if os.environ.get("OBLIVIATE_REQUIRE_BROWSER") == "1":
            pytest.fail("no Chromium-family browser on PATH; .ci/run installs Debian's chromium")
        pytest.skip("no Chromium-family browser on PATH (apt-get install chromium)")
    x, y = _problem(6)
    net = _trained(x, y)
    f, r = torch.arange(0, 40), torch.arange(40, 800)
    refs = [_loop(_mlp(s), x[40:800], y[40:800], s).eval() for s in (1, 2)]
    res = obliviate.unlearn(
        net,
        forget=(x[f], y[f]),
        retain=(x[r], y[r]),
        heldout=(x[800:], y[800:]),
        method="neggrad_plus",
        config={"lr": 3.0, "beta": 0.0, "epochs": 0.5, "forget_loss_cap": None},
        references=refs,
        train_fn=_loop,
        model_factory=_mlp,
        request_id="req-a-long-identifier-that-must-wrap-0123456789abcdef",
    )
    page = tmp_path / "evidence.html"
    page.write_text(obliviate.deletion.render_html(res.evidence))
    r_ = check_report(page, width=500, height=844, page_width=390)
    assert r_["width"] == 390 and r_["overflowing"] == [], f"clipped at 390 px: {r_['overflowing'][:10]}"
    assert r_["markers"] == []
    html = page.read_text()
    assert html.index("EXACT") < html.index("What was asked") and "rolled back" in html


def test_rows_the_checkpoint_never_trained_on_stay_out_of_the_retain_set(tmp_path: Path, capsys: Any) -> None:
    """A model trained without ids A (``train --forget ids:A``): a later request's retain set must
    not teach A back, and ids of A in the request are reported as never trained on."""
    (tmp_path / "a.txt").write_text("".join(f"{i}\n" for i in range(0, 30)))
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--model",
                "small_cnn",
                "--width",
                "0.5",
                "--epochs",
                "2",
                "--forget",
                f"ids:{tmp_path / 'a.txt'}",
                "--out",
                str(tmp_path / "m0"),
                "-q",
            ]
        )
        == 0
    )
    (tmp_path / "b.txt").write_text("".join(f"{i}\n" for i in range(20, 50)))
    assert (
        main(
            [
                "unlearn",
                str(tmp_path / "m0"),
                "--forget",
                f"ids:{tmp_path / 'b.txt'}",
                "--exact",
                "--out",
                str(tmp_path / "m1"),
            ]
        )
        == 0
    )
    ev = json.loads((tmp_path / "m1" / "evidence.json").read_text())
    assert ev["request"]["ids"]["never_trained_on"] == list(range(20, 30)) and ev["request"]["ids"]["count"] == 20
    assert ev["data"]["retain_rows_total"] == 1347 - 30 - 20
    capsys.readouterr()
    (tmp_path / "c.txt").write_text("3\n4\n")  # every id already outside the training data
    assert (
        main(["unlearn", str(tmp_path / "m0"), "--forget", f"ids:{tmp_path / 'c.txt'}", "--out", str(tmp_path / "m2")])
        == 2
    )
    assert "left out by the model's own training request" in capsys.readouterr().err
    assert not (tmp_path / "m2").exists()
    # the original itself is no retrained reference
    assert (
        main(
            [
                "unlearn",
                str(tmp_path / "m0"),
                "--forget",
                f"ids:{tmp_path / 'b.txt'}",
                "--reference",
                str(tmp_path / "m0"),
                "--out",
                str(tmp_path / "m3"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "has the weights of the original" in err
