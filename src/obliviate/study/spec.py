"""Study specifications: dataset × model(s) × forget request(s) × methods × seeds, from YAML.

A study file may define ``scales`` (e.g. ``quick`` for 2 CPU cores, ``full`` for a GPU) whose
entries are deep-merged over the top level (dicts merge, lists and scalars replace). Everything
is validated before any training starts; errors name the field (``methods[2].config.alpha``).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..core import ConfigError, SpecError, SpecPart, check_fields, deep_merge, from_mapping
from ..data import DATASETS, ForgetRequest, ForgetRequestError, parse_request
from ..models import MODELS, check_model_kwargs
from ..training import TrainConfig
from .parts import MethodSpec, config_error, parse_methods, parse_seeds
from .targets import DEFAULT_TARGETS, Target, parse_targets


@dataclass(frozen=True, kw_only=True)
class DatasetSpec(SpecPart):
    """``dataset:`` — a registered dataset (or an npz folder), optionally a stratified subset."""

    name: str
    root: str | None = None
    download: bool = False
    train_per_class: int | None = None
    test_per_class: int | None = None
    subset_seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        for k in ("train_per_class", "test_per_class"):
            v = getattr(self, k)
            if v is not None and v <= 0:
                raise ConfigError(f"DatasetSpec.{k} must be a positive integer or null, got {v!r}", k)
        if self.subset_seed < 0:
            raise ConfigError(f"DatasetSpec.subset_seed must be >= 0, got {self.subset_seed!r}", "subset_seed")


@dataclass(frozen=True, kw_only=True)
class EvalSpec(SpecPart):
    """``eval:`` — how every model is evaluated (``None``: as the training config says)."""

    batch_size: int = 512
    tta: Literal["none", "flip"] | None = None
    retain_max: int | None = None
    bf16: bool | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        if self.batch_size < 1:
            raise ConfigError(f"EvalSpec.batch_size must be >= 1, got {self.batch_size!r}", "batch_size")
        if self.retain_max is not None and self.retain_max < 1:
            raise ConfigError(
                f"EvalSpec.retain_max must be a positive integer or null, got {self.retain_max!r}", "retain_max"
            )


@dataclass(frozen=True, kw_only=True)
class RelearnSpec(SpecPart):
    """``relearn:`` — the fine-tune of the (costly) relearn-time metric."""

    max_steps: int = 100
    lr: float = 0.01
    batch_size: int = 64
    tolerance: float = 0.05

    def __post_init__(self) -> None:
        check_fields(self)
        for k in ("max_steps", "batch_size"):
            if getattr(self, k) < 1:
                raise ConfigError(f"RelearnSpec.{k} must be >= 1, got {getattr(self, k)!r}", k)
        if not self.lr > 0:
            raise ConfigError(f"RelearnSpec.lr must be > 0, got {self.lr!r}", "lr")
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"RelearnSpec.tolerance must be in (0, 1), got {self.tolerance!r}", "tolerance")


@dataclass(frozen=True, kw_only=True)
class AuditSpec(SpecPart):
    """``audit:`` — the membership audit beside the population attacks.

    ``references``: K models retrained on the retain set with other seeds (cached, shared by every
    method of a group and by later studies with the same inputs); 0 switches the per-example
    attacks (``lira``, ``rmia``) off, else K ≥ 2 — each costs one retraining. ``queries``: the
    per-example queries (``auto``: the image and its mirror when the model was trained with flips,
    else the image). ``probe``: the linear-probe audit on class requests, fitted on at most
    ``probe_per_class`` training rows of each class. ``draws``: seeded row draws each fitted
    population attack is repeated over (its value is the mean, its range is reported).
    ``n_boot``: bootstrap resamples of every interval."""

    references: int = 0
    queries: Literal["auto", "image", "flip"] = "auto"
    probe: bool = True
    probe_per_class: int = 500
    draws: int = 1
    n_boot: int = 1000

    def __post_init__(self) -> None:
        check_fields(self)
        if self.references == 1 or self.references < 0:
            raise ConfigError(
                f"AuditSpec.references must be 0 (off) or >= 2 (offline LiRA needs a variance), "
                f"got {self.references!r}",
                "references",
            )
        for k, low in (("probe_per_class", 10), ("draws", 1), ("n_boot", 100)):
            if getattr(self, k) < low:
                raise ConfigError(f"AuditSpec.{k} must be >= {low}, got {getattr(self, k)!r}", k)


@dataclass(frozen=True)
class TuneSplit:
    """``tune:`` — the requests and seeds that ``obliviate tune`` chooses hyperparameters on. The
    study's evaluation (``requests`` × ``seeds``) never uses them: tuning seeds are not evaluation
    seeds, and a class, sub-class or sample-id request is not an evaluation request (a random
    request may repeat: its rows are drawn per seed)."""

    requests: tuple[ForgetRequest, ...]
    seeds: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"requests": [r.to_dict() for r in self.requests], "seeds": list(self.seeds)}


LLM_TASKS = ("llm", "llm_qa")  # the judgement study and the fictitious-entity study
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a study's name: it names a folder
TOP_LEVEL = {
    "name",
    "description",
    "task",
    "dataset",
    "models",
    "train",
    "recipe",
    "requests",
    "methods",
    "seeds",
    "metrics",
    "device",
    "eval",
    "validation_fraction",
    "paper",
    "scales",
    "scale_note",
    "output",
    "relearn",
    "audit",
    "targets",
    "runtime",
    "tune",
}


StudySpecError = SpecError  # a study file is wrong: the message names the field's path and what is allowed


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in sorted(self.kwargs.items()))
        return f"{self.name}({extra})" if extra else self.name


@dataclass(frozen=True)
class StudySpec:
    """A validated study, either task's. ``raw`` is the mapping it was parsed from, with its
    scale resolved (recorded in ``study.json``; nothing reads settings from it). An LLM study's
    task-specific parts are in ``task_plan`` (its :class:`~obliviate.study.tasks.llm.LLMStudyPlan`)."""

    name: str
    task: str
    dataset: DatasetSpec | SpecPart  # an LLM study's: its task's TextDataSpec
    models: list[ModelSpec]
    train: TrainConfig
    requests: list[ForgetRequest]
    methods: list[MethodSpec]
    seeds: list[int]
    metrics: list[str] | str
    device: str
    eval: EvalSpec
    validation_fraction: float
    paper: dict[str, Any]
    scale: str | None
    scale_note: str
    description: str
    relearn: RelearnSpec
    raw: dict[str, Any]
    audit: AuditSpec = field(default_factory=AuditSpec)
    targets: dict[str, Target] = field(default_factory=lambda: dict(DEFAULT_TARGETS))
    tune: TuneSplit | None = None
    task_plan: Any = field(default=None, repr=False, compare=False)  # what the task validated (LLM: its plan)


def _err(path: str, msg: str) -> SpecError:
    return SpecError.at(path, msg)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with ``key.path=value`` overrides set (``methods[0].config.lr=1e-3``,
    ``train.epochs=2``; values read as YAML, missing mappings created, a method listed by name
    turned into ``{name: ...}``). Errors name the override."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise _err("--set", f"{item!r} is not key.path=value")
        key, text = item.split("=", 1)
        parts = [p for p in re.split(r"\.|\[(\d+)\]", key.strip()) if p]
        if not parts or any(not re.fullmatch(r"[A-Za-z_][\w-]*|\d+", p) for p in parts):
            raise _err("--set", f"{key!r} is not a key path like train.epochs or methods[0].config.lr")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as e:
            raise _err("--set", f"{item!r}: the value is not YAML ({e})") from None
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise _err("--set", f"{where!r}: index out of range (the list has {len(node)} items)")
                if last:
                    node[int(part)] = value
                else:
                    if isinstance(node[int(part)], str) and parts[i - 1] == "methods":
                        node[int(part)] = {"name": node[int(part)]}  # a method given by name gets its mapping
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    node = node[part]
            else:
                raise _err("--set", f"{where!r}: {'.'.join(parts[:i])!r} is a value, not a mapping or list")
    return out


def load_study(
    path: str | Path,
    scale: str | None = None,
    overrides: Sequence[str] = (),
    *,
    data_root: str | None = None,
    model: str | None = None,
    seeds: Sequence[int] | None = None,
) -> StudySpec:
    """Read a YAML study file, apply ``scale``, then ``overrides`` (``key.path=value``, see
    :func:`apply_overrides`), and validate it (nothing is trained).

    ``data_root``: the data to use (a vision dataset's root, or an LLM study's data source);
    ``model``: an LLM study's model (a hub id or a local folder; a vision study names its
    architectures under ``models:``); ``seeds``: replaces the study's seeds."""
    from .yamlio import YAMLInputError, load_yaml_file

    path = Path(path)
    if not path.exists():
        raise StudySpecError(f"study file {str(path)!r} does not exist")
    try:
        raw = load_yaml_file(path)
    except YAMLInputError as e:
        raise StudySpecError(str(e)) from None
    if not isinstance(raw, dict):
        raise StudySpecError(f"{path} must hold a mapping at the top level")
    check_runtime(raw)
    if overrides or data_root is not None or model is not None or seeds is not None:
        raw = apply_overrides(resolve_scale(raw, scale), overrides)  # on top of the scale: resolve it first
        llm = raw.get("task") in LLM_TASKS
        if model is not None:
            if not llm:
                raise _err(
                    "model",
                    "applies to LLM studies (a hub id or a local model folder); a vision study names "
                    "its architecture under models: (or models[0].name=NAME)",
                )
            raw["model"] = {**(raw.get("model") or {}), "name": model}
        if data_root is not None:
            key, field_ = ("data" if "data" in raw else "dataset", "source") if llm else ("dataset", "root")
            raw[key] = {**(raw.get(key) or {}), field_: str(data_root)}
        if seeds is not None:
            if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
                raise _err("seeds", f"must be distinct non-negative integers, got {list(seeds)}")
            raw["seeds"] = [int(s) for s in seeds]
        if scale is not None:
            raw["scales"] = {scale: {}}  # keep its name
    return parse_study(raw, scale=scale, base_dir=path.parent)


