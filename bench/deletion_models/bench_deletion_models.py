"""Deletion requests on models obliviate was never tuned on: each trained by its own code.

    .venv/bin/python bench/deletion_models/bench_deletion_models.py [--data-root ../shared/data/cifar10]
        [--models NAME ...] [--stage train|unlearn|all] [--work bench/work/deletion_models]

Four user-style models (``bench/deletion_models/user_models.py``: torchvision's ResNet-18 with
SGD, a timm ViT with AdamW, a small CNN with Adam and label smoothing, an MLP on scikit-learn's
digits as tabular features), each trained by its own loop — never by ``obliviate.training.fit``.
Per model three requests: a few dozen ids inside one class, a random 1 %, a whole class; for
each, two references retrained by the model's own loop without the rows (seeds 1, 2). Then
``obliviate.unlearn(model, forget=, retain=, heldout=)`` with ``method="auto"`` as a production
user calls it: no reference given (the references are only used afterwards, by
``obliviate.audit``, to measure the result). The policy's settings were chosen on the two
``DEV`` models (``--models dev_vgg_bn dev_issue_cnn``), never on the four reported ones.

Writes ``bench/deletion_models/results/results.{json,md}`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent  # this question's folder: its configs, results/ and README
sys.path.insert(0, str(HERE))

import user_models as U  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
TRAIN_PER_CLASS, TEST_PER_CLASS = 300, 200
# per model: (class of the ids request, the whole class forgotten); the DEV models' are the policy's
REQUESTS: dict[str, tuple[int, int]] = {
    "resnet18_sgd": (3, 8),
    "vit_adamw": (5, 1),
    "cnn_adam_ls": (6, 9),
    "mlp_tabular": (7, 4),
    "dev_vgg_bn": (0, 2),
    "dev_issue_cnn": (1, 4),
}
IDS = 40  # a few dozen ids inside one class
RANDOM = 0.01


def load_data(kind: str, root: Path, seed: int) -> dict[str, torch.Tensor]:
    """Model-ready tensors: CIFAR-10 normalised NCHW (a stratified subset), or digits standardised."""
    if kind == "digits_tabular":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        d = load_digits()
        xtr, xte, ytr, yte = train_test_split(d.data, d.target, test_size=0.33, stratify=d.target, random_state=seed)
        mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
        f = lambda a: torch.tensor((a - mu) / sd, dtype=torch.float32)  # noqa: E731
        return {"x": f(xtr), "y": torch.tensor(ytr), "xt": f(xte), "yt": torch.tensor(yte)}
    out = {}
    rng = np.random.default_rng(seed)
    for split, per, key in (("train", TRAIN_PER_CLASS, ""), ("test", TEST_PER_CLASS, "t")):
        z = np.load(root / f"{split}.npz")
        imgs, labels = z["images"], z["labels"].astype(np.int64)
        rows = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per, replace=False) for c in range(10)]))
        x = torch.tensor(imgs[rows]).permute(0, 3, 1, 2).float().div(255)
        x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
        out["x" + key], out["y" + key] = x.contiguous(), torch.tensor(labels[rows])
    return out


def requests(name: str, y: torch.Tensor) -> dict[str, np.ndarray]:
    """Forget rows per request kind, seeded by the model's name (each model its own rows)."""
    ids_class, whole = REQUESTS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    yy = y.numpy()
    return {
        "ids": np.sort(rng.choice(np.flatnonzero(yy == ids_class), IDS, replace=False)),
        "random_1pct": np.sort(rng.choice(len(yy), max(1, round(RANDOM * len(yy))), replace=False)),
        "class": np.flatnonzero(yy == whole),
    }


def trained(
    um: U.UserModel, data: dict[str, torch.Tensor], rows: np.ndarray, seed: int, path: Path
) -> tuple[torch.nn.Module, float]:
    """The model trained by its own loop on ``rows`` (cached as a state dict), and the seconds it took."""
    model = um.build(seed)
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval(), json.loads(meta.read_text())["seconds"]
    r = torch.as_tensor(rows)
    t0 = time.perf_counter()
    um.train(model, data["x"][r], data["y"][r], seed)
    dt = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    meta.write_text(json.dumps({"seconds": dt, "rows": int(len(rows)), "seed": seed}))
    return model.eval(), dt


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train_stage(names: list[str], root: Path, work: Path) -> None:
    for name in names:
        um = U.MODELS[name]
        data = load_data(um.data, root, seed=1 if name.startswith("dev_") else 0)
        n = len(data["y"])
        orig, dt = trained(um, data, np.arange(n), 0, work / name / "original.pt")
        print(
            f"{name}: original {dt:.0f} s, train {accuracy(orig, data['x'], data['y']):.3f} "
            f"test {accuracy(orig, data['xt'], data['yt']):.3f}",
            flush=True,
        )
        for kind, forget in requests(name, data["y"]).items():
            keep = np.setdiff1d(np.arange(n), forget)
            for s in (1, 2):
                ref, dt = trained(um, data, keep, s, work / name / kind / f"ref{s}.pt")
                print(
                    f"  {kind} ({len(forget)} rows) ref{s}: {dt:.0f} s, "
                    f"test {accuracy(ref, data['xt'], data['yt']):.3f}",
                    flush=True,
                )


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10")
    ap.add_argument("--models", nargs="+", default=[m.name for m in U.REPORT])
    ap.add_argument("--stage", choices=["train", "unlearn", "all"], default="all")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "deletion_models")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    unknown = [m for m in args.models if m not in U.MODELS]
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; choose from {sorted(U.MODELS)}")
    if args.stage in ("train", "all"):
        train_stage(args.models, args.data_root, args.work)
    if args.stage in ("unlearn", "all"):
        unlearn_stage(args.models, args.data_root, args.work, args.out)
    return 0


