"""bf16 autocast + channels_last vs fp32 training throughput on this CPU.

    .venv/bin/python bench/bf16/bench_bf16.py [--batch 256] [--steps 8] [--repeats 5] [--threads 2]
        [--models resnet18:1.0 resnet18:0.25 airbench:1.0]

For each ``model:width`` a bare forward + backward + SGD step loop on a fixed random batch runs
in both modes, alternating ``repeats`` times; the median images/s of each mode and the ratio
bf16/fp32 are printed. On CPUs with AVX512-BF16 (or AMX) oneDNN runs bf16 convolutions natively.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from obliviate.models import create_model


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def step_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool, steps: int) -> float:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9, nesterov=True)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * len(y) / (time.perf_counter() - t0)


def bench(name: str, width: float, batch: int, steps: int, repeats: int, seed: int) -> tuple[float, float]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    fp32 = create_model(name, num_classes=10, seed=seed, width=width)
    bf16 = create_model(name, num_classes=10, seed=seed, width=width).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    for m in (fp32, bf16):  # airbench's whitening filters come from data; any batch will do here
        hook = getattr(m, "obliviate_fit_start", None)
        if callable(hook):
            hook(x)
    step_rate(fp32, x, y, False, 2)  # warm-up: oneDNN primitive creation
    step_rate(bf16, x_cl, y, True, 2)
    a, b = [], []
    for _ in range(repeats):
        a.append(step_rate(fp32, x, y, False, steps))
        b.append(step_rate(bf16, x_cl, y, True, steps))
    return statistics.median(a), statistics.median(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet18:1.0", "resnet18:0.25", "airbench:1.0"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the figures as JSON to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    flags = cpu_flags()
    print(
        f"torch {torch.__version__}, {args.threads} threads, avx512_bf16={'avx512_bf16' in flags}, "
        f"amx_bf16={'amx_bf16' in flags}, load avg {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for spec in args.models:
        name, _, w = spec.partition(":")
        width = float(w or 1.0)
        f, b = bench(name, width, args.batch, args.steps, args.repeats, args.seed)
        print(
            f"{name:10s} width {width:<5} batch {args.batch}: fp32 {f:7.1f} img/s   "
            f"bf16+channels_last {b:7.1f} img/s   ratio bf16/fp32 {b / f:.2f}   "
            f"(load avg {os.getloadavg()[0]:.2f})",
            flush=True,
        )
        rows.append(
            {
                "model": name,
                "width": width,
                "batch": args.batch,
                "fp32_img_s": f,
                "bf16_channels_last_img_s": b,
                "ratio_bf16_over_fp32": b / f,
            }
        )
    if args.out:
        from obliviate.utils import write_json_atomic

        write_json_atomic(
            args.out,
            {
                "threads": args.threads,
                "steps": args.steps,
                "repeats": args.repeats,
                "avx512_bf16": "avx512_bf16" in flags,
                "torch": torch.__version__,
                "loadavg": os.getloadavg(),
                "models": rows,
            },
        )


if __name__ == "__main__":
    main()
