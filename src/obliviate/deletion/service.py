"""Honour a deletion request on a model: the Python API (:func:`unlearn`, :func:`audit`) and the
engine under ``obliviate unlearn`` / ``obliviate audit`` (:func:`honour`).

One path for both: the method runs through :func:`~obliviate.core.run_method` on guarded splits
(it can read only what it declared; a method that reads held-out rows gets ``validation=``, or a
seeded 10 % carved from the held-out rows and left out of every measurement), the model is
measured before and after on the forget, retain and held-out rows, the membership audit runs on
the original, the unlearned and (when given) the retrained reference, and everything lands in
one evidence record.
"""

from __future__ import annotations

import copy
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..core import METHODS, ConfigError, MethodResult, NonFiniteError, RunStats, run_method
from ..data import ForgetSplit, ImageDataset
from ..methods import UnlearnContext, UnlearnData
from ..training import TrainConfig, predict_logits
from ..utils import resolve_device
from . import policy, signing
from .errors import DeletionError, DeletionRefused
from .evidence import FORMAT, tensor_sha256, weights_sha256
from .guard import Attempt, audit_power, class_forgotten, membership_reading, tolerances, utility_violations
from .measurements import ATTACK, compare_to_reference, membership_audit, per_example_audit, split_figures
from .output import claims_out
from .userdata import UserDataError, to_tensors, user_problem


@dataclass
class DeletionResult:
    """The unlearned model and the evidence of what was done to it."""

    model: nn.Module
    evidence: dict[str, Any]


def reinit_factory(model: nn.Module) -> Any:
    """``factory(seed)``: a copy of ``model`` with every layer's parameters re-initialised
    (``reset_parameters``) from ``seed`` — how ``retrain`` and the incompetent teacher get a
    fresh model of a user's architecture. A parameter owned by a module without
    ``reset_parameters`` (a ViT's ``pos_embed``, a layer scale) would keep its trained value and
    carry the forget rows' influence into a "retrained" model, so the factory refuses such a
    model, naming the parameters: pass ``model_factory=`` then."""
    resettable = {
        id(p)
        for mod in model.modules()
        if callable(getattr(mod, "reset_parameters", None))
        for p in mod.parameters(recurse=False)
    }
    kept = [n for n, p in model.named_parameters() if id(p) not in resettable]

    def make(seed: int) -> nn.Module:
        if kept:
            raise DeletionError(
                f"cannot re-initialise this model: {len(kept)} parameter(s) have no "
                f"reset_parameters (e.g. {kept[:3]}), so a fresh copy would keep trained values; "
                "pass model_factory=(seed -> a freshly initialised model)"
            )
        fresh = copy.deepcopy(model)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for mod in fresh.modules():
                reset = getattr(mod, "reset_parameters", None)
                if callable(reset):
                    reset()
        return fresh

    return make