# each model's recipe as the user would describe it to obliviate (what the fine-tuning family's
# retain term reads: label smoothing; fit's settings if it retrained): optimiser, learning rate,
# epochs, batch (augmentation off: the tensors given are model-ready). Exact retraining itself runs
# the model's own loop (``train_fn=``), as a user who has one passes it.
RECIPES: dict[str, dict[str, Any]] = {
    "resnet18_sgd": {
        "optimizer": "sgd",
        "lr": 0.05,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "epochs": 10,
        "batch_size": 128,
    },
    "vit_adamw": {
        "optimizer": "adamw",
        "lr": 2e-3,
        "weight_decay": 0.05,
        "schedule": "onecycle",
        "warmup_frac": 0.1,
        "epochs": 20,
        "batch_size": 128,
    },
    "cnn_adam_ls": {
        "optimizer": "adamw",
        "lr": 2e-3,
        "weight_decay": 0.0,
        "schedule": "cosine",
        "epochs": 24,
        "batch_size": 64,
        "label_smoothing": 0.1,
    },
    "mlp_tabular": {
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "schedule": "constant",
        "epochs": 60,
        "batch_size": 32,
    },
    "dev_vgg_bn": {
        "optimizer": "sgd",
        "lr": 0.1,
        "schedule": "onecycle",
        "warmup_frac": 0.3,
        "epochs": 15,
        "batch_size": 128,
    },
    "dev_issue_cnn": {
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "schedule": "constant",
        "epochs": 5,
        "batch_size": 64,
    },
}
CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def unlearn_stage(names: list[str], root: Path, work: Path, out: Path) -> None:
    import obliviate

    rows: list[dict[str, Any]] = []
    prev = out / "results.json"
    if prev.is_file():  # keep the other models' rows when only some are rerun
        rows = [r for r in json.loads(prev.read_text())["rows"] if r["model"] not in names]
    for name in names:
        um = U.MODELS[name]
        data = load_data(um.data, root, seed=1 if name.startswith("dev_") else 0)
        x, y, xt, yt = data["x"], data["y"], data["xt"], data["yt"]
        n = len(y)
        orig, _train_s = trained(um, data, np.arange(n), 0, work / name / "original.pt")
        names_ = CIFAR if um.data == "cifar10" else tuple(str(i) for i in range(10))
        for kind, forget in requests(name, y).items():
            keep = np.setdiff1d(np.arange(n), forget)
            refs, ref_s = [], []
            for s in (1, 2):
                m, dt = trained(um, data, keep, s, work / name / kind / f"ref{s}.pt")
                refs.append(m)
                ref_s.append(dt)
            f, r = torch.as_tensor(forget), torch.as_tensor(keep)
            t0 = time.perf_counter()
            try:
                res = obliviate.unlearn(
                    orig,
                    forget=(x[f], y[f]),
                    retain=(x[r], y[r]),
                    heldout=(xt, yt),
                    model_factory=um.build,
                    train_fn=um.train,
                    train_config=RECIPES[name],
                    class_names=names_,
                    seed=0,
                )
            except obliviate.deletion.DeletionRefused as e:
                rows.append(
                    {
                        "model": name,
                        "request": kind,
                        "rows": int(len(forget)),
                        "outcome": "refused",
                        "verdict": str(e),
                        "attempts": e.evidence["attempts"],
                    }
                )
                print(f"{name:14s} {kind:12s} refused: {e}", flush=True)
                continue
            call_s = time.perf_counter() - t0
            ev = res.evidence
            a = obliviate.audit(
                res.model,
                forget=(x[f], y[f]),
                retain=(x[r], y[r]),
                heldout=(xt, yt),
                original=orig,
                references=refs,
                class_names=names_,
            )
            retrain_s = float(np.mean(ref_s))
            row = {
                "model": name,
                "request": kind,
                "rows": int(len(forget)),
                "outcome": ev["outcome"],
                "method": ev["method"]["name"],
                "config": {
                    k: ev["method"]["config"].get(k)
                    for k in ("lr", "beta", "alpha")
                    if ev["method"]["config"].get(k) is not None
                },
                "attempts": [
                    {
                        "method": t["method"],
                        "passed": t["passed"],
                        "failures": t["failures"],
                        "seconds": t["seconds"],
                        "steps": t["steps"],
                        "lr": t["config"].get("lr"),
                    }
                    for t in ev["attempts"]
                ],
                "utility": {
                    s_: {
                        "before": ev["before"][s_]["accuracy"],
                        "after": ev["after"][s_]["accuracy"],
                        "tolerance": ev["tolerance"][s_]["accuracy"],
                    }
                    for s_ in ("retain", "heldout")
                },
                "utility_violations": ev["utility_violations"],
                "gap": a["gap_points"],
                "gap_doing_nothing": a["original"]["gap_points"],
                "noise_floor": a["noise_floor_points"],
                "audit_power": ev["audit_power"],
                "population_audit": {
                    "original": ev["membership"]["original"].get("auc"),
                    "result": ev["membership"]["unlearned"].get("auc"),
                },
                "lira": {
                    "original": [a["original"]["per_example"]["auc"], *a["original"]["per_example"]["ci95"]],
                    "result": [a["per_example"]["auc"], *a["per_example"]["ci95"]],
                },
                "forget_acc": {
                    "original": ev["before"]["forget"]["accuracy"],
                    "result": ev["after"]["forget"]["accuracy"],
                    "references": [a["reference"]["forget"]["accuracy"]],
                },
                "classes": ev["classes"],
                "unlearning_seconds": ev["wall_seconds"],
                "call_seconds": call_s,
                "retrain_seconds": retrain_s,
                "speedup": retrain_s / max(ev["wall_seconds"], 1e-9),
                "verdict": ev["verdict"],
            }
            row["checks"] = {
                "utility_within_tolerance": not ev["utility_violations"],
                "not_farther_than_doing_nothing_beyond_floor": row["gap"]
                <= row["gap_doing_nothing"] + row["noise_floor"],
            }
            rows.append(row)
            print(
                f"{name:14s} {kind:12s} {ev['outcome']:15s} {ev['method']['name']:18s} gap {row['gap']:.2f} "
                f"(nothing {row['gap_doing_nothing']:.2f}, floor {row['noise_floor']:.2f}) "
                f"{ev['wall_seconds']:.1f}s vs {retrain_s:.0f}s  {row['checks']}",
                flush=True,
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"rows": rows, "threads": torch.get_num_threads(), "torch": torch.__version__}, indent=1)
    )
    (out / "results.md").write_text(render(rows))
    print(render(rows))


