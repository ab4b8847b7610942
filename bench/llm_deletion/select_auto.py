"""Choose what ``method="auto"`` runs on a language model, on one request split, before judging it
on the others.

Each candidate is one (method, learning rate, config) run under auto's calibrated stop and guard,
exactly as ``obliviate.unlearn(..., method="auto")`` runs its attempts, on the SmolLM2 setup of
``bench_llm_deletion.py`` (tuned once, cached). Only the tuning seed's split is read here
(default: seed 1); ``bench_llm_deletion.py`` then runs the chosen recipe on every seed.

Writes ``results/select_seed{S}.json`` (every candidate run so far, kept across invocations) and
``results/select_seed{S}.md`` (its table), and prints one line per candidate.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bench_llm_deletion import ROOT, tuned_setup

HERE = Path(__file__).resolve().parent

CANDIDATES: dict[str, tuple[str, float, dict, bool]] = {  # method, learning rate, config, keep the anchor text
    "npo-anchor-1e-4": ("npo", 1e-4, {}, True),
    "npo-anchor-rw5-1e-4": ("npo", 1e-4, {"retain_weight": 5.0}, True),
    "simnpo-anchor-1e-4": ("simnpo", 1e-4, {}, True),
    "simnpo-anchor-3e-4": ("simnpo", 3e-4, {}, True),
    "simnpo-anchor-rw2-3e-4": ("simnpo", 3e-4, {"retain_weight": 2.0}, True),
    "npo-1e-4": ("npo", 1e-4, {}, False),
    "simnpo-rw2-3e-4": ("simnpo", 3e-4, {"retain_weight": 2.0}, False),
}


def table(done: dict, seed: int) -> str:
    """The candidates run so far, one row each, in the order they appear in :data:`CANDIDATES`."""
    lines = [
        f"# auto's recipe on a language model: candidates on the tuning split (request seed {seed})",
        "",
        "Each row is one attempt of `auto` (calibrated stop, guard) on SmolLM2-135M-Instruct tuned on 16",
        "invented entities, forgetting 2 of them; `python bench/llm_deletion/select_auto.py`. The guard:",
        "retain answer probability at most 0.05 lower, general-text perplexity (guard half) at most 10 % higher.",
        "",
        "| candidate | method | lr | config | general anchor rows | steps | forget loss | audited held-out loss "
        "| loss AUC | retain prob. | general ppl | forgotten | utility kept | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in [n for n in CANDIDATES if n in done] + [n for n in done if n not in CANDIDATES]:
        r = done[name]
        a, b = r["attempt"], r["before"]
        af = a["after"]
        lines.append(
            f"| {name} | {r['method']} | {r['lr']:g} | {json.dumps(r['config']) if r['config'] else '-'} "
            f"| {a['general_anchor_rows'] or 'no'} | {a['steps']} | {b['forget_loss']:.3f} → "
            f"{af['forget_loss']:.3f} | {b['heldout_loss']:.3f} → {af['heldout_loss']:.3f} | "
            f"{b['mia_loss_auc']:.3f} → {af['mia_loss_auc']:.3f} | {b['retain_prob']:.3f} → {af['retain_prob']:.3f} "
            f"| {b['general_ppl']:.1f} → {af['general_ppl']:.1f} | {'yes' if a['forgotten'] else 'no'} "
            f"| {'yes' if a['utility_kept'] else 'no'} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "llm_deletion")
    ap.add_argument("--epochs", type=int, default=8, help="LoRA tuning epochs (as bench_llm_deletion.py)")
    ap.add_argument("--seed", type=int, default=1, help="the tuning split's request seed")
    ap.add_argument("--only", nargs="*", default=None, help="candidate names to run (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--table-only", action="store_true", help="rewrite the table from the JSON; run nothing")
    args = ap.parse_args()
    out_path = HERE / "results" / f"select_seed{args.seed}.json"
    if args.table_only:
        out_path.with_suffix(".md").write_text(table(json.loads(out_path.read_text()), args.seed))
        return
    torch.set_num_threads(args.threads)

    import obliviate
    from obliviate.deletion import DeletionRefused, lm_requests

    setup = tuned_setup(args.work, args.epochs, [0, 1, 2])
    split = setup.splits[args.seed]
    f_rows = [setup.rows[i] for i in split.forget]
    r_rows = [setup.rows[i] for i in split.retain]
    done = json.loads(out_path.read_text()) if out_path.is_file() else {}
    for name, (method, lr, cfg, anchor) in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        # one attempt of auto's loop, exactly this candidate: its method, one rate, its config alone
        lm_requests.AUTO_METHOD, lm_requests.AUTO_LRS, lm_requests.AUTO_ANCHOR = method, (lr,), anchor
        lm_requests.AUTO_CONFIG = {}
        t0 = time.perf_counter()
        try:
            ev = obliviate.unlearn(
                setup.model,
                tokenizer=setup.tokenizer,
                forget=f_rows,
                retain=r_rows,
                heldout=setup.heldout,
                method="auto",
                config=cfg or None,
                seed=args.seed,
            ).evidence
        except DeletionRefused as e:
            ev = e.evidence
        a, b = ev["attempts"][-1], ev["before"]
        if "diverged" in a:
            print(f"{name}: diverged ({a['diverged']})", flush=True)
            continue
        af = a["after"]
        done[name] = {
            "method": method,
            "lr": lr,
            "config": cfg,
            "seconds": time.perf_counter() - t0,
            "attempt": a,
            "before": b,
        }
        print(
            f"{name}: {a['steps']} steps{' (stopped)' if a['stopped_early'] else ''} {a['seconds']:.0f} s | forget "
            f"{b['forget_loss']:.3f}->{af['forget_loss']:.3f} held-out "
            f"{b['heldout_loss']:.3f}->{af['heldout_loss']:.3f} AUC {af['mia_loss_auc']:.3f} | retain prob "
            f"{b['retain_prob']:.3f}->{af['retain_prob']:.3f} ppl "
            f"{b['general_ppl']:.1f}->{af['general_ppl']:.1f} | forgotten={a['forgotten']} kept={a['utility_kept']}",
            flush=True,
        )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(done, indent=1, default=float))
        out_path.with_suffix(".md").write_text(table(done, args.seed))


if __name__ == "__main__":
    main()
