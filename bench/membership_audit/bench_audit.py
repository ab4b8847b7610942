"""Does the membership audit have power? The real CIFAR-10, a model that memorises, 300 ids.

    .venv/bin/python bench/membership_audit/bench_audit.py [--data-root ../shared/data/cifar10]
        [--work bench/work/audit] [--out bench/membership_audit/results] [--threads 2]
        [--config bench/membership_audit/audit_cifar10.yaml] [--cache DIR] [--name NAME]

Runs ``bench/membership_audit/audit_cifar10.yaml`` through the study runner (models cached in
``--work``, or ``--cache``; a rerun recomputes nothing whose key is unchanged): an airbench net
memorising 5,000 CIFAR-10 images, a deletion request of 300 ids, every sample-level method, and K = 4
reference models per seed retrained without the request. ``--config`` audits another study with
``audit.references`` set (``bench/membership_audit/frontier_audit.yaml``: the frontier's frog ids at
full scale, ``--cache`` the frontier's model cache so that its originals and retrained models are
reused).
Prints one table — the original's train/test gap, then per method the forget / test accuracy and
Avg. gap, offline LiRA AUC and TPR at 1 % / 0.1 % FPR with 95 % bootstrap
intervals per seed, RMIA AUC, the per-example ε over the two seeds, the loss-threshold AUC, the
verdict, the unlearning and audit wall time — and the reference models' cost; writes
``OUT/NAME.{md,json}`` (default ``bench/membership_audit/results/``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent  # this question's folder: its configs, results/ and README


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "audit")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--config",
        type=Path,
        default=HERE / "audit_cifar10.yaml",
        help="a study with audit.references >= 2",
    )
    ap.add_argument("--cache", type=Path, default=None, help="model cache (default WORK/cache)")
    ap.add_argument("--name", default=None, help="stem of the written OUT/NAME.{md,json} (default: the study file's)")
    args = ap.parse_args()
    if not (args.data_root / "train.npz").is_file():
        sys.exit(f"CIFAR-10 arrays not found at {args.data_root} (train.npz / test.npz)")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")  # the runner's stages
    import yaml

    from obliviate.attacks.per_example import epsilon_cap
    from obliviate.report.audit import epsilon_rows, method_verdict
    from obliviate.study import StudyRunner, parse_study
    from obliviate.study.store import ResultStore

    cfg_path = args.config.resolve()
    args.name = args.name or cfg_path.stem
    raw = yaml.safe_load(cfg_path.read_text())
    raw["dataset"]["root"] = str(args.data_root.resolve())
    spec = parse_study(raw, base_dir=cfg_path.parent)
    study_dir = args.work / "study"
    t0 = time.perf_counter()
    if spec.audit.references < 2:
        sys.exit(f"{cfg_path} sets no per-example audit (audit.references must be >= 2)")
    StudyRunner(spec, study_dir, cache_dir=args.cache or args.work / "cache").run()
    wall = time.perf_counter() - t0
    store = ResultStore(study_dir)
    runs = [r for r in store.runs() if r.get("status") == "ok"]
    groups = store.groups()
    gmap = {g["key"]: g for g in groups}
    k = spec.audit.references
    order = [m.label for m in spec.methods]
    orig = [r["values"] for r in runs if r["method"] == "original"]
    gap = {
        "train_acc": float(np.mean([v["acc/retain"] for v in orig])),
        "test_acc": float(np.mean([v["acc/test"] for v in orig])),
    }

    def ci(v: dict[str, float], key: str) -> str:
        return f"{v[key]:.3f} [{v[key + '_lo']:.3f}, {v[key + '_hi']:.3f}]"

    md = [
        f"# Membership audit on CIFAR-10 (bench/membership_audit/bench_audit.py, study `{spec.name}`)",
        "",
        f"Study `{cfg_path.relative_to(ROOT) if cfg_path.is_relative_to(ROOT) else cfg_path}`: {spec.scale_note}",
        "",
        f"The original model: train accuracy {100 * gap['train_acc']:.1f} %, test {100 * gap['test_acc']:.1f} % "
        f"(gap {100 * (gap['train_acc'] - gap['test_acc']):.1f} points; mean over seeds {spec.seeds} and requests).",
        "",
    ]
    out: dict[str, object] = {"original_gap": gap, "k": k, "requests": {}}
    for request in dict.fromkeys(r["request"] for r in runs):
        rr = [r for r in runs if r["request"] == request]
        gs = sorted((g for g in groups if g["request"] == request), key=lambda g: g["seed"])
        eps = epsilon_rows(rr, gmap)
        refs = [
            {
                "seed": g["seed"],
                "reference_seconds": g["audit"]["reference_seconds"],
                "retrained_seconds": g["retrained"]["seconds"],
                "audit_inputs_seconds": g["audit"]["audit_inputs_seconds"],
                "reference_phi_forget_mean": (
                    float(np.mean(g["audit"]["reference_phi_forget"]))
                    if g["audit"].get("reference_phi_forget")
                    else None
                ),
                "timing_sources": sorted({m["timing_source"] for m in g["audit"]["references_models"]}),
            }
            for g in gs
        ]
        is_class = bool(gs[0].get("forget_classes"))
        rows, table = [], []
        for m in order:
            rs = sorted((r for r in rr if r["method"] == m), key=lambda r: r["seed"])
            if not rs:
                continue
            vs = [r["values"] for r in rs]
            e = eps.get(m)
            row = {
                "method": m,
                "seeds": [r["seed"] for r in rs],
                "forget_acc": float(np.mean([v["acc/forget"] for v in vs])),
                "test_acc": float(np.mean([v["acc/test"] for v in vs])),
                "lira": [
                    {
                        x: v[f"lira/{x}"]
                        for x in (
                            "auc",
                            "auc_lo",
                            "auc_hi",
                            "tpr_at_1pct",
                            "tpr_at_1pct_lo",
                            "tpr_at_1pct_hi",
                            "tpr_at_0p1pct",
                        )
                    }
                    for v in vs
                ],
                "rmia_auc": [v["rmia/auc"] for v in vs],
                "loss_auc": [[v["mia_loss/auc"], v["mia_loss/auc_lo"], v["mia_loss/auc_hi"]] for v in vs],
                "probe_forget_acc": [v.get("probe/test_forget_acc") for v in vs],
                "probe_forget_acc_retrained": [v.get("probe/test_forget_acc@retrained") for v in vs],
                "epsilon_mean_median": None if e is None else [e[0], e[1]],
                "epsilon_cap": None if e is None else e[4],
                "verdict": method_verdict(rs, k),
                "unlearn_seconds": [r["seconds"] for r in rs],
                "audit_seconds": [r["audit"]["seconds"] for r in rs],
                "phi_forget_mean": [
                    float(np.mean(r["audit"]["phi_forget"])) if r.get("audit", {}).get("phi_forget") else None
                    for r in rs
                ],
                "gap_avg": [v.get("gap/avg") for v in vs],
                "gap_salun_avg": [v.get("gap_salun/avg") for v in vs],
            }
            rows.append(row)
            probe = (
                "; ".join(f"{100 * v['probe/test_forget_acc']:.1f}" for v in vs)
                if is_class and all("probe/test_forget_acc" in v for v in vs)
                else None
            )
            gaps = [g for g in row["gap_avg"] if g is not None]
            table.append(
                [
                    m,
                    f"{100 * row['forget_acc']:.1f}",
                    f"{100 * row['test_acc']:.1f}",
                    "; ".join(f"{g:.2f}" for g in gaps) if gaps else "–",
                    "; ".join(ci(v, "lira/auc") for v in vs),
                    "; ".join(ci(v, "lira/tpr_at_1pct") for v in vs),
                    "; ".join(f"{v['lira/tpr_at_0p1pct']:.3f}" for v in vs),
                    "; ".join(f"{v['rmia/auc']:.3f}" for v in vs),
                    "–" if e is None else f"{e[0]:.2f} / {e[1]:.2f}",
                    "; ".join("–" if x is None else f"{x:.2f}" for x in row["phi_forget_mean"]),
                    "; ".join(ci(v, "mia_loss/auc") for v in vs),
                ]
                + ([probe or "–"] if is_class else [])
                + [
                    "; ".join(f"{r['seconds']:.1f}" for r in rs),
                    "; ".join(f"{r['audit']['seconds']:.2f}" for r in rs),
                    row["verdict"].split(" (offline")[0],
                ]
            )
        header = (
            [
                "method",
                "forget acc %",
                "test acc %",
                "Avg. gap (pts) per seed",
                f"LiRA AUC [95 % CI] per seed (K = {k})",
                "TPR @1 % FPR [CI]",
                "TPR @0.1 % FPR",
                "RMIA AUC",
                "ε mean / median",
                "forget rows' mean φ per seed",
                "loss-MIA AUC [CI]",
            ]
            + (["probe: forgotten-class test acc %"] if is_class else [])
            + ["unlearn s", "audit s", "verdict"]
        )
        a0 = gs[0]["audit"]
        md += [
            f"## Request: {request}",
            "",
            f"Attacker: offline, K = {k} reference models per seed retrained on the retain set with other seeds; "
            f"queries {', '.join(a0['queries'])}; {a0['forget_rows']} forget rows against {a0['heldout_rows']} test "
            "rows in the request's class proportions. "
            + (
                "ε: per-example, NeurIPS 2023 challenge form (δ = 0.05), U = the "
                f"method's {len(spec.seeds)} models (seeds) against R = {len(spec.seeds) * k} reference models; "
                "with so "
                f"few models it cannot exceed {epsilon_cap(len(spec.seeds), len(spec.seeds) * k):.2f} (a value at that "
                "cap means 'as separable as these models can show'); read it against the retrain row."
                if eps
                else "ε: not computed (it needs a method's models of two or more seeds on one forget set)."
            )
            + (
                " Probe: a linear head on frozen penultimate features of 500 training images "
                "per class, scored on the 1,000 airplane test images."
                if is_class
                else ""
            ),
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        md += ["| " + " | ".join(r) + " |" for r in table]
        md += [
            "",
            "Reference models (per seed): "
            + "; ".join(
                f"seed {r['seed']}: K = {k} references {r['reference_seconds']:.0f} s of training "
                f"({', '.join(r['timing_sources'])}; their forget rows' mean φ "
                + ("–" if r["reference_phi_forget_mean"] is None else f"{r['reference_phi_forget_mean']:.2f}")
                + f"), one retraining {r['retrained_seconds']:.0f} s, φ of the references and "
                f"the two fixed models {r['audit_inputs_seconds']:.1f} s"
                for r in refs
            ),
            "",
        ]
        out["requests"][request] = {"references": refs, "rows": rows}  # type: ignore[index]
    md += [f"Whole study command: {wall:.0f} s in this invocation (cached models are not retrained)."]
    out["wall_seconds"] = wall
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text("\n".join(md) + "\n")
    (args.out / f"{args.name}.json").write_text(json.dumps(out, indent=1) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
