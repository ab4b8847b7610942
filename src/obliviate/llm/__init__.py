"""The LLM half of obliviate: make a causal language model unlearn a judgement it learned.

Paper §III.B / §V.A: a Llama model, instruction-tuned to answer "Is this statement biased?" with
"biased" / "not biased" for clinical statements, is made to stop calling chosen statements
biased. Here that is one forget request (:class:`LabelFlip`) among others, six registered methods
(``relabel`` — the paper's —, ``grad_ascent``, ``grad_diff``, ``npo``, ``simnpo``, ``rmu``; all
``kind = "llm"``, LoRA or full-parameter), metrics (:mod:`obliviate.llm.metrics`) and a study
entry point (:func:`obliviate.llm.study.run_llm_study`).

transformers / peft / tokenizers are imported lazily inside functions: importing this package
(or :mod:`obliviate.methods`) never needs them.
"""

# Import the method registry first: the LLM method files import obliviate.llm.unlearn, and
# going through obliviate.methods here keeps that cycle in one order whichever is imported first.
from .. import methods as _methods  # noqa: F401
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
    compute_llm_metrics,
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
    LLMRequest,
    LLMRequestError,
    StatementForget,
    StatementSplit,
    parse_llm_request,
    split_statements,
)
from .study import LLMSpecError, LLMStudyPlan, apply_scale, run_llm_study, validate_llm_spec
from .train import TaskTrainConfig, optimise, train_task_model
from .unlearn import LLMMethodConfig, LLMUnlearnContext, LLMUnlearnData, Reference, run_unlearning

__all__ = [
    "LLM_METRICS",
    "METRIC_GROUPS",
    "TEMPLATE_NAMES",
    "TINY",
    "CrowsPair",
    "LLMMethodConfig",
    "LLMRequest",
    "LLMRequestError",
    "LLMSpecError",
    "LLMStudyPlan",
    "LLMUnlearnContext",
    "LLMUnlearnData",
    "LabelFlip",
    "LoraSettings",
    "ModelEval",
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
    "apply_scale",
    "attach_lora",
    "build_tiny_llama",
    "compute_llm_metrics",
    "evaluate_model",
    "generate_answer",
    "load_clinical_bias",
    "load_crows_pairs",
    "load_pretrained",
    "load_text_dataset",
    "optimise",
    "parse_llm_request",
    "render_llm_section",
    "run_llm_study",
    "run_unlearning",
    "split_statements",
    "train_task_model",
    "validate_llm_spec",
]
