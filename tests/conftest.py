"""Shared fixtures: seeds reset per test, the tiny digits problem, and the real CIFAR-10 path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from obliviate.testing import TinyProblem, tiny_problem

CIFAR10_ROOT = Path(os.environ.get("OBLIVIATE_CIFAR10", Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"))


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


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    if not (CIFAR10_ROOT / "train.npz").is_file():
        pytest.skip(f"real CIFAR-10 arrays not found at {CIFAR10_ROOT} (set OBLIVIATE_CIFAR10)")
    return CIFAR10_ROOT


def load_bench_script(name: str) -> Any:
    """Import ``bench/NAME.py`` as module ``NAME`` (registered in ``sys.modules``: dataclasses
    resolve their module by name)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
