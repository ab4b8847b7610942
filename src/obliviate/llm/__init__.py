"""The LLM half of obliviate: make a causal language model unlearn a judgement it learned.

Paper §III.B / §V.A: a Llama model, instruction-tuned to answer "Is this statement biased?" with
"biased" / "not biased" for clinical statements, is made to stop calling chosen statements
biased. Here that is one forget request (:class:`LabelFlip`) among others, six registered methods
(``relabel`` — the paper's —, ``grad_ascent``, ``grad_diff``, ``npo``, ``simnpo``, ``rmu``; all
``kind = "llm"``, LoRA or full-parameter), metrics (:mod:`obliviate.llm.metrics`). Studies run through the one
study runner (``task: llm``; :mod:`obliviate.study.tasks.llm`).

transformers / peft / tokenizers are imported lazily inside functions: importing this package
(or :mod:`obliviate.methods`) never needs them. This package imports only ``core`` and
``utils`` from obliviate: the method files in :mod:`obliviate.methods` build on it, never the
other way round.
"""

from .data import (
    CrowsPair,
    TextDataError,
    TextDataset,
    TextRecord,
    load_clinical_bias,
    load_crows_pairs,
    load_text_dataset,
)
from .encode import TEMPLATE_NAMES, TaskEncoder, TextBatchLoader
from .metrics import (
    LLM_METRICS,
    METRIC_GROUPS,
    ModelEval,
    evaluate_model,
    generate_answer,
)
from .models import (
    TINY,
    LoraSettings,
    TinyLlamaSpec,
    attach_lora,
    build_tiny_llama,
    load_pretrained,
)
from .report import render_llm_section
from .requests import (
    LabelFlip,
    LabelNoise,
    LLMRequest,
    LLMRequestError,
    StatementForget,
    StatementSplit,
    parse_llm_request,
    split_statements,
)
from .sources import SOURCES, ModelSourceError, resolve_model
from .train import TaskTrainConfig, optimise, train_task_model
from .unlearn import LLMMethodConfig, LLMUnlearnContext, LLMUnlearnData, Reference, run_unlearning

__all__ = [
    "LLM_METRICS",
    "METRIC_GROUPS",
    "SOURCES",
    "TEMPLATE_NAMES",
    "TINY",
    "CrowsPair",
    "LLMMethodConfig",
    "LLMRequest",
    "LLMRequestError",
    "LLMUnlearnContext",
    "LLMUnlearnData",
    "LabelFlip",
    "LabelNoise",
    "LoraSettings",
    "ModelEval",
    "ModelSourceError",
    "Reference",
    "StatementForget",
    "StatementSplit",
    "TaskEncoder",
    "TaskTrainConfig",
    "TextBatchLoader",
    "TextDataError",
    "TextDataset",
    "TextRecord",
    "TinyLlamaSpec",
    "attach_lora",
    "build_tiny_llama",
    "evaluate_model",
    "generate_answer",
    "load_clinical_bias",
    "load_crows_pairs",
    "load_pretrained",
    "load_text_dataset",
    "optimise",
    "parse_llm_request",
    "render_llm_section",
    "resolve_model",
    "run_unlearning",
    "split_statements",
    "train_task_model",
]