def _logits(
    model: nn.Module,
    ds: ImageDataset,
    rows: np.ndarray,
    test: bool,
    device: torch.device,
    batch_size: int,
    bf16: bool = False,
    channels_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = (ds.test_images, ds.test_labels) if test else (ds.train_images, ds.train_labels)
    r = torch.as_tensor(rows, dtype=torch.long)
    if len(r) == 0:
        return torch.zeros(0, ds.num_classes), torch.zeros(0, dtype=torch.long)
    out = predict_logits(
        model,
        images,
        mean=ds.mean,
        std=ds.std,
        rows=r,
        batch_size=batch_size,
        device=device,
        bf16=bf16,
        channels_last=channels_last,
    )
    return out, labels[r.to(labels.device)].cpu()


def _phi(
    model: nn.Module, ds: ImageDataset, rows: np.ndarray, test: bool, device: torch.device, batch_size: int, ctx: Any
) -> np.ndarray:
    """φ per row and query ``(N, Q)`` (:func:`obliviate.metrics.membership.query_phi`): the image
    and, for images, its mirror (LiRA's queries)."""
    from ..metrics.membership import query_phi

    images, labels = (ds.test_images, ds.test_labels) if test else (ds.train_images, ds.train_labels)
    queries = ("image", "flip") if images.ndim == 4 and not images.is_floating_point() else ("image",)
    return query_phi(
        model,
        images,
        labels,
        rows,
        queries=queries,
        mean=ds.mean,
        std=ds.std,
        batch_size=batch_size,
        device=device,
        bf16=ctx.bf16,
        channels_last=getattr(ctx, "channels_last", False),
    )


def _measure(
    model: nn.Module,
    ds: ImageDataset,
    split: ForgetSplit,
    heldout: np.ndarray,
    device: torch.device,
    batch_size: int,
    retain_rows: np.ndarray,
    bf16: bool = False,
    channels_last: bool = False,
) -> tuple[dict[str, Any], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Figures per split and the logits behind them: forget, retain (the measured sample) and
    held-out rows — for a class request ``heldout`` is the retained classes' rows and
    ``heldout_forgotten`` the forgotten classes' (the outputs keep every held-out row, which the
    audit and the gap read)."""
    kw = dict(bf16=bf16, channels_last=channels_last)
    outs = {
        "forget": _logits(model, ds, split.forget, False, device, batch_size, **kw),
        "retain": _logits(model, ds, retain_rows, False, device, batch_size, **kw),
        "heldout": _logits(model, ds, heldout, True, device, batch_size, **kw),
    }
    figs = {k: split_figures(*v) for k, v in outs.items()}
    if split.forget_classes:
        gone = _forgotten_mask(outs["heldout"][1], split.forget_classes)
        figs["heldout"] = split_figures(outs["heldout"][0][~gone], outs["heldout"][1][~gone])
        figs["heldout_forgotten"] = split_figures(outs["heldout"][0][gone], outs["heldout"][1][gone])
    return figs, outs


def _forgotten_mask(labels: torch.Tensor, classes: tuple[int, ...]) -> torch.Tensor:
    return torch.isin(labels, torch.as_tensor(list(classes), dtype=labels.dtype))


def _utility_outs(
    outs: dict[str, tuple[torch.Tensor, torch.Tensor]], split: ForgetSplit
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The outputs the utility guard reads: retain, and held-out rows of the retained classes."""
    logits, labels = outs["heldout"]
    if split.forget_classes:
        keep = ~_forgotten_mask(labels, split.forget_classes)
        logits, labels = logits[keep], labels[keep]
    return {"retain": outs["retain"], "heldout": (logits, labels)}


def per_class_accuracy(
    outs: dict[str, tuple[torch.Tensor, torch.Tensor]], class_names: tuple[str, ...]
) -> dict[str, float | None]:
    """Held-out accuracy of each class (``None`` for a class without held-out rows)."""
    logits, labels = outs["heldout"]
    pred = logits.argmax(1)
    return {
        name: (float((pred[labels == c] == c).double().mean()) if bool((labels == c).any()) else None)
        for c, name in enumerate(class_names)
    }


def _change_points(before: float | None, after: float | None) -> float | None:
    """``after - before`` in percentage points; ``None`` when either is unknown."""
    return None if before is None or after is None else 100 * (after - before)


def study_gap(
    unlearned: dict[str, tuple[torch.Tensor, torch.Tensor]],
    retrained: dict[str, tuple[torch.Tensor, torch.Tensor]],
    split: ForgetSplit,
    num_classes: int,
    seed: int,
) -> dict[str, float]:
    """The study's Avg. gap (``gap_to_retrain``: forget, retain and test accuracy and the SVC
    MIA-efficacy, in points; test on the retained classes for a class request) between two
    models' outputs — one protocol for studies and evidence alike."""
    from ..metrics import EvalInputs, Outputs
    from ..metrics.gap import GapToRetrain

    def splits(outs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Outputs]:
        test = Outputs(*outs["heldout"])
        d = {"forget": Outputs(*outs["forget"]), "retain": Outputs(*outs["retain"]), "test": test}
        if split.forget_classes:
            gone = _forgotten_mask(test.labels, split.forget_classes)
            d["test_forget"], d["test_retain"] = (
                test.subset(gone.nonzero().flatten()),
                test.subset((~gone).nonzero().flatten()),
            )
        return d

    inputs = EvalInputs(
        outputs={"unlearned": splits(unlearned), "retrained": splits(retrained)},
        num_classes=num_classes,
        forget_classes=tuple(split.forget_classes),
        seed=seed,
    )
    return {k.removeprefix("gap/"): v for k, v in GapToRetrain().compute(inputs).items()}


VALIDATION_FRACTION = 0.1  # of the held-out rows, carved for a method that reads held-out data


def carve_validation(
    heldout: np.ndarray, seed: int, fraction: float = VALIDATION_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """(validation rows, audited rows): a seeded ``fraction`` of the held-out rows for a method that
    reads held-out data (the calibrated stop), the rest for the measurements and the membership
    audit — a row is never both, so the audit never reads rows the method tuned itself on. With
    the CIFAR-10 test set and seed s these are the study runner's validation rows of seed s (the
    frontier's protocol). Either part may be empty when there are too few rows."""
    heldout = np.asarray(heldout, dtype=np.int64)
    k = int(round(fraction * len(heldout)))
    if k == 0 or k >= len(heldout):
        return np.zeros(0, dtype=np.int64), heldout
    pick = np.zeros(len(heldout), dtype=bool)
    pick[np.random.default_rng(seed + 17).permutation(len(heldout))[:k]] = True
    return np.sort(heldout[pick]), heldout[~pick]


def _covers(ds: ImageDataset, validation_rows: np.ndarray, split: ForgetSplit) -> bool:
    """Whether the validation rows hold a row of some class of the forget rows (what the calibrated
    stop compares with)."""
    if len(validation_rows) == 0:
        return False
    f = set(ds.train_labels[torch.as_tensor(split.forget, device=ds.train_labels.device)].cpu().tolist())
    v = set(ds.test_labels[torch.as_tensor(validation_rows, device=ds.test_labels.device)].cpu().tolist())
    return bool(f & v)


FALLBACKS = ("retrain", "refuse")


def honour(
    model: nn.Module,
    ds: ImageDataset,
    split: ForgetSplit,
    heldout: np.ndarray,
    *,
    method: str = "auto",
    config: dict[str, Any] | None = None,
    exact: bool = False,
    ctx: UnlearnContext,
    validation_rows: np.ndarray | None = None,
    reference: nn.Module | None = None,
    references: list[nn.Module] | None = None,
    request: dict[str, Any] | None = None,
    batch_size: int = 512,
    retain_max: int | None = 5000,
    runner: Callable[[], tuple[MethodResult, RunStats]] | None = None,
    fallback: str = "retrain",
    recipe: dict[str, Any] | None = None,
    train_fn: Callable[..., nn.Module] | None = None,
) -> DeletionResult:
    """Run one deletion request end to end (see the module docstring); nothing is written.

    Every approximate attempt runs under the guard (:mod:`obliviate.deletion.guard`): a result
    past the utility tolerance, still recognised by an audit that saw the rows in the original,
    or (with ``reference``) farther from retraining than doing nothing is rolled back and the
    next attempt runs; when none passes, ``retrain`` (``fallback="retrain"``) or
    :class:`DeletionRefused` (``"refuse"``). ``reference`` is the retrained model the gap is
    measured to; with ``references`` (K ≥ 2 retrained models) the evidence adds the per-example
    audit. ``runner`` replaces the method's ``unlearn`` call (a deployable SISA model deletes
    from its persisted shard state). ``recipe`` says where the training recipe and the model
    factory came from (recorded in the evidence); ``train_fn`` is the user's own training loop,
    which ``retrain`` then runs instead of :func:`obliviate.training.fit`."""
    if len(split.forget) == 0:
        raise DeletionError("the request selects no training row: there is nothing to forget")
    if len(split.retain) == 0:
        raise DeletionError(
            "the request asks to forget every training row: nothing would be left to keep "
            "the model's utility; retrain nothing, or delete the model"
        )
    if fallback not in FALLBACKS:
        raise DeletionError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    if method == "original":
        raise DeletionError(
            "'original' changes nothing, so it honours no request; the evidence already measures "
            "doing nothing beside every result: choose a method, or auto"
        )
    device = ctx.device
    received_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if references is not None and len(references) == 1:
        raise DeletionError(
            "the per-example audit needs at least 2 reference models (different seeds); give "
            "one as reference= for the gap, or two or more as references="
        )
    if references and len(heldout) == 0:
        raise DeletionError("the per-example audit compares forget rows with held-out rows: pass heldout=")
    if method != "auto":
        user_cls = METHODS.get(method)
        if user_cls.kind != "vision":
            raise DeletionError(
                f"{method!r} is an {user_cls.kind} method; a classifier needs a vision method "
                f"(obliviate list methods), or auto"
            )
        if exact and not user_cls.exact:
            raise DeletionError(
                f"an exact result was demanded but {method!r} is approximate; use retrain or sisa "
                "(or --method auto --exact)"
            )
        if user_cls.class_level and not split.forget_classes:
            raise DeletionError(f"{method!r} forgets whole classes only; this request holds some rows of their classes")
        if user_cls.sample_level and split.forget_classes:
            raise DeletionError(f"{method!r} forgets samples only; this request is whole classes (try ssd, or auto)")
        try:
            user_cls(config or {})
        except (ConfigError, ValueError, TypeError) as e:
            raise DeletionError(f"--set {getattr(e, 'field', '') or 'config'}: {e}") from None
    given = validation_rows is not None and len(validation_rows) > 0
    carved, audited = (np.zeros(0, dtype=np.int64), heldout) if given else carve_validation(heldout, ctx.seed)
    readable = np.asarray(validation_rows, dtype=np.int64) if given else carved
    sisa_model = type(model).__name__ == "SISAEnsemble"
    if method == "auto":
        plan_data = UnlearnData(ds, split, frozenset({"forget", "retain"}), None, device)
        attempts = policy.plan(
            whole_classes=bool(split.forget_classes),
            exact=exact,
            sisa_model=sisa_model,
            heldout=_covers(ds, readable, split),
            model=model,
            data=plan_data,
            ctx=ctx,
        )
        for a in attempts:
            a.config = {**a.config, **(config or {})}
        chosen_by = "policy"
    else:
        attempts = [Attempt(method, dict(config or {}), "chosen by the user")]
        chosen_by = "user"
    if any("validation" in METHODS.get(a.method)(a.config).uses for a in attempts) and not given:
        if len(carved) == 0:
            raise DeletionError(
                f"{attempts[0].method!r} reads held-out rows (a validation split) and none were "
                "given: pass validation= or enough heldout= rows to carve 10 % of them from"
            )
        validation_rows, heldout = carved, audited
        validation_source = (
            f"carved: a seeded {VALIDATION_FRACTION:.0%} of the held-out rows, read by the method "
            "and left out of the measurements and the audit"
        )
    else:
        validation_source = "given" if given else "none"
    model = model.to(device).eval()
    # retain accuracy on a seeded sample (every retain row of a large training set costs a pass
    # over the data per model); the forget and held-out rows are measured whole
    retain_rows = split.retain
    if retain_max is not None and len(retain_rows) > retain_max:
        retain_rows = np.sort(np.random.default_rng(ctx.seed + 29).choice(retain_rows, retain_max, replace=False))

    def measure(m: nn.Module) -> tuple[dict[str, Any], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        return _measure(m, ds, split, heldout, device, batch_size, retain_rows, ctx.bf16, ctx.channels_last)

    seed = ctx.seed
    k = ds.num_classes
    before, outs_before = measure(model)
    tol = tolerances(_utility_outs(outs_before, split), seed)
    mem: dict[str, Any] = {
        "attack": ATTACK,
        "original": membership_audit(outs_before["forget"], outs_before["heldout"], seed=seed),
    }
    refs = list(references or [])
    if reference is None and refs:
        reference = refs[0]
    outs_ref: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    ev_ref: dict[str, Any] | None = None
    nothing_gap: float | None = None
    original_sha = weights_sha256(model)
    if any(weights_sha256(r) == original_sha for r in [*refs, *([reference] if reference is not None else [])]):
        raise DeletionError(
            "a reference has the original's own weights: a retrained reference is a model trained "
            "without the forget rows, from scratch"
        )
    if reference is not None:
        reference = reference.to(device).eval()
        ref_figs, outs_ref = measure(reference)
        mem["retrained"] = membership_audit(outs_ref["forget"], outs_ref["heldout"], seed=seed)
        nothing_gap = study_gap(outs_before, outs_ref, split, k, seed)["avg"]
        ev_ref = {
            "sha256": weights_sha256(reference),
            "figures": ref_figs,
            "doing_nothing_gap_points": nothing_gap,
            "per_class_accuracy": per_class_accuracy(outs_ref, ds.class_names),
        }
        second = next((r for r in refs if r is not reference), None)
        if second is not None:
            ev_ref["noise_floor_points"] = study_gap(measure(second.to(device).eval())[1], outs_ref, split, k, seed)[
                "avg"
            ]
    phi_of = _phi_audit(ds, split, heldout, device, batch_size, ctx, refs, seed) if len(refs) >= 2 else None
    if phi_of is not None:
        mem["per_example"] = {
            "original": phi_of(model),
            "reference_models": [weights_sha256(r) for r in refs],
        }
    power = audit_power(mem)
    floor = (ev_ref or {}).get("noise_floor_points") or 0.0
    delivered: tuple[Attempt, MethodResult, RunStats, dict[str, Any], dict[str, Any]] | None = None

    def run(a: Attempt) -> tuple[MethodResult, RunStats, dict[str, Any], dict[str, Any]] | None:
        cls = METHODS.get(a.method)
        m = cls(a.config)
        a.config, a.ran = m.config.to_dict(), True
        try:
            if runner is not None and a.method in ("sisa",):
                result, stats = runner()
            elif a.method == "retrain" and train_fn is not None:
                result, stats = _user_retrain(train_fn, ds, split, ctx)
            else:
                data = UnlearnData(ds, split, m.uses, validation_rows, device)
                result, stats = run_method(m, model, data, ctx)
        except NonFiniteError as e:
            a.failures.append(f"diverged: {e}")
            return None
        a.seconds, a.steps = stats.seconds, stats.steps
        out = result.model.to(device).eval()
        figs, outs = measure(out)
        a.after = figs
        return result, stats, figs, outs

    def read_membership(m: nn.Module, outs: dict[str, Any]) -> tuple[str, str]:
        """The audit that decided the power, on the result (see :func:`guard.membership_reading`)."""
        if power.audit.startswith("per-example"):
            assert phi_of is not None  # a per-example audit is chosen only when there are references
            return membership_reading(mem["per_example"]["original"], phi_of(m))
        pop = membership_audit(outs["forget"], outs["heldout"], seed=seed)
        return membership_reading(mem["original"], pop, mem.get("retrained"))

    def judge(a: Attempt, result: MethodResult, figs: dict[str, Any], outs: dict[str, Any]) -> None:
        if weights_sha256(result.model) == original_sha:
            a.failures.append("changed nothing: the weights are the original's")
            return
        a.failures += utility_violations(before, figs, tol)
        if split.forget_classes:
            why = class_forgotten(
                figs, per_class_accuracy(outs, ds.class_names), [ds.class_names[c] for c in split.forget_classes], k
            )
            if why:
                a.failures.append(why)
        if power.has_power:
            reading, why = read_membership(result.model, outs)
            a.reading = reading
            if reading == "recognised":
                a.failures.append(why)
        if outs_ref:
            g = study_gap(outs, outs_ref, split, k, seed)["avg"]
            if nothing_gap is not None and g > nothing_gap + floor:
                a.failures.append(
                    f"farther from the retrained reference ({g:.2f} points) than doing nothing "
                    f"({nothing_gap:.2f}){f' beyond the noise floor ({floor:.2f})' if floor else ''}"
                )

    for a in attempts:
        got = run(a)
        if got is None:
            continue
        result, stats, figs, outs = got
        if METHODS.get(a.method).exact:
            delivered = (a, result, stats, figs, outs)
            break
        judge(a, result, figs, outs)
        if a.passed:
            delivered = (a, result, stats, figs, outs)
            break
    failed = [a for a in attempts if a.ran and not a.passed]
    if delivered is None:
        if fallback == "refuse":
            ev: dict[str, Any] = {
                "outcome": "refused",
                "attempts": [a.record() for a in attempts if a.ran],
                "before": before,
                "tolerance": tol,
                "membership": mem,
                "audit_power": vars(power),
                "verdict": (
                    "REFUSED — no attempt passed the guard and retraining was forbidden; the model is "
                    "unchanged: " + "; ".join(f"{a.method}: {'; '.join(a.failures)}" for a in failed)
                ),
            }
            raise DeletionRefused(ev["verdict"], ev)
        a = Attempt(
            "retrain",
            {},
            policy.FALLBACK_REASON
            if attempts
            else "some rows of their classes are forgotten and no held-out rows of those classes are given, so no "
            "approximate result could be checked: " + policy.FALLBACK_REASON,
        )
        attempts.append(a)
        got = run(a)
        if got is None:
            raise DeletionError(f"retraining diverged: {'; '.join(a.failures)}; check train_config")
        # retraining by the user's own loop is how the model was made: what it costs in utility is
        # what exact deletion costs on this model, delivered and named. Retraining by obliviate's fit
        # is checked on what the model serves (held-out accuracy and loss): a recipe that cannot
        # reproduce the model is not delivered (a retrained model memorises its retain rows a little
        # differently from the original, so the retain figures are not held against it)
        lost = (
            []
            if train_fn is not None
            else utility_violations(before, got[2], {k: v for k, v in tol.items() if k == "heldout"} or tol)
        )
        if lost:  # not delivered
            a.failures += lost
            how = (
                "obliviate's fit with "
                f"{'your' if (recipe or {}).get('source') == 'user' else 'its default'} train_config"
            )
            ev = {
                "outcome": "refused",
                "attempts": [x.record() for x in attempts if x.ran],
                "before": before,
                "tolerance": tol,
                "membership": mem,
                "audit_power": vars(power),
                "recipe": recipe or {},
                "verdict": (
                    f"REFUSED — no approximate attempt passed the guard, and retraining with {how} lost "
                    f"utility ({'; '.join(lost)}): pass train_fn= (your own training loop) or a train_config "
                    "that reproduces how the model was trained; the model is unchanged"
                ),
            }
            raise DeletionRefused(ev["verdict"], ev)
        delivered = (a, *got)
    chosen, result, stats, after, outs_after = delivered
    cls = METHODS.get(chosen.method)
    unlearned = result.model.to(device).eval()
    mem["unlearned"] = membership_audit(outs_after["forget"], outs_after["heldout"], seed=seed)
    if mem.get("retrained"):
        mem["vs_reference"] = compare_to_reference(mem["unlearned"], mem["retrained"])
    if phi_of is not None:
        mem["per_example"]["unlearned"] = phi_of(unlearned)
        if reference is not None and not any(reference is r for r in refs):
            mem["per_example"]["retrained"] = phi_of(reference)
    if not power.has_power:
        for a_ in (mem["unlearned"], (mem.get("per_example") or {}).get("unlearned") or {}):
            if a_.get("available"):
                a_["level"] = "no power"
                a_["verdict"] = (
                    f"the audit cannot see these rows at this size ({power.why}), so its reading of the "
                    "result proves nothing either way"
                )
    if ev_ref is not None:
        gap = study_gap(outs_after, outs_ref, split, k, seed)
        ev_ref.update(gap=gap, avg_gap_points=gap["avg"])
    utility = utility_violations(before, after, tol)
    if cls.exact:
        outcome = "exact"
    elif chosen.reading == "forgotten" or (split.forget_classes and chosen.passed):
        outcome = "verified"
    else:
        outcome = "not verifiable"
    classes = None
    if split.forget_classes:
        pc_b, pc_a = per_class_accuracy(outs_before, ds.class_names), per_class_accuracy(outs_after, ds.class_names)
        gone = [ds.class_names[c] for c in split.forget_classes]
        classes = {
            "forgotten": {
                c: {
                    "before": pc_b[c],
                    "after": pc_a[c],
                    **({"reference": ev_ref["per_class_accuracy"][c]} if ev_ref else {}),
                }
                for c in gone
            },
            "retained_change_points": {c: _change_points(pc_b[c], pc_a[c]) for c in ds.class_names if c not in gone},
        }
    labels = ds.train_labels[torch.as_tensor(split.forget, device=ds.train_labels.device)].cpu()
    touched = {ds.class_names[int(c)]: int((labels == c).sum()) for c in labels.unique().tolist()}
    req = dict(request or {})
    req.setdefault("id", f"req-{uuid.uuid4().hex[:12]}")
    req.setdefault("received_at", received_at)
    ids = dict(req.get("ids") or {})
    ids.setdefault("count", int(len(split.forget)))
    ids["classes_touched"] = touched
    req["ids"] = ids
    verdict = _verdict(
        outcome,
        chosen,
        failed,
        len(split.forget),
        before,
        after,
        tol,
        utility,
        power,
        mem,
        ev_ref,
        classes,
        stats.seconds,
    )
    unsure = [p for p in req.get("reference_provenance", []) if str(p).startswith("unverified")]
    if ev_ref is not None and unsure:
        verdict += " The retrained reference it is judged against is " + "; ".join(unsure) + "."
    evidence = {
        "format": FORMAT,
        "request": req,
        "outcome": outcome,
        "verdict": verdict,
        "data": {
            "fingerprint": (request or {}).get("dataset_fingerprint"),
            "train_rows": int(len(ds.train_labels)),
            "heldout_rows": int(len(heldout)),
            "retain_rows_measured": int(len(retain_rows)),
            "validation_rows": int(len(validation_rows)) if validation_rows is not None else 0,
            "validation_source": validation_source,
            "retain_rows_total": int(len(split.retain)),
            "forget_classes": [ds.class_names[c] for c in split.forget_classes],
        },
        "models": {
            "original_sha256": original_sha,
            "unlearned_sha256": weights_sha256(unlearned),
            "architecture": type(model).__name__,
        },
        "method": {
            "name": chosen.method,
            "config": chosen.config,
            "reference": cls.reference,
            "exact": cls.exact,
            "chosen_by": "guard" if chosen is not attempts[0] and chosen.method == "retrain" and failed else chosen_by,
            "rolled_back_before": len(failed),
            "reason": chosen.reason,
            "derived": chosen.derived,
        },
        "attempts": [a.record() for a in attempts if a.ran],
        "recipe": recipe or {},
        "tolerance": tol,
        "utility_violations": utility,
        "audit_power": vars(power),
        "classes": classes,
        "library": {"obliviate": __version__, "torch": torch.__version__},
        "splits_read": stats.splits_read,
        "wall_seconds": sum(a.seconds for a in attempts),
        "steps": stats.steps,
        "peak_memory_mb": stats.peak_memory_mb,
        "info": result.info,
        "before": before,
        "after": after,
        "membership": mem,
        "reference": ev_ref,
    }
    return DeletionResult(unlearned, evidence)


def _user_retrain(
    train_fn: Callable[..., nn.Module], ds: ImageDataset, split: ForgetSplit, ctx: Any
) -> tuple[MethodResult, RunStats]:
    """Exact retraining by the user's own loop: ``train_fn(fresh model, retain inputs, retain
    labels, seed)`` on the retain rows only (the forget rows never reach it)."""
    r = torch.as_tensor(split.retain, device=ds.train_images.device)
    fresh = ctx.model_factory(ctx.seed)
    t0 = time.perf_counter()
    out = train_fn(fresh, ds.train_images.index_select(0, r), ds.train_labels.index_select(0, r), ctx.seed)
    seconds = time.perf_counter() - t0
    model = out if isinstance(out, nn.Module) else fresh
    from ..core import check_model

    check_model(model, "the model train_fn returned")
    return MethodResult(model=model.eval(), steps=0, info={"trained_by": "train_fn (the user's own loop)"}), RunStats(
        seconds, 0, None, ["retain"]
    )


def _phi_audit(
    ds: ImageDataset,
    split: ForgetSplit,
    heldout: np.ndarray,
    device: torch.device,
    batch_size: int,
    ctx: Any,
    refs: list[nn.Module],
    seed: int,
) -> Callable[[nn.Module], dict[str, Any]]:
    """``audit(model)``: the per-example audit (offline LiRA and RMIA against the K
    references) of one model, on the forget rows and class-matched held-out rows."""
    from ..attacks.per_example import matched_nonmembers

    test_labels = ds.test_labels.cpu().numpy()[heldout]
    try:  # held-out rows in the forget set's class proportions (as the population audit's)
        pos = matched_nonmembers(ds.train_labels.cpu().numpy()[split.forget], test_labels, seed=seed + 31)
    except ValueError:
        pos = np.arange(len(heldout))
    held_matched = heldout[np.unique(pos)]

    def phi(mdl: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        return (
            _phi(mdl, ds, split.forget, False, device, batch_size, ctx),
            _phi(mdl, ds, held_matched, True, device, batch_size, ctx),
        )

    ref_phi = [phi(r.to(device).eval()) for r in refs]
    return lambda mdl: per_example_audit(phi(mdl.to(device).eval()), ref_phi, seed=seed)


def _pts(v: float) -> str:
    return f"{100 * v:+.2f}"


def _verdict(
    outcome: str,
    chosen: Attempt,
    failed: list[Attempt],
    n: int,
    before: dict[str, Any],
    after: dict[str, Any],
    tol: dict[str, dict[str, float]],
    utility: list[str],
    power: Any,
    mem: dict[str, Any],
    ev_ref: dict[str, Any] | None,
    classes: dict[str, Any] | None,
    seconds: float,
) -> str:
    """The evidence's first line — the outcome in words a non-specialist can read — then the
    numbers that decide it."""
    rolled = (
        (
            f" after {len(failed)} approximate attempt(s) were rolled back "
            f"({'; '.join(f'{a.method}: {a.failures[0]}' for a in failed)})"
        )
        if failed
        else ""
    )
    head = {
        "exact": f"EXACT — {chosen.method} retrained the model without the {n} row(s){rolled}",
        "verified": f"VERIFIED — {chosen.method} (approximate) removed the {n} row(s)' influence as far as this "
        "model's measurements can tell",
        "not verifiable": f"NOT VERIFIABLE AT THIS SIZE — {chosen.method} (approximate) changed the model and kept "
        "its utility, but "
        + (
            "the audit cannot see these rows even in the original"
            if not power.has_power
            else "the audit cannot tell at this size whether they moved"
        )
        + ", so nothing here proves they are "
        "forgotten; demand exact=True (--exact) for a provable deletion",
    }[outcome]
    parts = [
        head,
        f"forget accuracy {100 * before['forget']['accuracy']:.1f} % → {100 * after['forget']['accuracy']:.1f} %",
    ]
    for split, name in (("retain", "retain"), ("heldout", "held-out")):
        if split in tol and after.get(split, {}).get("n"):
            parts.append(
                f"{name} accuracy {_pts(after[split]['accuracy'] - before[split]['accuracy'])} points "
                f"(tolerance ±{100 * tol[split]['accuracy']:.2f})"
            )
    if utility:
        parts.append(
            (
                "UTILITY CHANGED beyond the original's sampling noise by retraining (what exact deletion "
                "costs on this model): "
                if outcome == "exact"
                else "UTILITY LOST beyond tolerance: "
            )
            + "; ".join(utility)
        )
    if classes:
        for c, v in classes["forgotten"].items():
            parts.append(
                f"class {c}: held-out accuracy {_pct(v['before'])} → {_pct(v['after'])}"
                + (f" (reference {_pct(v['reference'])})" if "reference" in v else "")
            )
        worst = min(
            ((c, d) for c, d in classes["retained_change_points"].items() if d is not None),
            key=lambda t: t[1],
            default=None,
        )
        if worst:
            parts.append(f"largest change of a retained class: {worst[0]} {worst[1]:+.1f} points")
    else:
        pe: dict[str, Any] = mem.get("per_example") or {}
        o = pe["original"] if (pe.get("original") or {}).get("available") else mem["original"]
        u = pe["unlearned"] if (pe.get("unlearned") or {}).get("available") else mem["unlearned"]
        if o.get("available") and u.get("available"):
            parts.append(
                f"membership audit: original {o['auc']:.3f} [{o['ci95'][0]:.3f}, {o['ci95'][1]:.3f}], "
                f"result {u['auc']:.3f} [{u['ci95'][0]:.3f}, {u['ci95'][1]:.3f}] — {power.why}"
            )
    if ev_ref is not None:
        floor = ev_ref.get("noise_floor_points")
        parts.append(
            f"gap to the retrained reference {ev_ref['avg_gap_points']:.2f} points (doing nothing "
            f"{ev_ref['doing_nothing_gap_points']:.2f}"
            f"{f'; two references {floor:.2f} apart' if floor is not None else ''})"
        )
    parts.append(f"{seconds:.2f} s")
    return "; ".join(parts)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


DEFAULT_TRAIN: dict[str, Any] = {
    "epochs": 5.0,
    "batch_size": 64,
    "lr": 0.01,
    "augment": False,
    "schedule": "cosine",
    "warmup_frac": 0.0,
}


def _train_config(train_config: TrainConfig | dict[str, Any] | None) -> tuple[TrainConfig, dict[str, Any]]:
    """The recipe retraining and the fine-tuning family use, and where each of its fields came
    from (the user's, or obliviate's default)."""
    if isinstance(train_config, TrainConfig):
        return train_config, {"source": "user", "fields_from_user": "all"}
    given = dict(train_config or {})
    try:
        cfg = TrainConfig.from_dict({**DEFAULT_TRAIN, **given})
    except (ConfigError, ValueError, TypeError) as e:
        raise DeletionError(f"train_config: {e}") from None
    return cfg, {
        "source": "user" if given else "obliviate default",
        "fields_from_user": sorted(given),
        "fields_from_default": sorted(set(cfg.to_dict()) - set(given)),
    }


@claims_out
def unlearn(
    model: nn.Module,
    *,
    forget: Any,
    retain: Any,
    method: str = "auto",
    config: dict[str, Any] | None = None,
    validation: Any | None = None,
    heldout: Any | None = None,
    reference: nn.Module | None = None,
    references: list[nn.Module] | None = None,
    exact: bool = False,
    fallback: str = "retrain",
    train_config: TrainConfig | dict[str, Any] | None = None,
    model_factory: Any = None,
    train_fn: Callable[..., nn.Module] | None = None,
    class_names: list[str] | tuple[str, ...] | None = None,
    out: str | Any | None = None,
    request_id: str | None = None,
    ids: list[Any] | None = None,
    ledger_ids: str = "plain",
    ledger_salt: str | None = None,
    signing_key: Any = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    tokenizer: Any = None,
) -> Any:
    """Make ``model`` forget the rows of ``forget`` and keep what ``retain`` teaches; returns the
    unlearned model (``model`` itself is untouched) with its evidence record.

    A causal language model (a transformers ``*ForCausalLM``) with its ``tokenizer`` goes to
    :func:`obliviate.deletion.lm_requests.unlearn_lm`: rows are texts or ``{question, answer}``
    pairs, ``reference`` is a model tuned without the forget rows, and ``method``, ``config``,
    ``heldout``, ``out``, ``request_id``, ``ids``, ``device`` and ``seed`` mean what they mean here;
    the classifier-only arguments are refused.

    Args:
        model: any ``torch.nn.Module`` classifier returning logits ``(N, classes)`` — a
            torchvision or timm model works unchanged — or a causal LM with ``tokenizer``.
        forget, retain: ``Dataset``/``DataLoader`` of ``(input, label)`` (or ``(inputs, labels)``
            tensors), inputs exactly as the model takes them.
        method: a registered vision method, or ``"auto"`` (:mod:`obliviate.deletion.policy`).
            Every approximate method runs under the guard (:mod:`obliviate.deletion.guard`).
        config: the method's config fields (``obliviate describe NAME``), validated.
        validation: held-out data for methods that read a validation split.
        heldout: data the model never trained on, for the calibrated stop, the utility guard and
            the membership audit (without it, ``auto`` can check no approximate result and retrains).
        reference: a model retrained without the forget rows; the evidence then gives the gap to it
            beside doing nothing's, and the guard rejects a result farther from it than doing nothing.
        references: K ≥ 2 models retrained without the forget rows (different seeds): the
            evidence adds the per-example audit (offline LiRA) and the noise floor.
        exact: demand an exact method (``retrain``); ``auto`` honours it, others are refused.
        fallback: when no attempt passes the guard: ``"retrain"`` (exact), or ``"refuse"``
            (:class:`DeletionRefused`, nothing delivered).
        train_config: how your model was trained — the recipe ``retrain`` and the fine-tuning family
            use, and whose ``label_smoothing`` the retain terms continue (a ``TrainConfig`` or its
            fields; unset fields take obliviate's defaults: 5 epochs of SGD at lr 0.01, batch 64,
            no augmentation, no label smoothing). The evidence records which fields were yours.
        model_factory: ``seed -> fresh model`` for ``retrain`` (default: re-initialise ``model``).
        train_fn: your own training loop, ``train_fn(model, inputs, labels, seed) -> model``: exact
            retraining then runs it on the retain rows (instead of obliviate's ``fit`` with
            ``train_config``), so the retrained model is trained exactly as yours was.
        class_names: names of the classes, for the evidence (default ``"0"``, ``"1"``, …).
        out: a new folder to write the checkpoint, ``evidence.json``/``.html`` and the ledger to —
            the folder ``obliviate unlearn`` writes.
        request_id: the request's id in the evidence and ledger (default: generated).
        ids: your own ids of the forget rows (record keys, customer ids), for the ledger; without
            them the ledger holds the SHA-256 of the forget inputs.
        ledger_ids: ``"plain"`` (the ids in the ledger) or ``"salted"`` (HMAC-SHA256 of each id under
            ``ledger_salt``, default ``$OBLIVIATE_LEDGER_SALT``: a ledger of whom was forgotten is
            itself personal data).
        signing_key: the operator's ledger key (a path from ``obliviate keygen``, or a
            :class:`~obliviate.deletion.signing.Key`; default ``$OBLIVIATE_LEDGER_KEY``): the
            folder's head is signed, so ``obliviate ledger verify --key`` detects a rewritten,
            emptied or stripped lineage. Without one the lineage is written unanchored.
    """
    from .lm_requests import is_causal_lm, unlearn_lm

    if tokenizer is not None or is_causal_lm(model):
        if tokenizer is None:
            raise DeletionError(
                f"{type(model).__name__} is a causal language model: pass its tokenizer "
                "(tokenizer=AutoTokenizer.from_pretrained(...)) and rows of text or {question, answer}"
            )
        vision_only = {
            "validation": validation,
            "references": references,
            "train_config": train_config,
            "model_factory": model_factory,
            "train_fn": train_fn,
            "class_names": class_names,
        }
        given = sorted(k for k, v in vision_only.items() if v is not None) + (["exact"] if exact else [])
        if given:
            raise DeletionError(f"{given} apply to classifiers; a language model's request takes none of them")
        return unlearn_lm(
            model,
            tokenizer=tokenizer,
            forget=forget,
            retain=retain,
            heldout=heldout,
            reference=reference,
            method=method,
            config=config,
            out=out,
            request_id=request_id,
            ids=ids,
            signing_key=signing_key,
            device=device,
            seed=seed,
        )
    dev = resolve_device(device)
    try:
        ds, split, held = user_problem(model, forget, retain, heldout, dev, class_names=class_names)
    except UserDataError as e:
        raise DeletionError(str(e)) from None
    val_rows = None
    if validation is not None:
        xv, yv = to_tensors(validation, "validation")
        if xv.shape[1:] != ds.train_images.shape[1:]:
            raise DeletionError(f"validation inputs {tuple(xv.shape[1:])} differ in shape from the training inputs")
        n0 = len(ds.test_labels)
        ds.test_images, ds.test_labels = torch.cat([ds.test_images, xv]), torch.cat([ds.test_labels, yv])
        val_rows = np.arange(n0, n0 + len(yv))
    ds = ds.to(dev)
    cfg, recipe = _train_config(train_config)
    recipe = {
        "train_config": cfg.to_dict(),
        **recipe,
        "model_factory": "user" if model_factory is not None else "re-initialise the model's layers (reset_parameters)",
        "retraining": "train_fn: the user's own loop"
        if train_fn is not None
        else "obliviate.training.fit with train_config",
    }
    ctx = UnlearnContext(device=dev, seed=seed, model_factory=model_factory or reinit_factory(model), train_config=cfg)
    xf = ds.train_images[: len(split.forget)]
    req: dict[str, Any] = {
        "ids": {
            "count": int(len(split.forget)),
            "sha256": tensor_sha256(xf),
            "what": "SHA-256 of the forget inputs (the API receives rows, not ids)",
        },
        "dataset_fingerprint": tensor_sha256(ds.train_images)[:20],
    }
    if request_id is not None:
        req["id"] = request_id
    if ids is not None and len(ids) != len(split.forget):
        raise DeletionError(f"ids: {len(ids)} id(s) for {len(split.forget)} forget row(s); give one id per row")
    salt = ledger_salt if ledger_salt is not None else os.environ.get("OBLIVIATE_LEDGER_SALT")
    if out is not None:
        from .output import OutputError
        from .output import ledger_ids as _form

        try:
            _form([], ledger_ids, salt)  # the folder itself was claimed by @claims_out
            key = signing.signing_key(signing_key)
        except (OutputError, signing.SigningKeyError) as e:
            raise DeletionError(str(e)) from None
    res = honour(
        model,
        ds,
        split,
        held,
        method=method,
        config=config,
        exact=exact,
        ctx=ctx,
        validation_rows=val_rows,
        reference=reference,
        references=references,
        request=req,
        fallback=fallback,
        recipe=recipe,
        train_fn=train_fn,
    )
    if out is not None:
        from .output import write_user_output

        write_user_output(
            out,
            res,
            num_classes=ds.num_classes,
            forget_ids=list(ids or []),
            ledger_form=ledger_ids,
            fingerprint=req["dataset_fingerprint"],
            salt=salt,
            key=key,
        )
    return res


def audit(
    model: nn.Module,
    *,
    forget: Any,
    heldout: Any,
    retain: Any = None,
    original: nn.Module | None = None,
    reference: nn.Module | None = None,
    references: list[nn.Module] | None = None,
    class_names: list[str] | tuple[str, ...] | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    retain_max: int | None = 5000,
) -> dict[str, Any]:
    """Measure without changing anything: accuracy and loss on ``forget`` and ``heldout`` (and
    ``retain``), the membership audit — with ``references`` (K ≥ 2) the per-example one — and,
    given a retrained ``reference`` (or ``references[0]``) and ``retain``, the study's Avg. gap
    to it (:func:`study_gap`), beside the ``original``'s (doing nothing) and the second
    reference's (the noise floor). The same measurements as the evidence of :func:`unlearn`."""
    dev = resolve_device(device)
    refs = list(references or [])
    if references is not None and len(refs) == 1:
        raise DeletionError("the per-example audit needs at least 2 reference models; give one as reference=")
    reference = reference if reference is not None else (refs[0] if refs else None)
    xr_given = retain is not None
    try:
        ds, split, held = user_problem(
            model, forget, retain if xr_given else heldout, heldout, dev, class_names=class_names
        )
    except UserDataError as e:
        raise DeletionError(str(e)) from None
    if not xr_given:  # no retain rows: the held-out rows stood in to build the problem; measure none
        split = ForgetSplit(
            forget=split.forget,
            retain=split.retain[:0],
            test_forget=split.test_forget,
            test_retain=split.test_retain,
            forget_classes=(),
        )
    ds = ds.to(dev)
    retain_rows = split.retain
    if retain_max is not None and len(retain_rows) > retain_max:
        retain_rows = np.sort(np.random.default_rng(seed + 29).choice(retain_rows, retain_max, replace=False))
    ctx = UnlearnContext(device=dev, seed=seed, model_factory=lambda s: model, train_config=TrainConfig())

    def measure(m: nn.Module) -> tuple[dict[str, Any], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        return _measure(m.to(dev).eval(), ds, split, held, dev, 512, retain_rows)

    figs, outs = measure(model)
    res: dict[str, Any] = {
        "model_sha256": weights_sha256(model),
        **figs,
        "membership": membership_audit(outs["forget"], outs["heldout"], seed=seed),
    }
    if split.forget_classes:
        res["per_class_accuracy"] = per_class_accuracy(outs, ds.class_names)
    phi_of = _phi_audit(ds, split, held, dev, 512, ctx, refs, seed) if len(refs) >= 2 else None
    if phi_of is not None:
        res["per_example"] = phi_of(model)
    others: dict[str, Any] = {}
    if original is not None:
        o_figs, o_outs = measure(original)
        res["original"] = {
            **o_figs,
            "membership": membership_audit(o_outs["forget"], o_outs["heldout"], seed=seed),
            **({"per_example": phi_of(original)} if phi_of is not None else {}),
        }
        others["original"] = o_outs
    if reference is not None:
        r_figs, r_outs = measure(reference)
        mem_r = membership_audit(r_outs["forget"], r_outs["heldout"], seed=seed)
        res["reference"] = {**r_figs, "membership": mem_r, "sha256": weights_sha256(reference)}
        res["vs_reference"] = compare_to_reference(res["membership"], mem_r)
        if xr_given:
            res["gap_points"] = study_gap(outs, r_outs, split, ds.num_classes, seed)["avg"]
            if "original" in others:
                res["original"]["gap_points"] = study_gap(others["original"], r_outs, split, ds.num_classes, seed)[
                    "avg"
                ]
            second = next((r for r in refs if r is not reference), None)
            if second is not None:
                res["noise_floor_points"] = study_gap(measure(second)[1], r_outs, split, ds.num_classes, seed)["avg"]
    return res
