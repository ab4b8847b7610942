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
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..core import METHODS, ConfigError, MethodResult, RunStats, run_method
from ..data import ForgetSplit, ImageDataset
from ..methods import UnlearnContext, UnlearnData
from ..train import TrainConfig, predict_logits
from ..utils import resolve_device
from . import policy
from .audit import ATTACK, compare_to_reference, membership_audit, per_example_audit, split_figures
from .evidence import FORMAT, tensor_sha256, weights_sha256
from .userdata import UserDataError, to_tensors, user_problem


class DeletionError(ValueError):
    """A deletion request that cannot be honoured as asked; the message says what to change."""


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
    resettable = {id(p) for mod in model.modules() if callable(getattr(mod, "reset_parameters", None))
                  for p in mod.parameters(recurse=False)}
    kept = [n for n, p in model.named_parameters() if id(p) not in resettable]

    def make(seed: int) -> nn.Module:
        if kept:
            raise DeletionError(f"cannot re-initialise this model: {len(kept)} parameter(s) have no "
                                f"reset_parameters (e.g. {kept[:3]}), so a fresh copy would keep trained values; "
                                "pass model_factory=(seed -> a freshly initialised model)")
        fresh = copy.deepcopy(model)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for mod in fresh.modules():
                reset = getattr(mod, "reset_parameters", None)
                if callable(reset):
                    reset()
        return fresh

    return make


