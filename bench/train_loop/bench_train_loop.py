"""Does the training loop keep the CPU on the model? ``fit`` vs a bare loop, images/s.

    .venv/bin/python bench/train_loop/bench_train_loop.py [--model resnet9] [--width 0.25] [--batch 512]
        [--steps 60] [--repeats 5] [--bf16] [--threads 2]

*fit*: one epoch of :func:`obliviate.training.fit` (loader with crop + flip augmentation, the lr
schedule, loss bookkeeping) over ``steps × batch`` uint8 images. *bare*: the same model, batch size,
optimizer and loss as a plain forward + backward + step loop over pre-made normalised float batches.
The two alternate ``repeats`` times (so load changes hit both alike); the medians and their ratio
fit/bare are printed. The target is a ratio ≥ 0.90.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from obliviate.data import ImageDataset
from obliviate.models import create_model
from obliviate.training import TrainConfig, fit, make_loader, make_optimizer
from obliviate.utils import autocast_context, write_json_atomic


def synthetic_cifar(n: int, seed: int) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    return ImageDataset(
        name="synthetic32",
        class_names=tuple(str(i) for i in range(10)),
        train_images=torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
        train_labels=torch.randint(0, 10, (n,), generator=g),
        test_images=torch.zeros(1, 3, 32, 32, dtype=torch.uint8),
        test_labels=torch.zeros(1, dtype=torch.long),
        mean=(0.49, 0.48, 0.45),
        std=(0.25, 0.24, 0.26),
    )


def fit_rate(model: nn.Module, data: ImageDataset, cfg: TrainConfig, seed: int) -> float:
    loader = make_loader(data, torch.arange(len(data.train_labels)), cfg, seed=seed)
    res = fit(model, loader, cfg, device=torch.device("cpu"))
    return res.images_per_second


def bare_rate(
    model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], cfg: TrainConfig, steps: int
) -> float:
    device = torch.device("cpu")
    model.train()
    opt = make_optimizer(model, cfg)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    n = 0
    t0 = time.perf_counter()
    for i in range(steps):
        x, y = batches[i % len(batches)]
        with autocast_context(device, cfg.bf16):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(y)
    seconds = time.perf_counter() - t0
    model.eval()
    return n / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet9")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps per timed run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--crop-pad", type=int, default=4)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast + channels_last in both loops")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the figures as JSON to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        epochs=1.0,
        batch_size=args.batch,
        lr=0.05,
        schedule="onecycle",
        label_smoothing=0.1,
        crop_pad=args.crop_pad,
        flip=True,
        bf16=args.bf16,
        channels_last=args.bf16,
    )
    data = synthetic_cifar(args.steps * args.batch, args.seed)
    model = create_model(args.model, num_classes=10, seed=args.seed, width=args.width)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # pre-made batches for the bare loop: already normalised float tensors (a few, cycled)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    batches = []
    for i in range(4):
        x = (data.train_images[i * args.batch : (i + 1) * args.batch].float() / 255 - mean) / std
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        batches.append((x, data.train_labels[i * args.batch : (i + 1) * args.batch]))
    hook = getattr(model, "obliviate_fit_start", None)
    if callable(hook):  # airbench: set the whitening filters now so that both loops see the same net
        hook(batches[0][0])
    # warm-up (oneDNN primitive creation, allocator) for both paths
    bare_rate(model, batches, cfg, 3)
    fit_rate(model, synthetic_cifar(3 * args.batch, args.seed + 1), cfg, args.seed)
    fits, bares = [], []
    for r in range(args.repeats):
        fits.append(fit_rate(model, data, cfg, args.seed + r))
        bares.append(bare_rate(model, batches, cfg, args.steps))
        print(f"repeat {r}: fit {fits[-1]:8.0f} img/s   bare {bares[-1]:8.0f} img/s", flush=True)
    f, b = statistics.median(fits), statistics.median(bares)
    print(
        f"{args.model} width {args.width} batch {args.batch} steps {args.steps} bf16={args.bf16} "
        f"threads {args.threads}  load avg {os.getloadavg()[0]:.2f}"
    )
    print(f"median fit {f:.0f} img/s   median bare {b:.0f} img/s   ratio fit/bare {f / b:.3f}")
    if args.out:
        write_json_atomic(
            args.out,
            {
                "model": args.model,
                "width": args.width,
                "batch": args.batch,
                "steps": args.steps,
                "bf16_channels_last": args.bf16,
                "threads": args.threads,
                "repeats": args.repeats,
                "fit_img_s": fits,
                "bare_img_s": bares,
                "median_fit_img_s": f,
                "median_bare_img_s": b,
                "ratio_fit_over_bare": f / b,
                "loadavg": os.getloadavg(),
                "torch": torch.__version__,
            },
        )


if __name__ == "__main__":
    main()