def resolve_scale(raw: dict[str, Any], scale: str | None) -> dict[str, Any]:
    scales = raw.get("scales") or {}
    if not isinstance(scales, dict):
        raise _err("scales", "must be a mapping of scale name -> overrides")
    if scale is None:
        return {k: v for k, v in raw.items() if k != "scales"}
    if scale not in scales:
        raise _err("scale", f"unknown scale {scale!r}; this study defines {sorted(scales) or 'none'}")
    return deep_merge({k: v for k, v in raw.items() if k != "scales"}, scales[scale] or {})


def check_runtime(raw: dict[str, Any], scales: bool = True) -> dict[str, str]:
    """``runtime:`` — what a run costs, as measured, per scale (``default`` for no scale):
    ``{default: "≈ 2 min on 2 CPU cores", quick: ...}``. Informational only (``obliviate list
    presets`` shows it; it is never a run key input). ``scales``: also check that every name is a
    scale the study defines."""
    rt = raw.get("runtime") or {}
    if not isinstance(rt, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in rt.items()):
        raise _err("runtime", f"must be a mapping of scale name (or 'default') to a text, got {rt!r}")
    names = set(raw.get("scales") or {}) | {"default"}
    unknown = sorted(set(rt) - names)
    if unknown and scales:
        raise _err("runtime", f"names scale(s) {unknown} the study does not define; allowed: {sorted(names)}")
    return dict(rt)


