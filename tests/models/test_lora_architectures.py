"""LoRA targets found from the architecture, and tied weights that hash and save, on tiny random
GPT-2-, Llama-, Qwen- and Gemma-style causal LMs built here (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from obliviate.deletion.evidence import weights_sha256  # noqa: E402
from obliviate.models.causal_lm import LoraSettings, attach_lora, lora_targets, merge_lora  # noqa: E402
from obliviate.models.checkpoint import load_state, save_state  # noqa: E402

LLAMA_STYLE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SMALL = {"vocab_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2}


def tiny(arch: str) -> Any:
    torch.manual_seed(0)
    if arch == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=2, n_positions=64)
        return transformers.GPT2LMHeadModel(cfg)
    cls = {"llama": "Llama", "qwen2": "Qwen2", "gemma": "Gemma"}[arch]
    extra = {"head_dim": 16} if arch == "gemma" else {}
    cfg = getattr(transformers, f"{cls}Config")(hidden_size=32, intermediate_size=64, **SMALL, **extra)
    return getattr(transformers, f"{cls}ForCausalLM")(cfg)


@pytest.mark.parametrize(
    "arch, expected",
    [("gpt2", ("c_attn", "c_proj", "c_fc")), ("llama", LLAMA_STYLE), ("qwen2", LLAMA_STYLE), ("gemma", LLAMA_STYLE)],
)
def test_lora_targets_come_from_the_blocks(arch: str, expected: tuple[str, ...], tmp_path: Path) -> None:
    model = tiny(arch).eval()
    targets = lora_targets(model)
    assert set(targets) == set(expected)  # the head and the embeddings are never targets
    ids = torch.randint(0, 128, (2, 12))
    before = model(ids).logits.detach()
    net = attach_lora(model, LoraSettings(r=4, alpha=8, targets=targets), seed=0)
    wrapped = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in net.named_parameters() if "lora_A" in n}
    assert wrapped == set(expected)
    assert torch.allclose(net(ids).logits, before, atol=1e-5)  # lora_B = 0: unchanged at start
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.5)
    net.train()
    for _ in range(3):
        opt.zero_grad()
        net(ids, labels=ids).loss.backward()
        opt.step()
    merged = merge_lora(net).eval()
    assert not torch.allclose(merged(ids).logits, before, atol=1e-4)  # the adapter trained and merged
    # tied weights (GPT-2's embedding and head share memory) hash and save
    digest = weights_sha256(merged)
    save_state(tmp_path / "m", merged.state_dict(), spec={"arch": arch})
    state, meta = load_state(tmp_path / "m")
    assert meta["sha256"] == digest  # the evidence's hash is the saved file's
    again = tiny(arch)
    again.load_state_dict(state)
    assert torch.allclose(again.eval()(ids).logits, merged(ids).logits, atol=1e-5)


def test_a_model_without_blocks_falls_back_to_all_linear() -> None:
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    assert lora_targets(mlp) == ("all-linear",)
