"""Shared fixtures: seeds reset per test, the tiny digits problem, and the real CIFAR-10 path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from obliviate.testing import TinyProblem, tiny_problem

CIFAR10_ROOT = Path(
    os.environ.get("OBLIVIATE_CIFAR10", Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10")
)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or fill the user's model cache (~/.cache/obliviate)."""
    os.environ["OBLIVIATE_CACHE"] = str(tmp_path_factory.mktemp("obliviate-cache"))


@pytest.fixture(autouse=True)
def _reset_seeds() -> None:
    torch.manual_seed(0)
    # 2 threads on the 2-core CI machine; OBLIVIATE_TEST_THREADS=1 on a machine shared with other jobs
    torch.set_num_threads(int(os.environ.get("OBLIVIATE_TEST_THREADS", max(1, min(2, os.cpu_count() or 1)))))


@pytest.fixture(scope="session")
def tiny() -> TinyProblem:
    """Digits with class 3 to forget and a trained narrow CNN (shared; copy before mutating)."""
    return tiny_problem()


@pytest.fixture(scope="session")
def tiny_random() -> TinyProblem:
    """Digits with a random 10 % forget set."""
    from obliviate.data import RandomForget

    return tiny_problem(RandomForget(0.1))


MEMORISED_HELDOUT = np.arange(0, 450, 2)  # the calibrated-stop tests' held-out rows: every other test row


@pytest.fixture(scope="session")
def memorised() -> TinyProblem:
    """A random 10 % request on a small CNN trained to memorise digits (no augmentation, no weight
    decay): forget loss far below the calibrated-stop tests' held-out rows', and the calibrated
    NegGrad+ reaching the held-out loss and the held-out error within its budget. The
    calibrated-stop tests read these properties. How many epochs give them depends on the
    machine's floating point (one CPU: 35, where 40 made the ascent miss the target within the
    budget; an AMD EPYC: 30 — at 35 it memorised so hard that the error target was not reached),
    so the epochs are the first of 35, 30, 25, 40 whose model has them (≈ 5 s each)."""
    import torch

    from obliviate.data import RandomForget, load_dataset, split_indices
    from obliviate.methods import UnlearnData, get_method, run_method
    from obliviate.models import create_model
    from obliviate.testing import TINY_TRAIN
    from obliviate.training import fit, make_loader

    ds = load_dataset("digits")
    split = split_indices(ds.label_info(), RandomForget(0.1), 0)
    problem = None
    for epochs in (35, 30, 25, 40):
        tc = TINY_TRAIN.with_(epochs=epochs, augment=False, weight_decay=0.0)
        model = create_model("small_cnn", num_classes=10, in_chans=1, seed=0, width=0.5)
        fit(model, make_loader(ds, torch.arange(len(ds.train_labels)), tc, 0), tc, device=torch.device("cpu"))
        problem = TinyProblem(ds, split, model, tc, width=0.5)
        fired = []
        for statistic in ("mean", "error"):
            m = get_method("calibrated_neggrad")({"stop_statistic": statistic})
            data = UnlearnData(ds, split, m.uses, validation_rows=MEMORISED_HELDOUT)
            info = run_method(m, model, data, problem.context(0))[0].info
            what = "error" if statistic == "error" else "loss"
            fired.append(info[f"stop_forget_{what}"] >= info[f"stop_heldout_{what}"])
        if all(fired):
            return problem
    assert problem is not None
    return problem  # none had every property: the tests that read them say which is missing


@pytest.fixture(scope="session")
def smoothed() -> TinyProblem:
    """A random 10 % request on a small CNN trained 30 epochs with label smoothing 0.2 (as
    airbench is) and no augmentation, every other of the first 450 test rows held out: the forget
    rows' loss (0.197 nats) sits below the held-out rows' (0.237), and no row is so confident that
    its gradient vanishes (≈ 5.5 s)."""
    import numpy as np

    from obliviate.data import RandomForget, load_dataset, split_indices
    from obliviate.models import create_model
    from obliviate.testing import TINY_TRAIN
    from obliviate.training import fit, make_loader

    ds = load_dataset("digits")
    tc = TINY_TRAIN.with_(epochs=30, augment=False, weight_decay=0.0, label_smoothing=0.2)
    model = create_model("small_cnn", num_classes=10, in_chans=1, seed=0, width=0.5)
    fit(model, make_loader(ds, torch.arange(len(ds.train_labels)), tc, 0), tc, device=torch.device("cpu"))
    return TinyProblem(
        ds,
        split_indices(ds.label_info(), RandomForget(0.1), 0),
        model,
        tc,
        width=0.5,
        validation_rows=np.arange(0, 450, 2),
    )


@pytest.fixture(scope="session")
def tiny_heldout(tiny_random: TinyProblem) -> TinyProblem:
    """``tiny_random`` with every other of the first 450 test rows as the validation split (for
    methods that read held-out rows)."""
    import dataclasses

    import numpy as np

    return dataclasses.replace(tiny_random, validation_rows=np.arange(0, 450, 2))


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    if not (CIFAR10_ROOT / "train.npz").is_file():
        pytest.skip(f"real CIFAR-10 arrays not found at {CIFAR10_ROOT} (set OBLIVIATE_CIFAR10)")
    return CIFAR10_ROOT


def load_bench_script(name: str) -> Any:
    """Import ``bench/QUESTION/NAME.py`` (one folder per question) as module ``NAME`` (registered in
    ``sys.modules``: dataclasses resolve their module by name)."""
    import importlib.util
    import sys

    found = sorted((Path(__file__).resolve().parents[1] / "bench").glob(f"*/{name}.py"))
    assert len(found) == 1, f"bench/*/{name}.py: {found or 'not found'}"
    path = found[0]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_llm() -> Any:
    """Run an LLM study given as a plain dict through the one study runner (what ``obliviate run``
    does with a YAML file); ``progress`` receives every stage line."""
    import contextlib
    from collections.abc import Callable

    from obliviate.study import StudyRunner, parse_study

    class _Say:
        def __init__(self, sink: Callable[[str], None] | None) -> None:
            self.sink = sink

        def stage(self, text: str) -> None:
            if self.sink is not None:
                self.sink(text)

        def steps(self, desc: str) -> Any:
            return contextlib.nullcontext(lambda _ev: None)

    def run(
        spec: dict[str, Any],
        out_dir: Path,
        *,
        progress: Callable[[str], None] | None = None,
        cache_dir: Path | None = None,
    ) -> list[dict[str, Any]]:
        study = parse_study({"name": "llm-study", "task": "llm", **spec})
        return StudyRunner(study, out_dir, cache_dir=cache_dir, progress=_Say(progress)).run()

    return run