def parse_study(raw: dict[str, Any], scale: str | None = None, base_dir: Path | None = None) -> StudySpec:
    """Validate a study dict (see module docstring); relative dataset roots resolve from
    ``base_dir`` first, then the working directory."""
    task = raw.get("task", "vision")
    if task not in ("vision", *LLM_TASKS):
        raise _err("task", f"must be one of {['vision', *LLM_TASKS]}, got {task!r}")
    check_runtime(raw, scales=False)  # (load_study checks the names against the file's scales)
    if task == "vision":
        unknown = sorted(set(raw) - TOP_LEVEL)
        if unknown:
            raise _err("study", f"unknown field(s) {unknown}; allowed: {sorted(TOP_LEVEL)}")
    d = resolve_scale(raw, scale)
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise _err("name", "a study needs a non-empty name")
    if not NAME_RE.fullmatch(name):
        raise _err(
            "name",
            f"{name[:80]!r} is not a slug: letters, digits, '.', '_' and '-', starting with a letter or "
            "digit, at most 100 characters (it names the output folder under runs/)",
        )

    seeds = parse_seeds(d.get("seeds", [0]))
    if task in LLM_TASKS:
        # an LLM task validates its own fields (it knows `model`, `data`, its requests ...)
        from .tasks.llm import LLMStudyPlan, validate_llm_spec
        from .tasks.llm_qa import validate_qa_spec

        try:
            plan = validate_llm_spec(d) if task == "llm" else validate_qa_spec(d)  # once: the task plans from it
        except SpecError:
            raise
        except ValueError as e:  # a library's own error while loading the study's data or model spec
            raise SpecError(str(e)) from None
        return StudySpec(
            name=name,
            task=task,
            dataset=plan.data,
            models=[],
            train=TrainConfig(),
            requests=[],
            methods=plan.methods,
            seeds=seeds,
            metrics=list(plan.metrics.groups) if isinstance(plan, LLMStudyPlan) else [],
            device=str(d.get("device", "auto")),
            eval=EvalSpec(),
            validation_fraction=plan.data.validation_fraction if isinstance(plan, LLMStudyPlan) else 0.0,
            paper=d.get("paper") or {},
            scale=scale,
            scale_note=str(d.get("scale_note", "")),
            description=str(d.get("description", "")),
            relearn=RelearnSpec(),
            raw=d,
            task_plan=plan,
        )

    ds_raw = d.get("dataset")
    if isinstance(ds_raw, str):
        ds_raw = {"name": ds_raw}
    if not isinstance(ds_raw, dict) or "name" not in ds_raw:
        raise _err("dataset", "needs at least {name: ...}")
    try:
        ds = from_mapping(DatasetSpec, ds_raw, "dataset")
    except (ConfigError, TypeError) as e:
        raise config_error("dataset", e) from None
    if ds.name not in DATASETS and not Path(ds.name).is_dir():
        raise _err("dataset.name", DATASETS.unknown_message(ds.name))
    if ds.root is not None and base_dir is not None:
        r = Path(ds.root)
        if not r.is_absolute() and not r.exists() and (base_dir / r).exists():
            ds = dataclasses.replace(ds, root=str((base_dir / r).resolve()))

    models_raw = d.get("models")
    if not isinstance(models_raw, list) or not models_raw:
        raise _err("models", "must be a non-empty list of model names or {name, kwargs}")
    models = []
    for i, m in enumerate(models_raw):
        m = {"name": m} if isinstance(m, str) else m
        if not isinstance(m, dict) or "name" not in m or set(m) - {"name", "kwargs"}:
            raise _err(f"models[{i}]", f"must be a name or {{name, kwargs}}, got {m!r}")
        if m["name"] not in MODELS:
            raise _err(f"models[{i}].name", MODELS.unknown_message(str(m["name"])))
        if not isinstance(m.get("kwargs") or {}, dict):
            raise _err(f"models[{i}].kwargs", f"must be a mapping of constructor arguments, got {m['kwargs']!r}")
        try:  # checked against the constructor's signature now, not as a TypeError mid-study
            kwargs = check_model_kwargs(m["name"], dict(m.get("kwargs") or {}))
        except ValueError as e:
            raise _err(f"models[{i}].kwargs", str(e)) from None
        models.append(ModelSpec(m["name"], kwargs))

    train_raw = d.get("train") or {}
    recipe = d.get("recipe")
    try:
        base_train: dict[str, Any] = {}
        if recipe is not None:
            from ..recipes import get_recipe  # optional module with named recipes

            base_train = get_recipe(str(recipe)).to_dict()
        if not isinstance(train_raw, dict):
            raise ConfigError(f"must be a mapping of TrainConfig fields, got {train_raw!r}")
        train = TrainConfig.from_dict({**base_train, **train_raw})
    except (ValueError, TypeError, KeyError) as e:
        raise config_error("train" if recipe is None else "recipe/train", e) from None

    requests = _requests(d.get("requests"), "requests", base_dir)
    tune = _tune_split(d.get("tune"), requests, seeds, base_dir)

    methods = parse_methods(d.get("methods"), "vision")

    metrics = d.get("metrics", "default")
    if metrics != "default":
        from ..metrics import METRICS

        if not isinstance(metrics, list):
            raise _err("metrics", "must be 'default' or a list of metric names")
        for i, n in enumerate(metrics):
            if n not in METRICS:
                raise _err(f"metrics[{i}]", METRICS.unknown_message(str(n)))
            if METRICS.get(n).kind != task:
                raise _err(f"metrics[{i}]", f"{n!r} is an {METRICS.get(n).kind} metric; this is a {task} study")

    try:
        ev = from_mapping(EvalSpec, d.get("eval") or {}, "eval")
    except (ConfigError, TypeError) as e:
        raise config_error("eval", e) from None
    vf = d.get("validation_fraction", 0.0)
    if not isinstance(vf, (int, float)) or isinstance(vf, bool) or not 0 <= vf < 0.5:
        raise _err("validation_fraction", f"must be a number in [0, 0.5), got {vf!r}")
    try:
        relearn = from_mapping(RelearnSpec, d.get("relearn") or {}, "relearn")
    except (ConfigError, TypeError) as e:
        raise config_error("relearn", e) from None
    try:
        audit = from_mapping(AuditSpec, d.get("audit") or {}, "audit")
    except (ConfigError, TypeError) as e:
        raise config_error("audit", e) from None
    try:
        targets = parse_targets(d.get("targets"))
    except ConfigError as e:
        raise config_error("targets", e) from None

    return StudySpec(
        name=name,
        task=task,
        dataset=ds,
        models=models,
        train=train,
        requests=requests,
        methods=methods,
        seeds=seeds,
        metrics=metrics,
        device=str(d.get("device", "auto")),
        eval=ev,
        validation_fraction=float(vf),
        paper=d.get("paper") or {},
        scale=scale,
        scale_note=str(d.get("scale_note", "")),
        description=str(d.get("description", "")),
        relearn=relearn,
        raw=d,
        audit=audit,
        targets=targets,
        tune=tune,
    )


