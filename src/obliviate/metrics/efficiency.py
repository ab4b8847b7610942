"""Cost of unlearning, read from ``EvalInputs.run`` (filled by the study runner).

``run`` keys: ``seconds`` (wall time of the unlearning call), ``steps`` (optimizer steps),
``peak_memory_mb`` (the unlearning call's own peak above its start: CUDA allocation, or resident
memory sampled every 5 ms on a CPU — see :class:`obliviate.core.RunStats`), ``retrain_seconds`` and
``retrain_steps`` (the retrained reference's cost). A metric whose keys are absent is skipped
(:class:`MissingInputError`); a present but negative or non-finite value is an error.
"""

from __future__ import annotations

import math

from .base import EvalInputs, Metric, MissingInputError, register_metric


def run_value(inputs: EvalInputs, key: str) -> float:
    """``inputs.run[key]`` as a finite, non-negative float; MissingInputError when absent."""
    if key not in inputs.run or inputs.run[key] is None:
        raise MissingInputError(f"run fact {key!r} was not recorded")
    v = inputs.run[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"run fact {key!r} must be a finite number >= 0, got {v!r}")
    return float(v)


@register_metric("wall_time")
class WallTime(Metric):
    """Wall-clock seconds of the unlearning call: ``efficiency/seconds``."""

    direction = "lower"
    summary = "Wall-clock seconds the unlearning took; lower is better."
    reference = "standard"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        return {"efficiency/seconds": run_value(inputs, "seconds")}


@register_metric("optimizer_steps")
class OptimizerSteps(Metric):
    """Optimizer steps the unlearning took (0 for training-free methods): ``efficiency/steps``."""

    direction = "lower"
    summary = "Optimizer steps the unlearning took; lower is better."
    reference = "standard"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        return {"efficiency/steps": run_value(inputs, "steps")}


@register_metric("speedup")
class Speedup(Metric):
    """Speed-up over retraining: ``efficiency/speedup`` = retrain_seconds / seconds, and, when
    both step counts are recorded and the method took steps, ``efficiency/step_speedup`` =
    retrain_steps / steps. Skipped when the method took under a millisecond (``original``, which
    does nothing: a ratio over a timer's noise is no speed-up)."""

    direction = "higher"
    summary = "Speed-up over retraining (retrain seconds / method seconds); higher is better."
    reference = "standard (e.g. Foster et al., AAAI 2024, SSD runtime comparison)"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        seconds, retrain = run_value(inputs, "seconds"), run_value(inputs, "retrain_seconds")
        if seconds < 1e-3:
            raise MissingInputError(f"speed-up is undefined for a method that took {seconds:.2g} s (< 1 ms)")
        res = {"efficiency/speedup": retrain / seconds}
        if inputs.run.get("steps") and inputs.run.get("retrain_steps") is not None:
            res["efficiency/step_speedup"] = run_value(inputs, "retrain_steps") / run_value(inputs, "steps")
        return res


@register_metric("peak_memory")
class PeakMemory(Metric):
    """Peak memory (MiB) the unlearning call itself added: ``efficiency/peak_memory_mb``.

    Measured by ``run_method`` above the memory in use when the call began (CUDA's peak
    allocation; on a CPU the process's resident set sampled every 5 ms). On a CPU, memory the
    allocator kept from earlier calls is reused without showing, so this is a lower bound."""

    direction = "lower"
    summary = "Peak memory the unlearning call added above its start (MiB); lower is better."
    reference = "standard"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        return {"efficiency/peak_memory_mb": run_value(inputs, "peak_memory_mb")}