def _logits(model: nn.Module, ds: ImageDataset, rows: np.ndarray, test: bool, device: torch.device,
            batch_size: int, bf16: bool = False, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = (ds.test_images, ds.test_labels) if test else (ds.train_images, ds.train_labels)
    r = torch.as_tensor(rows, dtype=torch.long)
    if len(r) == 0:
        return torch.zeros(0, ds.num_classes), torch.zeros(0, dtype=torch.long)
    out = predict_logits(model, images, mean=ds.mean, std=ds.std, rows=r, batch_size=batch_size, device=device,
                         bf16=bf16, channels_last=channels_last)
    return out, labels[r.to(labels.device)].cpu()


def _phi(model: nn.Module, ds: ImageDataset, rows: np.ndarray, test: bool, device: torch.device, batch_size: int,
         ctx: Any, plain: tuple[torch.Tensor, torch.Tensor] | None = None) -> np.ndarray:
    """φ per row and query ``(N, Q)``: the image and, for images, its mirror (LiRA's queries).
    ``plain``: the model's logits and labels on ``rows`` when already computed."""
    from ..attacks.per_example import logit_confidence

    kw = dict(bf16=ctx.bf16, channels_last=getattr(ctx, "channels_last", False))
    logits, labels = plain if plain is not None else _logits(model, ds, rows, test, device, batch_size, **kw)
    cols = [logit_confidence(logits.numpy(), labels.numpy())]
    images = ds.test_images if test else ds.train_images
    if images.ndim == 4 and not images.is_floating_point():
        r = torch.as_tensor(rows, dtype=torch.long, device=images.device)
        mirrored = images.index_select(0, r).flip(3)
        out = predict_logits(model, mirrored, mean=ds.mean, std=ds.std, batch_size=batch_size, device=device, **kw)
        cols.append(logit_confidence(out.numpy(), labels.numpy()))
    return np.stack(cols, axis=1)


def _measure(model: nn.Module, ds: ImageDataset, split: ForgetSplit, heldout: np.ndarray, device: torch.device,
             batch_size: int, retain_rows: np.ndarray, bf16: bool = False, channels_last: bool = False,
             ) -> tuple[dict[str, Any], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    kw = dict(bf16=bf16, channels_last=channels_last)
    outs = {"forget": _logits(model, ds, split.forget, False, device, batch_size, **kw),
            "retain": _logits(model, ds, retain_rows, False, device, batch_size, **kw),
            "heldout": _logits(model, ds, heldout, True, device, batch_size, **kw)}
    return {k: split_figures(*v) for k, v in outs.items()}, outs


def _avg_gap(after: dict[str, Any], ref: dict[str, Any], mem_u: dict[str, Any], mem_r: dict[str, Any]) -> float:
    """SalUn's Avg. gap, in points, over the figures this record has (forget / retain / held-out
    accuracy and the audit AUC)."""
    diffs = [abs(after[s]["accuracy"] - ref[s]["accuracy"]) for s in ("forget", "retain", "heldout")
             if after.get(s, {}).get("n") and ref.get(s, {}).get("n")]
    if mem_u.get("available") and mem_r.get("available"):
        diffs.append(abs(mem_u["auc"] - mem_r["auc"]))
    return 100.0 * float(np.mean(diffs)) if diffs else float("nan")


VALIDATION_FRACTION = 0.1  # of the held-out rows, carved for a method that reads held-out data


def carve_validation(heldout: np.ndarray, seed: int, fraction: float = VALIDATION_FRACTION
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
) -> DeletionResult:
    """Run one deletion request end to end (see the module docstring); nothing is written.
    ``reference`` is the retrained model the gap is measured to; with ``references`` (K ≥ 2
    retrained models, ``reference`` among them or not) the evidence adds the per-example audit.
    ``runner`` replaces the method's ``unlearn`` call (a deployable SISA model deletes from its
    persisted shard state instead of training an ensemble from scratch)."""
    if len(split.forget) == 0:
        raise DeletionError("the request selects no training row: there is nothing to forget")
    if len(split.retain) == 0:
        raise DeletionError("the request asks to forget every training row: nothing would be left to keep "
                            "the model's utility; retrain nothing, or delete the model")
    device = ctx.device
    received_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if references is not None and len(references) == 1:
        raise DeletionError("the per-example audit needs at least 2 reference models (different seeds); give "
                            "one as reference= for the gap, or two or more as references=")
    if references and len(heldout) == 0:
        raise DeletionError("the per-example audit compares forget rows with held-out rows: pass heldout=")
    chosen_by, reason = "user", ""
    given = validation_rows is not None and len(validation_rows) > 0
    carved, audited = (np.zeros(0, dtype=np.int64), heldout) if given else carve_validation(heldout, ctx.seed)
    if method == "auto":
        readable = carved if validation_rows is None or not given else np.asarray(validation_rows, dtype=np.int64)
        c = policy.choose(whole_classes=bool(split.forget_classes), exact=exact,
                          sisa_model=type(model).__name__ == "SISAEnsemble", heldout=_covers(ds, readable, split))
        method, reason = c.method, c.reason
        config = {**c.config, **(config or {})}
        chosen_by = "policy"
    elif exact and not METHODS.get(method).exact:
        raise DeletionError(f"an exact result was demanded but {method!r} is approximate; use retrain or sisa "
                            "(or --method auto --exact)")
    cls = METHODS.get(method)
    if cls.kind != "vision":
        raise DeletionError(f"{method!r} is an {cls.kind} method; a classifier needs a vision method")
    if cls.class_level and not split.forget_classes:
        raise DeletionError(f"{method!r} forgets whole classes only; this request holds some rows of their classes")
    try:
        m = cls(config or {})
    except (ConfigError, ValueError, TypeError) as e:
        field = getattr(e, "field", "")
        raise DeletionError(f"--set {field or 'config'}: {e}") from None
    validation_source = "given" if given else "none"
    if "validation" in m.uses and not given:
        if len(carved) == 0:
            raise DeletionError(f"{method!r} reads held-out rows (a validation split) and none were given: pass "
                                "validation= or enough heldout= rows to carve 10 % of them from")
        validation_rows, heldout = carved, audited
        validation_source = (f"carved: a seeded {VALIDATION_FRACTION:.0%} of the held-out rows, read by the method "
                             "and left out of the measurements and the audit")
    model = model.to(device).eval()
    # retain accuracy on a seeded sample (every retain row of a large training set costs a pass
    # over the data per model); the forget and held-out rows are measured whole
    retain_rows = split.retain
    if retain_max is not None and len(retain_rows) > retain_max:
        retain_rows = np.sort(np.random.default_rng(ctx.seed + 29).choice(retain_rows, retain_max, replace=False))

    def measure(m: nn.Module) -> tuple[dict[str, Any], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        return _measure(m, ds, split, heldout, device, batch_size, retain_rows, ctx.bf16, ctx.channels_last)

    before, outs_before = measure(model)
    if runner is not None:
        result, stats = runner()
    else:
        data = UnlearnData(ds, split, m.uses, validation_rows, device)
        result, stats = run_method(m, model, data, ctx)
    unlearned = result.model.to(device).eval()
    after, outs_after = measure(unlearned)
    seed = ctx.seed
    mem = {"attack": ATTACK,
           "original": membership_audit(outs_before["forget"], outs_before["heldout"], seed=seed),
           "unlearned": membership_audit(outs_after["forget"], outs_after["heldout"], seed=seed)}
    ev_ref = None
    if reference is not None:
        reference = reference.to(device).eval()
        ref_figs, outs_ref = measure(reference)
        mem["retrained"] = membership_audit(outs_ref["forget"], outs_ref["heldout"], seed=seed)
        mem["vs_reference"] = compare_to_reference(mem["unlearned"], mem["retrained"])
        ev_ref = {"sha256": weights_sha256(reference), "figures": ref_figs,
                  "avg_gap_points": _avg_gap(after, ref_figs, mem["unlearned"], mem["retrained"])}
    refs = list(references or [])
    if len(refs) >= 2:
        from ..attacks.per_example import matched_nonmembers

        test_labels = ds.test_labels.cpu().numpy()[heldout]
        # held-out rows in the forget set's class proportions (as the population audit's)
        try:
            pos = matched_nonmembers(ds.train_labels.cpu().numpy()[split.forget], test_labels, seed=seed + 31)
        except ValueError:
            pos = np.arange(len(heldout))
        match = np.zeros(len(heldout), dtype=bool)
        match[pos] = True
        held_matched = heldout[match]

        def phi(mdl: nn.Module, outs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
            """φ on forget and class-matched held-out rows, reusing the logits ``_measure`` made."""
            m = torch.as_tensor(match)
            held = None if outs is None else (outs["heldout"][0][m], outs["heldout"][1][m])
            return (_phi(mdl, ds, split.forget, False, device, batch_size, ctx,
                         None if outs is None else outs["forget"]),
                    _phi(mdl, ds, held_matched, True, device, batch_size, ctx, held))

        ref_phi = [phi(r.to(device).eval()) for r in refs]
        mem["per_example"] = {"original": per_example_audit(phi(model, outs_before), ref_phi, seed=seed),
                              "unlearned": per_example_audit(phi(unlearned, outs_after), ref_phi, seed=seed),
                              **({"retrained": per_example_audit(phi(reference, outs_ref), ref_phi, seed=seed)}
                                 if reference is not None and not any(reference is r for r in refs) else {}),
                              "reference_models": [weights_sha256(r) for r in refs]}
    labels = ds.train_labels[torch.as_tensor(split.forget, device=ds.train_labels.device)].cpu()
    touched = {ds.class_names[int(c)]: int((labels == c).sum()) for c in labels.unique().tolist()}
    req = dict(request or {})
    req.setdefault("id", f"req-{uuid.uuid4().hex[:12]}")
    req.setdefault("received_at", received_at)
    ids = dict(req.get("ids") or {})
    ids.setdefault("count", int(len(split.forget)))
    ids["classes_touched"] = touched
    req["ids"] = ids
    u = mem["per_example"]["unlearned"] if "per_example" in mem else mem["unlearned"]
    verdict = (f"{method} {'(exact)' if cls.exact else '(approximate)'} forgot {len(split.forget)} row(s) in "
               f"{stats.seconds:.2f} s; forget accuracy {100 * before['forget']['accuracy']:.1f} % → "
               f"{100 * after['forget']['accuracy']:.1f} %; membership audit: {u['verdict']}")
    if ev_ref is not None:
        verdict += (f"; against the retrained reference: {mem['vs_reference']}; gap to it "
                    f"{ev_ref['avg_gap_points']:.2f} points")
    evidence = {
        "format": FORMAT, "request": req,
        "data": {"fingerprint": (request or {}).get("dataset_fingerprint"), "train_rows": int(len(ds.train_labels)),
                 "heldout_rows": int(len(heldout)), "retain_rows_measured": int(len(retain_rows)),
                 "validation_rows": int(len(validation_rows)) if validation_rows is not None else 0,
                 "validation_source": validation_source,
                 "retain_rows_total": int(len(split.retain)), "forget_classes": [ds.class_names[c] for c in split.forget_classes]},
        "models": {"original_sha256": weights_sha256(model), "unlearned_sha256": weights_sha256(unlearned),
                   "architecture": type(model).__name__},
        "method": {"name": method, "config": m.config.to_dict(), "reference": cls.reference, "exact": cls.exact,
                   "chosen_by": chosen_by, "reason": reason},
        "library": {"obliviate": __version__, "torch": torch.__version__},
        "splits_read": stats.splits_read, "wall_seconds": stats.seconds, "steps": stats.steps,
        "peak_memory_mb": stats.peak_memory_mb, "info": result.info,
        "before": before, "after": after, "membership": mem, "reference": ev_ref, "verdict": verdict,
    }
    return DeletionResult(unlearned, evidence)


def _default_train_config(train_config: TrainConfig | dict[str, Any] | None) -> TrainConfig:
    if isinstance(train_config, TrainConfig):
        return train_config
    base = {"epochs": 5.0, "batch_size": 64, "lr": 0.01, "augment": False, "schedule": "cosine",
            "warmup_frac": 0.0}
    return TrainConfig.from_dict({**base, **(train_config or {})})


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
    train_config: TrainConfig | dict[str, Any] | None = None,
    model_factory: Any = None,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> DeletionResult:
    """Make ``model`` forget the rows of ``forget`` and keep what ``retain`` teaches; returns the
    unlearned model (``model`` itself is untouched) with its evidence record.

    Args:
        model: any ``torch.nn.Module`` classifier returning logits ``(N, classes)`` — a
            torchvision or timm model works unchanged.
        forget, retain: ``Dataset``/``DataLoader`` of ``(input, label)`` (or ``(inputs, labels)``
            tensors), inputs exactly as the model takes them.
        method: a registered vision method, or ``"auto"`` (:mod:`obliviate.deletion.policy`).
        config: the method's config fields (``obliviate describe NAME``), validated.
        validation: held-out data for methods that read a validation split.
        heldout: data the model never trained on, for the measurements and the membership audit
            (its classes are matched to the forget set's).
        reference: a model retrained without the forget rows; the evidence then gives the gap to it.
        references: K ≥ 2 models retrained without the forget rows (different seeds): the
            evidence adds the per-example audit (offline LiRA) and its verdict leads.
        exact: demand an exact method (``retrain``); ``auto`` honours it, others are refused.
        train_config: how the fine-tuning family and ``retrain`` train (a ``TrainConfig`` or its
            fields; default 5 epochs of SGD at lr 0.01, batch 64, no augmentation).
        model_factory: ``seed -> fresh model`` for ``retrain`` (default: re-initialise ``model``).
    """
    dev = resolve_device(device)
    try:
        ds, split, held = user_problem(model, forget, retain, heldout, dev)
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
    ctx = UnlearnContext(device=dev, seed=seed, model_factory=model_factory or reinit_factory(model),
                         train_config=_default_train_config(train_config))
    xf = ds.train_images[: len(split.forget)]
    req = {"ids": {"count": int(len(split.forget)), "sha256": tensor_sha256(xf),
                   "what": "SHA-256 of the forget inputs (the API receives rows, not ids)"},
           "dataset_fingerprint": tensor_sha256(ds.train_images)[:20]}
    return honour(model, ds, split, held, method=method, config=config, exact=exact, ctx=ctx,
                  validation_rows=val_rows, reference=reference, references=references, request=req)


def audit(model: nn.Module, *, forget: Any, heldout: Any, reference: nn.Module | None = None,
          device: str | torch.device | None = None, seed: int = 0) -> dict[str, Any]:
    """Measure without changing anything: accuracy and loss on ``forget`` and ``heldout``, and the
    membership audit (with the retrained ``reference``'s beside it when given)."""
    dev = resolve_device(device)
    xf, yf = to_tensors(forget, "forget")
    xh, yh = to_tensors(heldout, "heldout")

    def outs(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = m.to(dev).eval()
        return predict_logits(m, x, mean=(), std=(), device=dev), y

    of, oh = outs(model, xf, yf), outs(model, xh, yh)
    result: dict[str, Any] = {"forget": split_figures(*of), "heldout": split_figures(*oh),
                              "membership": membership_audit(of, oh, seed=seed),
                              "model_sha256": weights_sha256(model)}
    if reference is not None:
        rf, rh = outs(reference, xf, yf), outs(reference, xh, yh)
        result["reference"] = {"forget": split_figures(*rf), "heldout": split_figures(*rh),
                               "membership": membership_audit(rf, rh, seed=seed),
                               "sha256": weights_sha256(reference)}
        result["vs_reference"] = compare_to_reference(result["membership"], result["reference"]["membership"])
    return result