def _requests(reqs_raw: Any, where: str, base_dir: Path | None) -> list[ForgetRequest]:
    """Parse a list of forget requests (an ids request's relative path resolves from ``base_dir``)."""
    if not isinstance(reqs_raw, list) or not reqs_raw:
        raise _err(where, "must be a non-empty list of forget requests, e.g. [{kind: class, classes: [airplane]}]")
    requests = []
    for i, r in enumerate(reqs_raw):
        if isinstance(r, dict) and r.get("kind") == "ids" and "path" in r and base_dir is not None:
            p = Path(str(r["path"]))
            if not p.is_absolute() and not p.exists() and (base_dir / p).exists():
                r = {**r, "path": str(base_dir / p)}
        try:
            requests.append(parse_request(r))
        except ForgetRequestError as e:
            raise _err(f"{where}[{i}]", str(e)) from None
    return requests


def _tune_split(raw: Any, requests: list[ForgetRequest], seeds: list[int], base_dir: Path | None) -> TuneSplit | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"requests", "seeds"} or "seeds" not in raw:
        raise _err("tune", f"must be {{requests: [...], seeds: [...]}} (requests default to the study's), got {raw!r}")
    t_seeds = raw["seeds"]
    if (
        not isinstance(t_seeds, list)
        or not t_seeds
        or len(set(t_seeds)) != len(t_seeds)
        or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in t_seeds)
    ):
        raise _err("tune.seeds", f"must be a non-empty list of distinct non-negative integers, got {t_seeds!r}")
    shared = sorted(set(t_seeds) & set(seeds))
    if shared:
        raise _err(
            "tune.seeds",
            f"seed(s) {shared} are also evaluation seeds ({seeds}); a hyperparameter chosen "
            "on a seed must be judged on others",
        )
    t_reqs = _requests(raw.get("requests", [r.to_dict() for r in requests]), "tune.requests", base_dir)
    evaluated = {request_key_of(r) for r in requests if r.to_dict().get("kind") != "random"}
    for i, r in enumerate(t_reqs):
        if request_key_of(r) in evaluated:
            raise _err(
                f"tune.requests[{i}]",
                f"{r.describe()} is also an evaluation request; tune on other classes or ids than the study judges on",
            )
    return TuneSplit(tuple(t_reqs), tuple(t_seeds))


def request_key_of(r: ForgetRequest) -> str:
    import json

    return json.dumps({k: v for k, v in r.to_dict().items() if k != "source"}, sort_keys=True)
