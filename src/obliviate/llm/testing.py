"""A tiny, fast LLM unlearning problem for tests and examples (it ships with the package).

The bundled clinical-bias statements, a byte-level BPE trained on them, a 2-layer Llama
(hidden 64) instruction-tuned for a few seconds on the judgement task, and a label-flip request
(the paper's case: 12 "biased" statements must now be answered "not biased").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .data import TextDataset, load_clinical_bias
from .encode import TaskEncoder
from .models import TinyLlamaSpec, build_tiny_llama
from .requests import LabelFlip, LLMRequest, StatementSplit, split_statements
from .train import TaskTrainConfig, train_task_model
from .unlearn import LLMUnlearnContext, LLMUnlearnData

TINY_TASK_TRAIN = TaskTrainConfig(epochs=3.0, lr=5e-3, batch_size=16, loss_on="all")


@dataclass
class TinyLLMProblem:
    dataset: TextDataset
    split: StatementSplit
    encoder: TaskEncoder
    model: nn.Module

    def data(self, uses: frozenset[str]) -> LLMUnlearnData:
        return LLMUnlearnData(self.dataset, self.split, self.encoder, uses)

    def context(self, seed: int = 0) -> LLMUnlearnContext:
        return LLMUnlearnContext(device=torch.device("cpu"), seed=seed)


def tiny_tokenizer(dataset: TextDataset, template: str = "short", vocab_size: int = 1024) -> Any:
    """A BPE trained on the dataset's prompts and answers (as :mod:`obliviate.study.tasks.llm` does)."""
    from .encode import TEMPLATES
    from .tokenizer import build_bpe_tokenizer

    tmpl = TEMPLATES[template]
    corpus = [tmpl.format(instruction=dataset.instruction, text=r.text) + " " + dataset.answers[r.label]
              for r in dataset.records]
    return build_bpe_tokenizer(corpus, vocab_size=vocab_size)


@functools.lru_cache(maxsize=2)
def tiny_llm_problem(request: LLMRequest | None = None, seed: int = 0) -> TinyLLMProblem:
    """Cached per process (tests share it; methods get deep copies through ``run_method``)."""
    ds = load_clinical_bias()
    req = request or LabelFlip(to="not biased", from_label="biased", count=12)
    split = split_statements(ds, req, seed, validation_fraction=0.2)
    tok = tiny_tokenizer(ds)
    enc = TaskEncoder(tok, ds.instruction, ds.answers, template="short", max_length=64)
    model = build_tiny_llama(TinyLlamaSpec(), tok, seed)
    rows = split.train.tolist()
    model, _ = train_task_model(model, enc, [ds.records[i].text for i in rows],
                                [ds.answers[ds.records[i].label] for i in rows], rows, TINY_TASK_TRAIN, seed=seed)
    return TinyLLMProblem(ds, split, enc, model)
