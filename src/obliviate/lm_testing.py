"""A tiny, fast LLM unlearning problem for tests and examples (it ships with the package).

The bundled clinical-bias statements, a byte-level BPE trained on them, a 2-layer Llama
(hidden 64) instruction-tuned for a few seconds on the judgement task, and a label-flip request
(the paper's case: 12 "biased" statements must now be answered "not biased").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data.prompts import TaskEncoder
from .data.text import TextDataset, load_clinical_bias
from .data.text_requests import LabelFlip, LLMRequest, StatementSplit, split_statements
from .lm_training import TaskTrainConfig, train_task_model
from .methods.lm_base import LLMUnlearnContext, LLMUnlearnData
from .models.causal_lm import TinyLlamaSpec, build_tiny_llama

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
    from .data.prompts import TEMPLATES
    from .models.tokenizer import build_bpe_tokenizer

    tmpl = TEMPLATES[template]
    corpus = [
        tmpl.format(instruction=dataset.instruction, text=r.text) + " " + dataset.answers[r.label]
        for r in dataset.records
    ]
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
    model, _ = train_task_model(
        model,
        enc,
        [ds.records[i].text for i in rows],
        [ds.answers[ds.records[i].label] for i in rows],
        rows,
        TINY_TASK_TRAIN,
        seed=seed,
    )
    return TinyLLMProblem(ds, split, enc, model)


def write_tiny_llama_gguf(path: str | Path, seed: int = 0) -> tuple[nn.Module, Any]:
    """Write a tiny ``LlamaForCausalLM`` and its byte-level BPE as a float32 GGUF file at ``path``
    (llama.cpp's tensor names, its rotary permutation of q/k, the ``gpt2`` tokenizer keys) and
    return ``(model, tokenizer)``: a stand-in for a real GGUF model that a test can write itself."""
    import json

    import gguf
    import numpy as np

    from .models.tokenizer import build_bpe_tokenizer

    texts = [r.text for r in load_clinical_bias().records]
    tok = build_bpe_tokenizer(texts, vocab_size=320)
    model = build_tiny_llama(
        TinyLlamaSpec(
            hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, vocab_size=320, max_positions=128
        ),
        tok,
        seed,
    )
    cfg: Any = model.config  # a transformers LlamaConfig (nn.Module types the attribute Tensor | Module)
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads

    def permute(w: np.ndarray, heads: int) -> np.ndarray:  # llama.cpp's layout of the rotary halves
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    vocab = tok.backend_tokenizer.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [
        m if isinstance(m, str) else " ".join(m) for m in json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    ]
    specials = {tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama-test")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(cfg.hidden_size // n_head)
    w.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if i in specials else 1 for i in range(len(tokens))])
    w.add_token_merges(merges)
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    names = {
        "input_layernorm": "attn_norm",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_q.weight", permute(sd[p + "self_attn.q_proj.weight"], n_head))
        w.add_tensor(f"blk.{i}.attn_k.weight", permute(sd[p + "self_attn.k_proj.weight"], n_kv))
        for hf, gg in names.items():
            w.add_tensor(f"blk.{i}.{gg}.weight", sd[p + hf + ".weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model, tok
