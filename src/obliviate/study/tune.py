"""Hyperparameter search for one unlearning method on a study's *tuning* requests (Ray Tune + Optuna).

``obliviate tune METHOD --study STUDY`` searches the ranges the method declares beside its config
fields (``param(..., tune=Range(...))``; ``obliviate describe METHOD`` lists them) on the study's
``tune:`` split — requests and seeds its evaluation never uses (:class:`~obliviate.study.spec.TuneSplit`).
Each trial is one Ray Tune trial that runs the study's own pipeline on the tuning groups (model ×
tuning request × tuning seed) with the trial's config: references come from the shared model
cache (trained once, under its lock), every trial's records are content-keyed in
``OUT/trials/<config key>/``, so a config tried twice is read, not rerun. The objective (points,
minimised) is the mean over the tuning groups of each run's Avg. gap to the retrained model plus
the points by which its worst retained class drops beyond the study's target for that request
kind (:func:`~obliviate.study.targets.tune_score`; ``objective="gap"``: the gap alone, which picked
settings that break a retained class on the held-out frontier's classes). It is reported after
each group: with two or more groups an ASHA scheduler stops poor trials early (``time_attr``:
groups done). Optuna's TPE sampler proposes the configs (``OptunaSearch``, seeded).

Out: ``OUT/tune.json`` (every trial: config, score, gap, worst class drop, speed-up, groups),
``OUT/best.yaml`` — the study with the best config added as ``METHOD_tuned``, which
``obliviate run OUT/best.yaml`` evaluates on the study's own (held-out) requests and seeds — and
``OUT/ray/`` (Ray Tune's experiment). An
interrupted tune (Ctrl-C, a lost driver) resumes from there with ``Tuner.restore`` when the same
command is run again; finished trials are kept.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..core import Choice, ConfigError, Range, check_fields, search_space
from ..data import ForgetRequest, SampleIdsForget
from ..methods import METHODS
from ..utils import write_json_atomic, write_text_atomic
from .executors import import_ray, ray_session, with_absolute_paths
from .keys import key_of
from .spec import MethodSpec, StudySpec, StudySpecError
from .targets import DEFAULT_TARGETS, REQUEST_KINDS, TUNE_OBJECTIVES, Target, request_kind, tune_score
from .tasks.base import QuietProgress

FAILED_GAP = 100.0  # the objective of a run that failed (diverged, or a config the method refuses)


@dataclass(frozen=True, kw_only=True)
class TuneSettings:
    """How a search runs. ``trials``: configs tried; ``search_seed``: Optuna's sampler seed;
    ``cpus_per_trial`` / ``gpus_per_trial``: what each trial declares to Ray (torch uses as many
    threads); ``address``: a running Ray cluster (``None``: a local Ray, ``num_cpus`` its size);
    ``objective``: ``"target"`` (gap + class damage beyond the study's target) or ``"gap"``."""

    trials: int = 12
    search_seed: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None
    num_cpus: int | None = None
    objective: str = "target"

    def __post_init__(self) -> None:
        check_fields(self)
        if self.objective not in TUNE_OBJECTIVES:
            raise ConfigError(
                f"TuneSettings.objective must be one of {TUNE_OBJECTIVES}, got {self.objective!r}", "objective"
            )
        if self.trials < 1:
            raise ConfigError(f"TuneSettings.trials must be >= 1, got {self.trials!r}", "trials")
        if not self.cpus_per_trial > 0:
            raise ConfigError(f"TuneSettings.cpus_per_trial must be > 0, got {self.cpus_per_trial!r}", "cpus_per_trial")
        if self.gpus_per_trial < 0:
            raise ConfigError(
                f"TuneSettings.gpus_per_trial must be >= 0, got {self.gpus_per_trial!r}", "gpus_per_trial"
            )
        if self.num_cpus is not None and self.address is not None:
            raise ConfigError(
                "TuneSettings.num_cpus sizes a local Ray; the cluster at address has its own size", "num_cpus"
            )


# -- the search space -------------------------------------------------------------------------------


def parse_param(text: str) -> tuple[str, Range | Choice | None]:
    """``--param`` values: ``NAME`` (its declared range), ``NAME=LOW:HIGH`` (``:log``, ``:int``
    suffixes) or ``NAME=A,B,C`` (a choice; values read as YAML)."""
    name, sep, rng = text.partition("=")
    name = name.strip()
    if not name.isidentifier():
        raise ValueError(f"--param {text!r}: {name!r} is not a config field name")
    if not sep:
        return name, None
    if ":" in rng:
        parts = rng.split(":")
        flags = {p.strip() for p in parts[2:]}
        if len(parts) < 2 or flags - {"log", "int"}:
            raise ValueError(f"--param {text!r}: a range is LOW:HIGH with optional :log and :int")
        try:
            low, high = float(parts[0]), float(parts[1])
            return name, Range(low, high, log="log" in flags, integer="int" in flags)
        except (ValueError, ConfigError) as e:
            raise ValueError(f"--param {text!r}: {e}") from None
    values = tuple(yaml.safe_load(v) for v in rng.split(","))
    try:
        return name, Choice(values)
    except ConfigError as e:
        raise ValueError(f"--param {text!r}: {e}") from None


def method_space(
    method: str, params: Sequence[str] = (), base: dict[str, Any] | None = None
) -> dict[str, Range | Choice]:
    """What to search for ``method``: every declared range (``params`` empty) or the named ones
    (``--param`` syntax, see :func:`parse_param`). Choices the method refuses (``bn_stats: retain``
    for a method that never reads the retain set) are dropped; a choice left with one value is
    not searched."""
    cls = METHODS.get(method)
    declared = search_space(cls.Config)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    if params:
        space: dict[str, Range | Choice] = {}
        for text in params:
            name, rng = parse_param(text)
            if name not in fields:
                raise ValueError(f"{method} has no config field {name!r}; its fields: {', '.join(sorted(fields))}")
            if rng is None:
                if name not in declared:
                    raise ValueError(
                        f"{method}.{name} declares no tune range; give one: --param {name}=LOW:HIGH[:log]"
                        f" (declared: {', '.join(declared) or 'none'})"
                    )
                rng = declared[name]
            space[name] = rng
    else:
        space = dict(declared)
    out: dict[str, Range | Choice] = {}
    for name, rng in space.items():
        if isinstance(rng, Choice):
            ok = tuple(v for v in rng.values if _accepts(cls, {**(base or {}), name: v}))
            if len(ok) >= 2:
                out[name] = Choice(ok)
        else:
            out[name] = rng
    if not out:
        raise ValueError(
            f"{method} has nothing to tune (declared: {', '.join(declared) or 'none'}); name fields "
            "with --param NAME=LOW:HIGH[:log]"
        )
    return out


def _accepts(cls: type, config: dict[str, Any]) -> bool:
    try:
        cls(config)
    except (ValueError, TypeError):
        return False
    return True


def _ray_space(space: dict[str, Range | Choice]) -> dict[str, Any]:
    from ray import tune

    out: dict[str, Any] = {}
    for name, r in space.items():
        if isinstance(r, Choice):
            out[name] = tune.choice(list(r.values))
        elif r.integer:
            out[name] = (tune.lograndint if r.log else tune.randint)(int(r.low), int(r.high) + 1)
        else:
            out[name] = (tune.loguniform if r.log else tune.uniform)(r.low, r.high)
    return out


# -- one trial ----------------------------------------------------------------------------------------


def tuning_spec(spec: StudySpec, method: str, config: dict[str, Any], label: str | None = None) -> StudySpec:
    """``spec`` narrowed to its tuning split and one method with ``config`` (validated)."""
    if spec.tune is None:
        raise StudySpecError(
            f"study {spec.name!r} has no tune: split; add one, e.g. tune: {{requests: "
            "[{kind: class, classes: [cat]}], seeds: [3]}} — requests and seeds it does not "
            "evaluate on"
        )
    m = MethodSpec(method, dict(config), label or method)
    try:
        m.build()
    except (ValueError, TypeError) as e:
        raise StudySpecError(f"{method} config {config}: {e}") from None
    raw = {
        **spec.raw,
        "requests": [_portable(r) for r in spec.tune.requests],
        "seeds": list(spec.tune.seeds),
        "methods": [{"name": method, "config": dict(config), "label": m.label}],
    }
    raw.pop("tune", None)
    return dataclasses.replace(
        spec, requests=list(spec.tune.requests), seeds=list(spec.tune.seeds), methods=[m], raw=raw, tune=None
    )


@dataclass(frozen=True)
class _TrialContext:
    spec: StudySpec
    method: str
    base: dict[str, Any]
    out_root: str
    cache_dir: str | None
    device: str | None
    threads: int
    groups: int
    objective: str = "target"


class _ReportEachGroup:
    """The serial executor, reporting the running mean score (and gap) to Ray Tune after every
    group; ``targets`` (the study's, per request kind) set each group's class bar."""

    def __init__(
        self,
        report: Callable[[dict[str, Any]], None],
        total: int,
        targets: dict[str, Target] | None = None,
        objective: str = "target",
    ) -> None:
        self.report, self.total, self.objective = report, total, objective
        self.targets = targets or DEFAULT_TARGETS

    def run_groups(self, runner: Any, groups: list[Any]) -> list[str]:
        """Groups whose request the method does not apply to (a class-only method on a random
        request, the calibrated stop on a class) are left out of the mean, not scored as failed;
        a failed run scores :data:`FAILED_GAP`."""
        scores, gaps, drops, speedups, failed, skipped = [], [], [], [], 0, 0
        for i, group in enumerate(groups, 1):
            runner.run_group(group)
            rec = runner.store.load_run(group.units[0].key)
            values = (rec or {}).get("values", {})
            applicable = rec is None or rec.get("status") != "not_applicable"
            if not applicable:
                skipped += 1
            elif rec is None or rec.get("status") != "ok" or "gap/avg" not in values:
                failed += 1
                scores.append(FAILED_GAP)
                gaps.append(FAILED_GAP)
            else:
                target = self.targets.get(request_kind(str(rec.get("request", ""))), DEFAULT_TARGETS["class"])
                scores.append(tune_score(values, target, self.objective))
                gaps.append(float(values["gap/avg"]))
                if values.get("worst_class_drop") is not None:
                    drops.append(float(values["worst_class_drop"]))
                if "efficiency/speedup" in values:
                    speedups.append(float(values["efficiency/speedup"]))
            if scores and (applicable or i == len(groups)):
                self.report(
                    {
                        "score": sum(scores) / len(scores),
                        "gap": sum(gaps) / len(gaps),
                        "worst_drop": max(drops) if drops else float("nan"),
                        "groups": i,
                        "failed": failed,
                        "skipped": skipped,
                        "speedup": sum(speedups) / len(speedups) if speedups else float("nan"),
                    }
                )
        if not scores:  # applies to none of the tuning requests: the worst objective
            self.report(
                {
                    "score": FAILED_GAP,
                    "gap": FAILED_GAP,
                    "worst_drop": float("nan"),
                    "groups": len(groups),
                    "failed": len(groups),
                    "skipped": skipped,
                    "speedup": float("nan"),
                    "error": "not applicable to any tuning request",
                }
            )
        return []


def _trial(config: dict[str, Any], ctx: _TrialContext) -> None:
    """One Ray Tune trial: the tuning groups with ``base`` + ``config``, reported group by group."""
    import torch
    from ray import tune

    from .runner import StudyRunner
    from .store import StudyLockedError

    torch.set_num_threads(ctx.threads)
    cfg = {**ctx.base, **config}
    try:
        sub = tuning_spec(ctx.spec, ctx.method, cfg)
    except StudySpecError as e:  # a combination the method refuses: the worst objective, said why
        tune.report(
            {
                "score": FAILED_GAP,
                "gap": FAILED_GAP,
                "worst_drop": float("nan"),
                "groups": ctx.groups,
                "failed": ctx.groups,
                "speedup": float("nan"),
                "error": str(e)[:300],
            }
        )
        return
    out = Path(ctx.out_root) / "trials" / key_of({"method": ctx.method, "config": cfg})[:16]
    runner = StudyRunner(
        sub,
        out,
        cache_dir=ctx.cache_dir,
        device=ctx.device,
        progress=QuietProgress(),
        executor=_ReportEachGroup(tune.report, ctx.groups, ctx.spec.targets, ctx.objective),
    )
    while True:  # the same config proposed twice at once: the second waits for the first's folder
        try:
            runner.run()
            return
        except StudyLockedError:
            time.sleep(1.0)


# -- the search ---------------------------------------------------------------------------------------


@dataclass
class TuneResult:
    """What a search found: every trial (config, gap, groups), the best complete one, the files."""

    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_yaml: Path | None
    out_dir: Path
    resumed: bool
    interrupted: bool = False


def tune_method(
    spec: StudySpec,
    method: str,
    out_dir: str | Path,
    *,
    params: Sequence[str] = (),
    kinds: Sequence[str] = (),
    settings: TuneSettings | None = None,
    cache_dir: str | Path | None = None,
    device: str | None = None,
    progress: Any = None,
) -> TuneResult:
    """Search ``method``'s hyperparameters on ``spec``'s tuning split (see the module docstring);
    the base config is the study's own entry for ``method`` (its budget knobs), else the defaults.
    ``kinds`` (e.g. ``("class",)`` or ``("random", "ids")``) tunes on the tuning requests of those
    kinds only, from the study's entry for ``method`` that runs on them: one setting per kind of
    request, where one setting for all would trade one kind against another."""
    import_ray()  # (says what to install when Ray is missing)
    import importlib.util

    if importlib.util.find_spec("optuna") is None:  # pragma: no cover - the dist extra installs it
        raise ImportError("obliviate tune needs Optuna: pip install 'obliviate[dist]'")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    settings = settings or TuneSettings()
    spec = with_absolute_paths(spec)  # (Ray Tune runs each trial in its own working directory)
    say = progress.stage if progress is not None else (lambda _t: None)
    if spec.task != "vision":
        raise StudySpecError("obliviate tune searches vision studies (an LLM study's methods declare no ranges yet)")
    if method not in METHODS:
        raise StudySpecError(METHODS.unknown_message(method))
    if METHODS.get(method).kind != "vision":
        raise StudySpecError(f"{method!r} is an {METHODS.get(method).kind} method; this is a vision study")
    if spec.tune is None:
        tuning_spec(spec, method, {})  # raises the message that says what to add
    kinds = tuple(dict.fromkeys(kinds))
    if kinds:
        assert spec.tune is not None
        bad = [k for k in kinds if k not in REQUEST_KINDS]
        if bad:
            raise StudySpecError(f"unknown request kind(s) {bad}; allowed: {', '.join(REQUEST_KINDS)}")
        reqs = tuple(r for r in spec.tune.requests if request_kind(r.describe()) in kinds)
        if not reqs:
            raise StudySpecError(
                f"the tune split has no {'/'.join(kinds)} request; it has "
                f"{', '.join(r.describe() for r in spec.tune.requests)}"
            )
        spec = dataclasses.replace(spec, tune=dataclasses.replace(spec.tune, requests=reqs))
    entry = next((m for m in spec.methods if m.name == method and all(m.applies_to(k) for k in kinds)), None)
    base = dict(entry.config) if entry is not None else {}
    space = method_space(method, params, base)
    base = {k: v for k, v in base.items() if k not in space}
    assert spec.tune is not None
    n_groups = len(spec.models) * len(spec.tune.requests) * len(spec.tune.seeds)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    identity = {
        "study": spec.raw,
        "scale": spec.scale,
        "method": method,
        "base": base,
        "kinds": list(kinds),
        "space": {k: v.describe() for k, v in space.items()},
        "trials": settings.trials,
        "search_seed": settings.search_seed,
        "objective": settings.objective,
    }
    ident_path = out_dir / "tune_request.json"
    if ident_path.exists():
        old = json.loads(ident_path.read_text())
        if key_of(old) != key_of(identity):
            raise StudySpecError(
                f"{out_dir} holds a tune of another study, method, space, objective or trial count; give "
                "another --out (or delete the folder to start over)"
            )
    write_json_atomic(ident_path, identity)
    say(
        f"tuning {method} on {n_groups} group(s) of the tuning split (requests "
        f"{', '.join(r.describe() for r in spec.tune.requests)}; seeds {list(spec.tune.seeds)}), "
        f"{settings.trials} trials over {', '.join(f'{k} {v.describe()}' for k, v in space.items())}; objective: "
        + ("Avg. gap + class drop beyond the target" if settings.objective == "target" else "Avg. gap")
    )

    ctx = _TrialContext(
        spec,
        method,
        base,
        str(out_dir),
        None if cache_dir is None else str(Path(cache_dir).resolve()),
        device,
        max(1, int(settings.cpus_per_trial)),
        n_groups,
        settings.objective,
    )
    trainable = tune.with_resources(
        tune.with_parameters(_trial, ctx=ctx), {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    )
    storage, name = out_dir / "ray", "tune"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    _quiet_optuna()
    with ray_session(settings.address, settings.num_cpus, say):
        callback = _progress_callback(say, settings.trials, n_groups)
        resumed = tune.Tuner.can_restore(str(storage / name))
        if resumed:
            prev = out_dir / "tune.json"
            finished = prev.exists() and json.loads(prev.read_text()).get("interrupted") is False
            say(
                f"the tune in {storage / name} finished before: its trials are read back"
                if finished
                else f"resuming the interrupted tune in {storage / name}"
            )
            tuner = tune.Tuner.restore(str(storage / name), trainable=trainable, resume_errored=True)
        else:
            search = OptunaSearch(metric="score", mode="min", seed=settings.search_seed)
            scheduler = (
                ASHAScheduler(
                    time_attr="groups", metric="score", mode="min", max_t=n_groups, grace_period=1, reduction_factor=2
                )
                if n_groups >= 2
                else None
            )
            tuner = tune.Tuner(
                trainable,
                param_space=_ray_space(space),
                tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=settings.trials),
                run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0, callbacks=[callback]),
            )
        grid = tuner.fit()
    interrupted = grid.num_terminated + grid.num_errors < settings.trials
    trials = []
    for i in range(len(grid)):  # (ResultGrid is indexable; its stubs declare no __iter__)
        r = grid[i]
        m = r.metrics or {}
        if not m:  # proposed but never reported (an interrupted tune): nothing to show
            continue
        trials.append(
            {
                "trial": m.get("trial_id") or (r.path and Path(r.path).name),
                "config": r.config or {},
                "score": _num(m.get("score")),
                "gap": _num(m.get("gap")),
                "worst_drop": _num(m.get("worst_drop")),
                "groups": m.get("groups", 0),
                "failed": m.get("failed"),
                "speedup": _num(m.get("speedup")),
                "error": m.get("error") or (str(r.error)[:300] if r.error else None),
            }
        )
    complete = [t for t in trials if t["groups"] == n_groups and t["score"] is not None and not t["failed"]]
    best = min(complete, key=lambda t: t["score"]) if complete else None
    best_yaml = None
    if interrupted:
        say(
            f"the tune was interrupted after {grid.num_terminated + grid.num_errors} of {settings.trials} trials; "
            "run the same command again to resume it"
        )
    elif best is not None:
        best_yaml = out_dir / "best.yaml"
        write_text_atomic(best_yaml, best_study_yaml(spec, method, {**base, **best["config"]}, best, kinds))
        say(
            f"best {method}: {best['config']} — score {best['score']:.3f}, mean Avg. gap {best['gap']:.3f} pts, "
            f"worst retained class −{best['worst_drop'] or 0.0:.2f} pts on the tuning split; "
            f"evaluate it on the held-out requests and seeds: obliviate run {best_yaml}"
        )
    else:
        say("no trial finished every tuning group without failing: nothing written to best.yaml")
    if best_yaml is None and (out_dir / "best.yaml").exists():
        (out_dir / "best.yaml").unlink()  # (a stale one from an earlier, other outcome)
    write_json_atomic(
        out_dir / "tune.json",
        {
            "method": method,
            "objective": settings.objective,
            "space": identity["space"],
            "base": base,
            "tuning_groups": n_groups,
            "trials": trials,
            "best": best,
            "resumed": resumed,
            "interrupted": interrupted,
        },
    )
    return TuneResult(trials, best, best_yaml, out_dir, resumed, interrupted)


