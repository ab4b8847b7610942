"""The ``obliviate`` command line: a thin layer over the library.

obliviate list models|datasets|methods|metrics|recipes|presets [PATTERN]
obliviate describe NAME                      # a method, metric, model, dataset, preset or recipe
obliviate train --dataset cifar10 --root DIR --model resnet18 [--forget airplane] --out CKPT
obliviate evaluate CKPT [--dataset ... --forget ...] [--json FILE]
obliviate run [STUDY.yaml|PRESET] [--scale quick] [--out DIR]
obliviate unlearn CKPT --forget ids:FILE [--method auto|NAME] [--set k=v] [--reference CKPT]
    [--signing-key KEY] --out DIR
obliviate audit CKPT --forget ids:FILE [--reference CKPT]
obliviate ledger verify DIR [--key KEY.pub]
obliviate keygen PATH [--hmac]
obliviate report DIR
obliviate export DIR [--tensorboard LOGDIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

PRESET_DIR = Path(__file__).parent / "configs"  # = obliviate.study.presets.PRESET_DIR (kept torch-free here)


class _TqdmProgress:
    """Progress for the study runner: stage lines, and a bar per training run on a terminal. Into
    a log (stderr not a terminal) each training run writes one summary line instead of a bar."""

    def __init__(self, quiet: bool = False, terminal: bool | None = None) -> None:
        self.quiet = quiet
        self.terminal = sys.stderr.isatty() if terminal is None else terminal

    def stage(self, text: str) -> None:
        if self.quiet:
            return
        if self.terminal:
            from tqdm import tqdm

            tqdm.write(f"[obliviate] {text}", file=sys.stderr)  # above the bar
        else:
            print(f"[obliviate] {text}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def steps(self, desc: str) -> Iterator[Callable[[dict[str, Any]], None]]:
        if self.quiet:
            yield lambda _ev: None
            return
        if not self.terminal:
            import time

            last: dict[str, Any] = {}
            t0 = time.perf_counter()
            yield last.update
            if last:
                loss = f", loss {last['loss']:.3f}" if "loss" in last else ""
                print(
                    f"[obliviate] {desc}: {last.get('step', '?')}/{last.get('total', '?')} steps{loss}, "
                    f"{time.perf_counter() - t0:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
            return
        from tqdm import tqdm

        bar = tqdm(desc=desc[:40], unit="step", leave=False, file=sys.stderr, dynamic_ncols=True)

        def cb(ev: dict[str, Any]) -> None:
            if "total" in ev and bar.total != ev["total"]:
                bar.total = ev["total"]
            bar.n = ev.get("step", bar.n + 1)
            if "loss" in ev:
                bar.set_postfix(loss=f"{ev['loss']:.3f}", refresh=False)
            bar.refresh()

        try:
            yield cb
        finally:
            bar.close()


def _print_table(header: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None) -> None:
    """A text table with a header over every column; the last column wraps to the terminal's
    width (continuation lines indented under it) instead of being cut."""
    import shutil
    import textwrap

    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    total = width or shutil.get_terminal_size((120, 24)).columns
    lead = sum(w + 2 for w in widths[:-1])
    room = max(30, total - lead)
    widths[-1] = min(widths[-1], room)
    for j, r in enumerate(cells):
        last = textwrap.wrap(r[-1], room) or [""]
        print("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + ("  " if len(r) > 1 else "") + last[0])
        for more in last[1:]:
            print(" " * lead + more)
        if j == 0:
            print("  ".join("-" * w for w in widths))


def _first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph as one line (never a sentence cut at a line break)."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def cmd_list(args: argparse.Namespace) -> int:
    pattern = args.pattern or "*"
    if args.what == "models":
        from .models import MODELS

        _print_table(
            ["model", "family", "input", "summary"],
            [
                [
                    n,
                    MODELS.get(n).family,
                    "×".join(map(str, MODELS.get(n).input_size or ())) or "its members'",
                    MODELS.get(n).summary,
                ]
                for n in MODELS.names(pattern)
            ],
        )
    elif args.what == "datasets":
        from .data import DATASETS

        _print_table(
            ["dataset", "summary"], [[n, _first_paragraph(DATASETS.get(n).__doc__)] for n in DATASETS.names(pattern)]
        )
    elif args.what == "methods":
        from .methods import METHODS, describe_method

        rows = []
        for n in METHODS.names(pattern):
            d = describe_method(n)
            rows.append([n, d["kind"], ",".join(d["uses"]) or "-", "yes" if d["exact"] else "no", d["summary"]])
        _print_table(["method", "kind", "reads", "exact", "summary"], rows)
    elif args.what == "metrics":
        from .metrics import METRICS, describe_metric

        rows = [
            [
                n,
                describe_metric(n)["kind"],
                describe_metric(n)["direction"],
                "costly" if describe_metric(n)["costly"] else "cheap",
                describe_metric(n)["summary"],
            ]
            for n in METRICS.names(pattern)
        ]
        _print_table(["metric", "task", "better", "cost", "summary"], rows)
    elif args.what == "recipes":
        from .recipes import list_recipes, recipe

        rows = []
        for n in list_recipes(pattern):
            r = recipe(n)
            kw = ", ".join(f"{k}={v}" for k, v in r.model_kwargs.items())
            rows.append([n, f"{r.model}({kw})", f"{r.config.epochs:g}", str(r.config.batch_size), r.summary])
        _print_table(["recipe", "model", "epochs", "batch", "summary"], rows)
    elif args.what == "presets":
        import fnmatch

        from .study.presets import describe_preset, preset_names

        rows = []
        for n in [p for p in preset_names() if fnmatch.fnmatch(p, pattern)]:
            d = describe_preset(n)
            for i, sc in enumerate(d["scales"]):
                what = sc.get("error") or (
                    f"{sc['dataset']} · {', '.join(sc['models'])} · {', '.join(sc['requests'])} · "
                    f"{len(sc['methods'])} methods · {len(sc['seeds'])} seed(s) — time: {sc['runtime']}"
                )
                rows.append([n if i == 0 else "", d["task"] if i == 0 else "", sc["scale"], what])
        _print_table(["preset", "task", "scale", "what it runs — and what it took, as measured"], rows)
        print("\n`obliviate describe PRESET` for the description and scale notes; `obliviate run PRESET --scale S`.")
    return 0


def _presets() -> list[str]:
    from .study.presets import preset_names

    return preset_names()


def _recipes() -> list[str]:
    from .recipes import list_recipes

    return list_recipes()


def _describe_recipe(name: str) -> None:
    from .recipes import recipe

    r = recipe(name)
    print(f"{name} (training recipe): {r.summary}")
    print(f"model: {r.model}({', '.join(f'{k}={v}' for k, v in r.model_kwargs.items())}); use it with `recipe: {name}`")
    _print_table(["field", "value"], [[k, repr(v)] for k, v in r.config.to_dict().items()])


def cmd_describe(args: argparse.Namespace) -> int:
    from ._registry import UnknownNameError
    from .data import DATASETS
    from .methods import METHODS, describe_method
    from .metrics import METRICS, describe_metric
    from .models import MODELS

    name = args.name
    if name in METHODS:
        d = describe_method(name)
        print(f"{name} ({d['kind']} method, {d['class']}): {d['summary']}")
        print(f"reference: {d['reference']}")
        print(f"reads splits: {', '.join(d['uses']) or 'none'}{'; exact unlearning' if d['exact'] else ''}")
        print("config:")
        _print_table(
            ["field", "default", "symbol", "tune range", "meaning"],
            [[f["name"], repr(f["default"]), f["symbol"] or "", f.get("tune") or "", f["doc"]] for f in d["fields"]]
            or [["(none)", "", "", "", ""]],
        )
    elif name in METRICS:
        d = describe_metric(name)
        print(f"{name} (metric): {d['summary']}")
        print(
            f"better: {d['direction']}; needs reference models: {', '.join(d['needs']) or 'none'}; "
            f"costly: {d['costly']}"
        )
        print(f"reference: {d['reference']}")
        if d["doc"]:
            print(d["doc"])
    elif name in MODELS:
        from .models import describe_model

        kwargs = json.loads(args.kwargs) if getattr(args, "kwargs", None) else {}
        d = describe_model(name, num_classes=args.num_classes, **kwargs)
        print(f"{name} (model, {d['family']}): {d['summary']}")
        size = "×".join(map(str, d["input_size"])) if d["input_size"] else "its constituents' input"
        print(
            f"input: {d['in_chans']} channel(s) × {size}; built with num_classes={d['num_classes']}"
            + (f", {', '.join(f'{k}={v!r}' for k, v in kwargs.items())}" if kwargs else "")
            + f": {d['num_parameters']:,} parameters"
            + (f", output {d['output_shape']}" if "output_shape" in d else "")
        )
        print(
            "constructor arguments (besides num_classes, in_chans; set them under models[].kwargs or --model-kwargs):"
        )
        _print_table(
            ["argument", "type", "default"],
            [[k, tp, repr(default)] for k, (tp, default) in d["arguments"].items()] or [["(none)", "", ""]],
        )
        if name in _recipes():  # a model and the recipe that trains it may share a name
            print()
            _describe_recipe(name)
    elif name in _presets():
        from .study.presets import describe_preset

        d = describe_preset(name)
        print(f"{d['name']} (preset, {d['task']} study {d['study']!r}): {d['file']}")
        print(d["description"])
        for sc in d["scales"]:
            print(f"\nscale {sc['scale']} — time: {sc['runtime']}")
            if "error" in sc:
                print(f"  does not run on its own: {sc['error']}")
                continue
            print(f"  dataset: {sc['dataset']}; models: {', '.join(sc['models'])}; seeds: {sc['seeds']}")
            print(f"  requests: {', '.join(sc['requests'])}")
            if sc.get("tune"):
                print(
                    f"  tune split (obliviate tune METHOD --study {d['name']}): "
                    f"{', '.join(sc['tune']['requests'])}; seeds {sc['tune']['seeds']}"
                )
            print(f"  methods ({len(sc['methods'])}): {', '.join(sc['methods'])}")
            if sc["scale_note"]:
                print(f"  note: {' '.join(sc['scale_note'].split())}")
        scales = [sc["scale"] for sc in d["scales"] if sc["scale"] != "default"]
        print(f"\nrun: obliviate run {d['name']}" + (f" --scale {'|'.join(scales)}" if scales else ""))
    elif name in _recipes():
        _describe_recipe(name)
    elif name in DATASETS:
        print(f"{name} (dataset): {(DATASETS.get(name).__doc__ or '').strip()}")
    else:
        import difflib

        names = list(METHODS) + list(METRICS) + list(MODELS) + list(DATASETS) + _presets() + _recipes()
        near = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise UnknownNameError(
            f"Unknown name {name!r}: not a method, metric, model, dataset, preset or recipe.{hint} "
            "See `obliviate list methods|metrics|models|datasets|presets|recipes`."
        )
    return 0


def _sisa_arg(text: str) -> tuple[int, int]:
    shards, sep, slices = text.partition(":")
    if not (sep and shards.isdigit() and slices.isdigit() and int(shards) >= 1 and int(slices) >= 1):
        raise ValueError(f"--sisa takes SHARDS:SLICES as two positive integers, e.g. 5:4, got {text!r}")
    return int(shards), int(slices)


def _json_arg(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{option} is not valid JSON ({e.msg} at character {e.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object such as '{{\"width\": 0.5}}', got {text!r}")
    return value


def cmd_train(args: argparse.Namespace) -> int:
    from .api import train

    overrides: dict[str, Any] = _json_arg(args.train_json, "--train-json") if args.train_json else {}
    overrides.update({k: getattr(args, k) for k in ("epochs", "batch_size", "lr") if getattr(args, k) is not None})
    if args.bf16:
        overrides.update(bf16=True, channels_last=True)
    kwargs = _json_arg(args.model_kwargs, "--model-kwargs") if args.model_kwargs else {}
    if args.width is not None:
        kwargs["width"] = args.width
    if args.forget:
        print(f"training the retrained reference without {args.forget}", file=sys.stderr)
    with _TqdmProgress(quiet=args.quiet).steps(f"train {args.model}") as cb:
        res = train(
            args.model,
            args.dataset,
            args.out,
            root=args.root,
            download=args.download,
            forget=args.forget,
            recipe=args.recipe,
            train_config=overrides,
            model_kwargs=kwargs,
            seed=0 if args.seed is None else args.seed,
            train_per_class=args.train_per_class,
            test_per_class=args.test_per_class,
            sisa=_sisa_arg(args.sisa) if args.sisa else None,
            device=args.device,
            progress=cb,
        )
    print(
        json.dumps(
            {
                "checkpoint": str(res.checkpoint),
                "test_accuracy": res.test_accuracy,
                "seconds": round(res.seconds, 2),
                "images_per_second": round(res.images_per_second, 1),
            },
            indent=2,
        )
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from .api import evaluate

    report = evaluate(
        args.checkpoint,
        dataset=args.dataset,
        root=args.root,
        forget=args.forget,
        seed=args.seed,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
        allow_other_data=args.allow_other_data,
        device=args.device,
        bf16=args.bf16,
    )
    if args.json:
        from .utils import write_json_atomic

        write_json_atomic(args.json, report)
    rows = [
        [
            n,
            s["n"],
            f"{100 * s['accuracy']:.2f}",
            f"{100 * s['precision']:.2f}",
            f"{100 * s['recall']:.2f}",
            f"{100 * s['f1']:.2f}",
            f"{s['loss']:.4f}",
        ]
        for n, s in report["splits"].items()
    ]
    _print_table(["split", "n", "acc %", "prec %", "recall %", "F1 %", "loss"], rows)
    print()
    pcs = report["splits"]["test"]["per_class_accuracy"]
    _print_table(["class", "test acc %"], [[c, "-" if v is None else f"{100 * v:.1f}"] for c, v in pcs.items()])
    print("\nconfusion matrix (test; rows true, columns predicted):")
    print(np.array(report["splits"]["test"]["confusion"]))
    return 0


def _resolve_study_path(arg: str | None) -> Path:
    from .study.presets import preset_names, preset_path

    if arg is None:
        return preset_path("default")
    p = Path(arg)
    if p.is_file():
        return p
    if arg.removesuffix(".yaml") in preset_names():
        return preset_path(arg)
    raise FileNotFoundError(f"no study file {arg!r} and no preset of that name; presets: {', '.join(preset_names())}")


def cmd_run(args: argparse.Namespace) -> int:
    from .report import render_report
    from .study import StudyRunner

    path = _resolve_study_path(args.study)
    spec = _load_spec(args)
    out = Path(args.out) if args.out else Path("runs") / (spec.name + (f"-{spec.scale}" if spec.scale else ""))
    progress = _TqdmProgress(quiet=args.quiet)
    progress.stage(f"study {spec.name} from {path} -> {out}")
    from .study.executors import StudyIncompleteError

    kw: dict[str, Any] = {
        "progress": progress,
        "cache_dir": args.cache,
        "device": args.device,
        "executor": _executor(args),
    }
    runner = StudyRunner(spec, out, **kw)
    try:
        runner.run()
    except StudyIncompleteError as e:
        render_report(out)
        print(f"obliviate: {e}", file=sys.stderr)
        return 1
    render_report(out)
    print(f"report: {out / 'report.md'}\n        {out / 'report.html'}\nresults: {out / 'results.csv'}")
    if runner.failed:
        print(f"obliviate: {len(runner.failed)} run(s) failed (the report lists them):", file=sys.stderr)
        for line in runner.failed:
            print(f"  - {line}", file=sys.stderr)
        return 1
    return 0


def _load_spec(args: argparse.Namespace) -> Any:
    """The study of ``args.study`` with --scale, --set, --data-root, --model and --seeds applied."""
    from .study import load_study

    return load_study(
        _resolve_study_path(args.study),
        scale=args.scale,
        overrides=list(args.set or ()),
        data_root=args.data_root,
        model=getattr(args, "model", None),
        seeds=getattr(args, "seeds", None),
    )


def cmd_tune(args: argparse.Namespace) -> int:
    from .study.tune import TuneSettings, tune_method

    spec = _load_spec(args)
    kinds = tuple(k.strip() for k in (args.kinds or "").split(",") if k.strip())
    out = (
        Path(args.out)
        if args.out
        else Path("runs") / f"{spec.name}-tune-{args.method}{''.join('-' + k for k in kinds)}"
    )
    progress = _TqdmProgress(quiet=args.quiet)
    settings = TuneSettings(
        **{
            k: v
            for k, v in {
                "trials": args.trials,
                "search_seed": args.search_seed,
                "cpus_per_trial": args.cpus_per_trial,
                "gpus_per_trial": args.gpus_per_trial,
                "address": args.address,
                "num_cpus": args.ray_cpus,
                "objective": args.objective,
            }.items()
            if v is not None
        }
    )
    res = tune_method(
        spec,
        args.method,
        out,
        params=args.param or (),
        kinds=kinds,
        settings=settings,
        cache_dir=args.cache,
        device=args.device,
        progress=progress,
    )
    rows = sorted(res.trials, key=lambda t: (t["score"] is None, t["score"] or 0.0))
    _print_table(
        ["trial", "config", "score", "mean Avg. gap (pts)", "worst class drop (pts)", "groups", "speed-up"],
        [
            [
                t["trial"],
                ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["config"].items()),
                "failed" if t["failed"] else ("" if t["score"] is None else f"{t['score']:.3f}"),
                "" if t["failed"] or t["gap"] is None else f"{t['gap']:.3f}",
                "" if t["worst_drop"] is None else f"{t['worst_drop']:.2f}",
                t["groups"],
                "" if t["speedup"] is None else f"{t['speedup']:.1f}x",
            ]
            for t in rows
        ],
    )
    print(f"trials: {out / 'tune.json'}")
    if res.interrupted:
        print("obliviate: the tune was interrupted; run the same command again to resume it", file=sys.stderr)
        return 1
    if res.best_yaml is None:
        print("obliviate: no trial finished every tuning group; nothing to evaluate", file=sys.stderr)
        return 1
    print(f"best: {res.best_yaml}  (evaluate on the held-out split: obliviate run {res.best_yaml})")
    return 0


def _executor(args: argparse.Namespace) -> Any:
    """The executor of ``--executor`` and its Ray options (refused with the serial one)."""
    from .study.executors import make_executor

    return make_executor(
        args.executor,
        address=args.address,
        cpus_per_group=args.cpus_per_group,
        gpus_per_group=args.gpus_per_group,
        max_retries=args.ray_retries,
        num_cpus=args.ray_cpus,
    )


def _ray_args(s: argparse.ArgumentParser, unit: str) -> None:
    s.add_argument(
        "--address",
        help="a running Ray cluster (what `ray start --head` printed, or 'auto'); "
        "default: a local Ray started for this command",
    )
    s.add_argument(
        f"--cpus-per-{unit}",
        dest=f"cpus_per_{unit}",
        type=float,
        help=f"CPUs each {unit}'s Ray task declares (default 1; torch uses as many threads)",
    )
    s.add_argument(
        f"--gpus-per-{unit}",
        dest=f"gpus_per_{unit}",
        type=float,
        help=f"GPUs each {unit}'s Ray task declares (default 0; e.g. 1, or 0.5 to share one)",
    )
    s.add_argument("--ray-cpus", type=int, help="size of the local Ray (default: every core); not with --address")


def _overrides(pairs: Sequence[str] | None) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes key=value (a field of the method's config), got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {key}: the value {value!r} is not a YAML scalar ({e})") from None
    return out


def _unlearn_lm(args: argparse.Namespace) -> int:
    """``obliviate unlearn MODEL_DIR --forget ROWS.jsonl --retain ROWS.jsonl [--heldout ...]``."""
    from .deletion import DeletionDiverged, DeletionRefused
    from .deletion.lm_requests import load_lm_folder, unlearn_lm

    classifier_only = {
        "--dataset": args.dataset,
        "--root": args.root,
        "--download": args.download,
        "--train-per-class": args.train_per_class,
        "--test-per-class": args.test_per_class,
        "--exact": args.exact,
        "--reference": args.reference,
        "--model-factory": args.model_factory,
        "--fallback": args.fallback != "retrain",
        "--ledger-ids": args.ledger_ids != "plain",
    }
    given = [o for o, v in classifier_only.items() if v]
    if given:
        raise ValueError(
            f"{', '.join(given)} apply to a classifier checkpoint's request, not to a language model's "
            "(its rows come from --forget, --retain and --heldout; see obliviate unlearn --help)"
        )
    if not args.retain:
        raise ValueError("a language model's request needs --retain ROWS.jsonl: rows the model must keep")
    model, tokenizer, lineage = load_lm_folder(args.checkpoint, args.device, signing_key=args.signing_key)
    try:
        res = unlearn_lm(
            model,
            tokenizer=tokenizer,
            forget=args.forget,
            retain=args.retain,
            heldout=args.heldout,
            method=args.method,
            config=_overrides(args.set),
            out=args.out,
            request_id=args.request_id,
            device=args.device,
            seed=args.seed or 0,
            lineage=lineage,
            save=args.save,
            signing_key=args.signing_key,
        )
    except DeletionRefused as e:
        print(f"obliviate: {e}", file=sys.stderr)
        return 3
    except DeletionDiverged as e:
        print(f"obliviate: {e}", file=sys.stderr)
        return 1
    ev = res.evidence
    print(f"request {ev['request']['id']}: {ev['outcome']} by {ev['method']['name']} — " + "; ".join(ev["why"]))
    weights = (
        "adapter_model.safetensors, adapter_config.json" if args.save == "adapter" else "model.safetensors, config.json"
    )
    print(
        f"wrote {res.out}/{weights}, the tokenizer, evidence.json, evidence.html, "
        f"ledger.jsonl ({ev['ledger']['entries']} request(s) in this lineage)"
    )
    return 0


def cmd_unlearn(args: argparse.Namespace) -> int:
    from .deletion import DeletionRefused
    from .deletion.checkpoint_requests import unlearn_checkpoint

    folder = Path(args.checkpoint)
    if folder.is_dir() and any((folder / n).is_file() for n in ("config.json", "adapter_config.json")):
        return _unlearn_lm(args)
    ignored = [
        o for o, v in (("--train-per-class", args.train_per_class), ("--test-per-class", args.test_per_class)) if v
    ]
    if ignored:
        raise ValueError(
            f"{' and '.join(ignored)}: a checkpoint's request reads the training data its checkpoint records "
            "(subset included); drop the option"
        )
    if args.save != "merged":
        raise ValueError("--save adapter applies to a language model's request (MODEL_DIR with config.json)")
    if args.retain or args.heldout:
        raise ValueError(
            "--retain and --heldout take a language model's rows (MODEL_DIR with config.json); "
            f"{args.checkpoint} is a classifier checkpoint, whose retain set is its training data minus --forget"
        )
    forget = args.forget
    ids_file = forget[4:] if forget.startswith("ids:") else forget
    if not forget.startswith("ids:") and not Path(forget).exists():
        raise ValueError(
            f"--forget {forget!r}: a deletion request on a classifier checkpoint names sample ids, "
            "--forget ids:FILE (one id per line), and no file is called that; to take a whole class out, "
            "list its ids, or train without it (obliviate train --forget CLASS)"
        )
    try:
        out, result = unlearn_checkpoint(
            args.checkpoint,
            ids_file=ids_file,
            out=args.out,
            method=args.method,
            overrides=_overrides(args.set),
            exact=args.exact,
            reference=args.reference or None,
            device=args.device,
            seed=args.seed,
            request_id=args.request_id,
            model_factory=args.model_factory,
            fallback=args.fallback,
            ledger_form=args.ledger_ids,
            signing_key=args.signing_key,
            ds_args={"dataset": args.dataset, "root": args.root, "download": args.download},
        )
    except DeletionRefused as e:
        print(f"obliviate: {e}", file=sys.stderr)
        for i, a in enumerate(e.evidence.get("attempts", []), 1):
            print(f"  attempt {i}: {a['method']} — " + ("; ".join(a["failures"]) or "passed"), file=sys.stderr)
        return 3
    ev = result.evidence
    print(f"request {ev['request']['id']}: {ev['verdict']}")
    print(
        f"wrote {out}/model.safetensors, model.json, evidence.json, evidence.html, ledger.jsonl "
        f"({ev['ledger']['entries']} request(s) in this lineage)"
    )
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from .deletion.checkpoint_requests import audit_checkpoint

    res = audit_checkpoint(
        args.checkpoint,
        forget=args.forget,
        reference=args.reference,
        device=args.device,
        seed=args.seed or 0,
        model_factory=args.model_factory,
        ds_args={"dataset": args.dataset, "root": args.root, "download": args.download},
    )
    rows = [
        ["this model", s, v["n"], f"{100 * v['accuracy']:.2f}", f"{v['loss']:.4f}"]
        for s, v in (("forget", res["forget"]), ("heldout", res["heldout"]))
    ]
    if "reference" in res:
        rows += [
            ["reference", s, v["n"], f"{100 * v['accuracy']:.2f}", f"{v['loss']:.4f}"]
            for s, v in (("forget", res["reference"]["forget"]), ("heldout", res["reference"]["heldout"]))
        ]
    _print_table(["model", "split", "n", "acc %", "loss"], rows)
    print(f"\nmembership ({res['attack']}):\n  this model: {res['membership']['verdict']}")
    if "reference" in res:
        print(f"  reference:  {res['reference']['membership']['verdict']}\n  {res['vs_reference']}")
        print(f"  reference {res['reference']['provenance']}")
    if args.json:
        from .utils import write_json_atomic

        write_json_atomic(args.json, res)
    return 0


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(
            f"{option} takes comma-separated numbers, one per channel (e.g. 0.5,0.5,0.5), got {text!r}"
        ) from None


def cmd_import(args: argparse.Namespace) -> int:
    from .deletion.checkpoint_requests import import_weights

    path = import_weights(
        args.weights,
        model_factory=args.model_factory,
        out=args.out,
        dataset=args.dataset,
        root=args.root,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
        train_config=_json_arg(args.train_json, "--train-json") if args.train_json else None,
        seed=0 if args.seed is None else args.seed,
        download=args.download,
        mean=_floats(args.mean, "--mean"),
        std=_floats(args.std, "--std"),
    )
    print(
        f"wrote {path} (and its .safetensors): a checkpoint of {args.model_factory} trained on {args.dataset}; "
        f"pass it to `obliviate unlearn` with --model-factory {args.model_factory}"
    )
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    from .deletion.ledger import read, verify
    from .deletion.signing import load_key, read_head

    key = load_key(args.key) if args.key else None
    problems = verify(args.dir, key=key)
    if problems:
        print(f"ledger of {args.dir} does NOT verify:")
        for p in problems:
            print(f"  - {p}")
        return 1
    entries = read(Path(args.dir) / "ledger.jsonl")
    head = read_head(args.dir)
    if key is not None:
        anchor = f"head signed by key {key.key_id} (from request {head['first_signed_entry'] if head else '?'})"
    elif head is not None:
        anchor = f"head signed by key {head['key_id']}, signature NOT checked (give --key KEY.pub)"
    else:
        anchor = "UNANCHORED: no signed head, so a rewrite of the whole folder would not show"
    print(
        f"ledger of {args.dir} verifies: {len(entries)} request(s), chain intact, model file is the last one's; "
        + anchor
    )
    for e in entries:
        print(
            f"  {e['index']}: {e['request_id']} {e['received_at']} {len(e['ids'])} id(s) {e['method']}"
            f"{' (exact)' if e.get('exact') else ''}"
        )
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from .deletion.signing import generate, load_key

    key_path, pub = generate(args.path, "hmac-sha256" if args.hmac else "ed25519")
    kid = load_key(key_path).key_id
    print(f"wrote {key_path} (key {kid}; keep it secret: it signs the ledgers' heads)")
    if pub is not None:
        print(f"wrote {pub} (give it to whoever verifies: obliviate ledger verify DIR --key {pub})")
    print(f"sign with: obliviate unlearn ... --signing-key {key_path}   (or export OBLIVIATE_LEDGER_KEY={key_path})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .report.export import export_tensorboard

    out = export_tensorboard(args.dir, args.tensorboard)
    print(f"TensorBoard runs: {out}\n  view them with: tensorboard --logdir {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import render_report

    md, htm = render_report(args.dir)
    print(f"{md}\n{htm}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="obliviate", description="Machine unlearning: forget data, prove it against retraining."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list registered models, datasets, methods, metrics, recipes or presets")
    s.add_argument("what", choices=["models", "datasets", "methods", "metrics", "recipes", "presets"])
    s.add_argument("pattern", nargs="?", help="shell-style wildcard, e.g. 'resnet*'")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser(
        "describe", help="explain a method (config fields, paper symbols), metric, model, dataset, preset or recipe"
    )
    s.add_argument("name")
    s.add_argument("--num-classes", type=int, default=10, help="for a model: the classes it is built with (default 10)")
    s.add_argument("--kwargs", help="for a model: JSON of constructor arguments, e.g. '{\"width\": 0.25}'")
    s.set_defaults(func=cmd_describe)

    def data_args(s: argparse.ArgumentParser, required: bool) -> None:
        s.add_argument(
            "--dataset",
            required=required,
            help="digits, cifar10, cifar100, cifar20, npz, or a folder of train/test.npz",
        )
        s.add_argument("--root", help="dataset folder (train.npz/test.npz or a torchvision root)")
        s.add_argument("--download", action="store_true", help="let torchvision download the dataset")
        s.add_argument("--train-per-class", type=int, help="stratified training subset size per class")
        s.add_argument("--test-per-class", type=int, help="stratified test subset size per class")
        s.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
        s.add_argument(
            "--seed", type=int, default=None, help="split / init seed (train: 0; evaluate: the checkpoint's)"
        )

    s = sub.add_parser("train", help="train a model (optionally without a forget request: the retrained reference)")
    data_args(s, required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--width", type=float, help="width multiplier for the CIFAR nets")
    s.add_argument("--model-kwargs", help='JSON of extra model arguments, e.g. \'{"variant": "nano"}\'')
    s.add_argument("--recipe", help="a named training recipe (see obliviate.recipes)")
    s.add_argument("--train-json", help="JSON of TrainConfig fields")
    s.add_argument("--epochs", type=float)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--lr", type=float)
    s.add_argument("--bf16", action="store_true", help="bf16 autocast + channels_last")
    s.add_argument(
        "--forget", help="forget request: 'airplane', 'airplane,cat', 'random:0.1', 'subclass:rocket', 'ids:FILE'"
    )
    s.add_argument(
        "--sisa",
        metavar="S:R",
        help="train a deployable SISA ensemble of S constituents with R slices "
        "each; its shard state is kept beside the checkpoint so deletions retrain only what they touch",
    )
    s.add_argument("--out", required=True, help="checkpoint path (writes PATH.safetensors and PATH.json)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="accuracy, macro P/R/F1, per-class accuracy, confusion on forget/retain/test")
    s.add_argument("checkpoint")
    data_args(s, required=False)
    s.add_argument("--forget", help="forget request defining the forget/retain splits (default: the checkpoint's)")
    s.add_argument("--bf16", action="store_true")
    s.add_argument("--json", help="also write the full result as JSON here")
    s.add_argument(
        "--allow-other-data",
        action="store_true",
        help="evaluate on a dataset whose content differs from the checkpoint's training data",
    )
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("run", help="run a study (YAML file or preset name; default: the embedded digits study)")
    s.add_argument("study", nargs="?")
    s.add_argument("--scale", help="a scale defined in the study (e.g. quick, full)")
    s.add_argument("--out", help="output directory (default runs/NAME[-SCALE])")
    s.add_argument("--cache", help="model cache directory (default $OBLIVIATE_CACHE or ~/.cache/obliviate/models)")
    s.add_argument("--device", help="override the study's device")
    s.add_argument(
        "--data-root",
        help="override the study's data: a vision dataset root (e.g. your CIFAR-10 folder), "
        "or an LLM study's statements file (.csv/.jsonl)",
    )
    s.add_argument(
        "--model",
        help="LLM studies: the model to tune and unlearn (a hub id or a local folder with "
        "config.json, tokenizer and weights)",
    )
    s.add_argument("--seeds", type=int, nargs="+", help="override the study's seeds, e.g. --seeds 0")
    s.add_argument(
        "--executor",
        choices=["serial", "ray"],
        default="serial",
        help="serial: every group in this process; ray: one Ray task per (model, request, seed) group",
    )
    _ray_args(s, "group")
    s.add_argument("--ray-retries", type=int, help="times Ray reruns a group whose worker died (default 1)")
    s.add_argument(
        "--set",
        action="append",
        metavar="KEY.PATH=VALUE",
        help="override any field of the study after its scale, e.g. --set train.epochs=2 "
        "--set 'methods[0].config.lr=1e-3' (values read as YAML; repeatable)",
    )
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("tune", help="search a method's hyperparameters on a study's tuning split (Ray Tune + Optuna)")
    s.add_argument("method", help="a vision method (obliviate describe METHOD lists its tune ranges)")
    s.add_argument("--study", required=True, help="a study file or preset with a tune: split (requests, seeds)")
    s.add_argument("--scale", help="a scale defined in the study")
    s.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a study field (repeatable)")
    s.add_argument("--data-root", help="override the study's dataset root")
    s.add_argument(
        "--param",
        action="append",
        metavar="NAME[=LOW:HIGH[:log][:int] | =A,B]",
        help="search only these fields (a declared range, or one given here); repeatable",
    )
    s.add_argument(
        "--kinds",
        metavar="KIND[,KIND]",
        help="tune on the tuning requests of these kinds only (class, subclass, random, ids), from "
        "the study's entry for METHOD that runs on them: one setting per kind of request",
    )
    s.add_argument("--trials", type=int, help="configs to try (default 12)")
    s.add_argument(
        "--objective",
        choices=["target", "gap"],
        help="what a trial minimises: 'target' (default) the mean Avg. gap plus the points a retained "
        "class drops beyond the study's target for the request kind; 'gap' the mean Avg. gap alone",
    )
    s.add_argument("--search-seed", type=int, help="Optuna's sampler seed (default 0)")
    s.add_argument("--out", help="output directory (default runs/STUDY-tune-METHOD[-KIND...]); rerun to resume")
    s.add_argument("--cache", help="model cache directory (default $OBLIVIATE_CACHE or ~/.cache/obliviate/models)")
    s.add_argument("--device", help="override the study's device")
    _ray_args(s, "trial")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_tune)

    s = sub.add_parser("unlearn", help="honour a deletion request on a saved model: model + evidence + ledger out")
    s.add_argument(
        "checkpoint",
        help="a checkpoint (PATH[.json]), a folder an earlier `obliviate unlearn` wrote, or a language "
        "model's folder (config.json, weights and tokenizer, as save_pretrained writes it)",
    )
    data_args(s, required=False)
    s.add_argument(
        "--forget",
        required=True,
        help="the deletion request: ids:FILE (one training-sample id per line); for a language model, "
        'ROWS.jsonl (one {"text"} or {"question", "answer"} per line)',
    )
    s.add_argument("--retain", help="a language model's rows to keep (ROWS.jsonl)")
    s.add_argument(
        "--heldout", help="a language model's rows of the same kind it never saw (ROWS.jsonl; auto needs them)"
    )
    s.add_argument(
        "--save",
        choices=("merged", "adapter"),
        default="merged",
        help="a language model's output: the merged model (default) or its LoRA adapter only",
    )
    s.add_argument("--method", default="auto", help="a vision method, or auto (see obliviate.deletion.policy)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="a field of the method's config (repeatable)")
    s.add_argument("--exact", action="store_true", help="demand an exact result (retrain, or sisa for an ensemble)")
    s.add_argument(
        "--reference",
        action="append",
        help="a checkpoint retrained without the forget rows: the evidence "
        "gives the gap to the first; give two or more (different seeds) for the per-example audit",
    )
    s.add_argument("--request-id", help="the request's id in the evidence and ledger (default: generated)")
    s.add_argument(
        "--model-factory",
        metavar="MODULE:FUNCTION",
        help="your own architecture: the function that builds it (a checkpoint made by `obliviate import`)",
    )
    s.add_argument(
        "--fallback",
        choices=["retrain", "refuse"],
        default="retrain",
        help="when no approximate attempt passes the guard: retrain (exact; default) or refuse (exit 3, "
        "nothing written)",
    )
    s.add_argument(
        "--ledger-ids",
        choices=["plain", "salted"],
        default="plain",
        help="keep the ids in the ledger as they are, or as HMACs under $OBLIVIATE_LEDGER_SALT",
    )
    s.add_argument(
        "--signing-key",
        metavar="KEY",
        help="the operator's ledger key (obliviate keygen; default $OBLIVIATE_LEDGER_KEY): signs the "
        "folder's head so `ledger verify --key` detects a rewritten, emptied or stripped lineage",
    )
    s.add_argument("--out", required=True, help="a new folder for the unlearned model and its evidence")
    s.set_defaults(func=cmd_unlearn)

    s = sub.add_parser(
        "import",
        help="bring your own model: a plain state dict (.pt/.pth/.safetensors) of your "
        "architecture as a checkpoint with its training data's provenance",
    )
    s.add_argument("weights", help="torch.save(model.state_dict(), PATH) or a .safetensors file")
    s.add_argument(
        "--model-factory",
        required=True,
        metavar="MODULE:FUNCTION",
        help="the function that builds your model (called with num_classes= when it takes it)",
    )
    data_args(s, required=True)
    s.add_argument(
        "--train-json",
        help="JSON of TrainConfig fields: how you trained it (label smoothing, optimiser, "
        "epochs...), recorded as your recipe",
    )
    s.add_argument(
        "--mean",
        help="the per-channel mean your model's inputs were normalised with, in 0..1 units "
        "(e.g. 0.5,0.5,0.5; default: the dataset's own statistics)",
    )
    s.add_argument("--std", help="the per-channel standard deviation, with --mean")
    s.add_argument("--out", required=True, help="checkpoint path (writes PATH.safetensors and PATH.json)")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("audit", help="measure a saved model on a forget request: accuracy, loss, membership audit")
    s.add_argument("checkpoint")
    data_args(s, required=False)
    s.add_argument("--forget", required=True, help="ids:FILE, a class ('airplane'), random:0.1, ...")
    s.add_argument("--reference", help="a retrained checkpoint to compare with")
    s.add_argument("--model-factory", metavar="MODULE:FUNCTION", help="your own architecture (see import)")
    s.add_argument("--json", help="also write the result as JSON here")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("ledger", help="verify the hash-chained ledger of an unlearned model's folder")
    s.add_argument("action", choices=["verify"])
    s.add_argument("dir")
    s.add_argument(
        "--key",
        metavar="KEY",
        help="the operator's verifying key (KEY.pub from obliviate keygen, or the HMAC key): the head "
        "must be signed by it",
    )
    s.set_defaults(func=cmd_ledger)

    s = sub.add_parser("keygen", help="make the operator's ledger signing key (and its .pub)")
    s.add_argument("path", help="where to write the signing key (mode 0600); an Ed25519 key's .pub goes beside it")
    s.add_argument("--hmac", action="store_true", help="an HMAC-SHA256 secret instead (one file signs and verifies)")
    s.set_defaults(func=cmd_keygen)

    s = sub.add_parser("report", help="re-render the report of a study directory")
    s.add_argument("dir")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("export", help="export a study's results to TensorBoard (scalars + HParams per run)")
    s.add_argument("dir", help="a study folder (what `obliviate run` wrote)")
    s.add_argument("--tensorboard", metavar="LOGDIR", help="where to write the event files (default DIR/tensorboard)")
    s.set_defaults(func=cmd_export)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except (ValueError, KeyError, OSError, ImportError, RuntimeError) as e:
        if args.verbose:
            raise
        print(f"obliviate: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
