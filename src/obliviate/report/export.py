"""Export a study's results to TensorBoard, for people who already compare runs there.

``export_tensorboard(study_dir, log_dir)`` writes one TensorBoard run per record of the study's
plan — ``LOG_DIR/<model>/<request>/<method>/seed_<s>`` — with every metric as a scalar (step 0)
and the run's inputs as HParams (method, model, request, seed and the method's config fields),
so TensorBoard's HParams tab tabulates and filters the methods. Only finished (``ok``) records of
the plan are exported, as in the report. Needs the ``tensorboard`` package
(``pip install 'obliviate[track]'``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in str(text))[:80] or "_"


def _hparam(value: Any) -> bool | int | float | str:
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def export_tensorboard(study_dir: str | Path, log_dir: str | Path | None = None) -> Path:
    """Write the study's finished runs as TensorBoard event files under ``log_dir`` (default
    ``STUDY_DIR/tensorboard``); returns ``log_dir``. Point ``tensorboard --logdir`` at it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # torch's writer needs the tensorboard package
        raise ImportError("the TensorBoard export needs the tensorboard package: pip install 'obliviate[track]'") from e
    from .render import _load

    study_dir = Path(study_dir)
    study, runs, _, _ = _load(study_dir)
    out = Path(log_dir) if log_dir is not None else study_dir / "tensorboard"
    out.mkdir(parents=True, exist_ok=True)
    for r in runs:
        path = out / _slug(r["model"]) / _slug(r["request"]) / _slug(r["method"]) / f"seed_{r['seed']}"
        metrics = {
            k: float(v)
            for k, v in r["values"].items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
        }
        hparams = {
            "method": r["method"],
            "method_name": r.get("method_name", r["method"]),
            "model": r["model"],
            "request": r["request"],
            "seed": int(r["seed"]),
            "study": study.get("name", ""),
            **{f"config/{k}": _hparam(v) for k, v in (r.get("method_config") or {}).items()},
        }
        with SummaryWriter(log_dir=str(path)) as w:
            for k, v in sorted(metrics.items()):
                w.add_scalar(k, v, 0)
            # the HParams summary, with the headline values as its metrics (written into this run's folder)
            w.add_hparams(
                hparams,
                {
                    f"hparam/{k}": v
                    for k, v in metrics.items()
                    if k in ("gap/avg", "acc/forget", "acc/test_retain", "efficiency/speedup")
                }
                or {"hparam/none": 0.0},
                run_name=".",
            )
    return out