def _quiet_optuna() -> None:
    """Optuna's and Ray Tune's own chatter off: the command prints its lines (errors still show)."""
    import logging
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    # a resumed trial reports its first group again; Optuna keeps the first report and says so
    warnings.filterwarnings("ignore", message="The reported value is ignored")


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _progress_callback(say: Callable[[str], None], total: int, groups: int) -> Any:
    """A Ray Tune callback: a line per finished trial, in the command's own progress format."""
    from ray.tune import Callback

    class TrialLines(Callback):
        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            res = trial.last_result or {}
            cfg = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in (trial.config or {}).items()}
            how = (
                f"score {res.get('score', res['gap']):.3f}, gap {res['gap']:.3f} pts over {res.get('groups')}/{groups} "
                "group(s)"
                if "gap" in res
                else "no result"
            )
            done = 1 + sum(t.status == "TERMINATED" for t in trials if t is not trial)
            say(f"trial {trial.trial_id} finished ({done} of {total}): {cfg}: {how}")

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            say(f"trial {trial.trial_id} FAILED: see {trial.error_file or trial.local_path}")

    return TrialLines()


def _portable(r: ForgetRequest) -> dict[str, Any]:
    """A request as a study file entry that works from any folder (ids files by absolute path)."""
    if isinstance(r, SampleIdsForget) and r.source and Path(r.source).is_file():
        return {"kind": "ids", "path": str(Path(r.source).resolve())}
    return r.to_dict()


