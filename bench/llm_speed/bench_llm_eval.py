"""One LLM evaluation on the real pretrained Llama (SmolLM2-135M-Instruct): bf16 autocast against
float32, and the prompt-once scorer against one forward pass per (statement, answer), side by side.

    .venv/bin/python bench/llm_speed/bench_llm_eval.py [--threads 2] [--repeats 2]

The evaluation is the LLM preset's quick scale (``src/obliviate/configs/llm_bias_lora.yaml``): the mislabelled
request on seed 0, 120 retain statements, every forget and held-out statement, 200 CrowS-Pairs and
the general text, on the pretrained model. Modes alternate ``repeats`` times; the median seconds of
each are printed with the agreement of bf16 with float32 (same judgements, perplexity ratio,
CrowS-Pairs, MIA AUCs). Writes ``bench/llm_speed/results/llm_eval.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from obliviate.attacks.roc import auc

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent  # this question's folder: its configs, results/ and README


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    import torch
    import yaml

    from obliviate.data.text_requests import split_statements
    from obliviate.metrics import lm_scoring as M
    from obliviate.study.spec import resolve_scale
    from obliviate.study.tasks.llm import LMModels, task_encoder, tokenizer_corpus, validate_llm_spec

    torch.set_num_threads(args.threads)
    preset = ROOT / "src" / "obliviate" / "configs" / "llm_bias_lora.yaml"
    plan = validate_llm_spec(resolve_scale(yaml.safe_load(preset.read_text()), "quick"))
    models = LMModels(
        plan.model,
        plan.device,
        Path.home() / ".cache" / "obliviate" / "llm",
        print,
        corpus=lambda: tokenizer_corpus(plan),
        corpus_key=plan.dataset.fingerprint(),
    )
    enc, model = task_encoder(plan, models.tokenizer()), models.pretrained()
    split = split_statements(plan.dataset, plan.requests[0], 0, plan.data.validation_fraction)
    ds = plan.dataset.with_labels(split.noise)
    retain = np.sort(np.random.default_rng([0, 17]).permutation(np.asarray(split.retain))[: plan.eval.retain_max])
    general = M.load_general_text()

    def full(bf16: bool) -> M.ModelEval:
        return M.evaluate_model(
            model,
            enc,
            ds,
            split,
            batch_size=plan.eval.batch_size,
            groups=plan.metrics.groups,
            retain_rows=retain,
            crows_pairs=plan.crows,
            general_text=general,
            bf16=bf16,
        )

    def per_example_scoring() -> None:  # the judgement scores as one forward pass per (statement, answer)
        answers = list(ds.answers.values())
        for rows in (split.forget, retain, split.validation):
            ex = [enc.example(ds.records[i].text, a, "all") for i in rows for a in answers]
            M.token_logprobs(model, enc, ex, batch_size=plan.eval.batch_size, bf16=True)

    def prompt_once_scoring() -> None:
        for rows in (split.forget, retain, split.validation):
            M.sequence_logprobs(
                model,
                enc,
                [ds.records[i].text for i in rows],
                list(ds.answers.values()),
                batch_size=plan.eval.batch_size,
                bf16=True,
            )

    modes = {
        "eval_fp32": lambda: full(False),
        "eval_bf16": lambda: full(True),
        "scoring_per_example_bf16": per_example_scoring,
        "scoring_prompt_once_bf16": prompt_once_scoring,
    }
    times: dict[str, list[float]] = {k: [] for k in modes}
    evs: dict[str, object] = {}
    for _ in range(args.repeats):
        for name, fn in modes.items():
            t = time.perf_counter()
            evs[name] = fn()
            times[name].append(time.perf_counter() - t)
    a, b = evs["eval_bf16"], evs["eval_fp32"]
    assert isinstance(a, M.ModelEval) and isinstance(b, M.ModelEval)
    n = sum(len(a.preds(s)) for s in a.scores)
    agree = sum(int((a.preds(s) == b.preds(s)).sum()) for s in a.scores)
    out = {
        "model": plan.model.name,
        "threads": args.threads,
        "repeats": args.repeats,
        "statements_scored": n,
        "median_seconds": {k: statistics.median(v) for k, v in times.items()},
        "bf16_vs_fp32": {
            "same_judgements": f"{agree}/{n}",
            "heldout_ppl": [a.heldout_ppl, b.heldout_ppl],
            "general_ppl": [a.general_ppl, b.general_ppl],
            "crows_pairs": [a.crows, b.crows],
            "mia_auc": {
                k: [
                    auc(a.mia[k]["forget"], a.mia[k]["validation"]),
                    auc(b.mia[k]["forget"], b.mia[k]["validation"]),
                ]
                for k in a.mia
            },
        },
    }
    med = out["median_seconds"]
    out["ratios"] = {
        "fp32_over_bf16": med["eval_fp32"] / med["eval_bf16"],
        "per_example_over_prompt_once": med["scoring_per_example_bf16"] / med["scoring_prompt_once_bf16"],
    }
    print(json.dumps(out, indent=1))
    (HERE / "results" / "llm_eval.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