def render(rows: list[dict[str, Any]]) -> str:
    models = {m.name: m for m in U.REPORT + U.DEV}
    lines = [
        "| model | request | outcome | `auto` ended with (attempts) | retain / held-out acc change (tolerance), pts "
        "| gap to retrained / doing nothing / floor, pts | LiRA AUC original → result | unlearning s (retrain s, ×) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["outcome"] == "refused":
            lines.append(f"| {r['model']} | {r['request']} ({r['rows']}) | refused | – | – | – | – | – |")
            continue
        att = " → ".join(f"{t['method']}{'' if t['passed'] else ' ✗'}" for t in r["attempts"])
        u = r["utility"]
        util = " / ".join(
            f"{100 * (u[s]['after'] - u[s]['before']):+.2f} (±{100 * u[s]['tolerance']:.2f})"
            for s in ("retain", "heldout")
        )
        lira = f"{r['lira']['original'][0]:.3f} → {r['lira']['result'][0]:.3f}"
        lr = f", lr {r['config']['lr']:.3g}" if r["config"].get("lr") else ""
        lines.append(
            f"| {r['model']} | {r['request']} ({r['rows']}) | {r['outcome']} | {r['method']}{lr} ({att}) | {util} "
            f"| {r['gap']:.2f} / {r['gap_doing_nothing']:.2f} / {r['noise_floor']:.2f} | {lira} "
            f"| {r['unlearning_seconds']:.1f} ({r['retrain_seconds']:.0f}, {r['speedup']:.0f}×) |"
        )
    approx = [r for r in rows if r["outcome"] in ("verified", "not verifiable") and not r["model"].startswith("dev_")]
    counts = {
        o: sum(r["outcome"] == o for r in rows if not r["model"].startswith("dev_"))
        for o in ("verified", "not verifiable", "exact", "refused")
    }
    med = float(np.median([r["speedup"] for r in approx])) if approx else float("nan")
    rep = [r for r in rows if not r["model"].startswith("dev_") and r["outcome"] != "refused"]
    bad_u = [
        f"{r['model']}/{r['request']} ({r['outcome']})" for r in rep if not r["checks"]["utility_within_tolerance"]
    ]
    bad_g = [
        f"{r['model']}/{r['request']} ({r['outcome']})"
        for r in rep
        if not r["checks"]["not_farther_than_doing_nothing_beyond_floor"]
    ]
    lines += [
        "",
        f"Reported models: {counts['verified']} verified, {counts['not verifiable']} not verifiable, "
        f"{counts['exact']} exact (escalated to retraining), {counts['refused']} refused; median speed-up of "
        f"the approximate results {med:.0f}×. Utility past its tolerance: {', '.join(bad_u) or 'none'}. "
        f"Farther from retraining than doing nothing beyond the noise floor: {', '.join(bad_g) or 'none'}.",
        "",
    ]
    lines += [f"- `{n}`: {models[n].summary}" for n in dict.fromkeys(r["model"] for r in rows) if n in models]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