def best_study_yaml(
    spec: StudySpec, method: str, config: dict[str, Any], best: dict[str, Any], kinds: Sequence[str] = ()
) -> str:
    """The study with ``METHOD_tuned`` (``config``; ``METHOD_tuned_KIND`` run on those request
    kinds only when the tune was restricted to them) added: the held-out evaluation of the tune."""
    raw = dict(spec.raw)
    raw["name"] = f"{spec.name}-{method}-tuned"
    if spec.task == "vision":
        raw["dataset"] = spec.dataset.to_dict()  # (its root resolved: the file works from anywhere)
    raw["requests"] = [_portable(r) for r in spec.requests]
    if spec.tune is not None:
        raw["tune"] = {"requests": [_portable(r) for r in spec.tune.requests], "seeds": list(spec.tune.seeds)}
    label = f"{method}_tuned" + "".join(f"_{k}" for k in kinds)
    methods = [m for m in raw.get("methods", []) if not (isinstance(m, dict) and m.get("label") == label)]
    methods.append(
        {"name": method, "label": label, "config": _plain(config), **({"kinds": list(kinds)} if kinds else {})}
    )
    raw["methods"] = methods
    raw.pop("scales", None)
    head = (
        f"# {method} tuned by `obliviate tune` on the tuning split (requests "
        f"{', '.join(r.describe() for r in spec.tune.requests) if spec.tune else '?'}; seeds "
        f"{list(spec.tune.seeds) if spec.tune else '?'}): mean Avg. gap {best['gap']:.3f} pts over "
        f"{best['groups']} group(s)"
        + (f", score {best['score']:.3f} (gap + class drop beyond the target)" if best.get("score") is not None else "")
        + ".\n# Run it to judge the config on the study's own requests and seeds, "
        "which the tune never saw.\n"
    )
    return head + yaml.safe_dump(_plain(raw), sort_keys=False, allow_unicode=True, width=110)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars from the sampler
        return obj.item()
    return obj


__all__ = ["TuneResult", "TuneSettings", "best_study_yaml", "method_space", "parse_param", "tune_method", "tuning_spec"]
