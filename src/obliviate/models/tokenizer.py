"""A small byte-level BPE tokenizer the toolkit trains itself (no download).

Byte-level BPE (as in GPT-2/Llama 3) never meets an unknown character, so the tiny model can also
score out-of-domain text such as CrowS-Pairs. It is trained with the ``tokenizers`` library on the
task statements plus the instruction template and answers, wrapped as a
``PreTrainedTokenizerFast`` and saved as ``tokenizer.json`` (plain JSON, nothing unpickled).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, BOS, EOS)


def build_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2) -> Any:
    """Train a byte-level BPE on ``texts``; returns a ``PreTrainedTokenizerFast``.

    Ids 0, 1, 2 are ``<pad>``, ``<s>``, ``</s>``. Deterministic for the same texts.
    """
    if vocab_size < 300:
        raise ValueError(f"vocab_size must be >= 300 (256 bytes + merges + specials), got {vocab_size}")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    return wrap_tokenizer(tok)


def wrap_tokenizer(tok: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    fast.padding_side = "right"
    return fast


def save_tokenizer(tokenizer: Any, path: str | Path) -> None:
    """Write the underlying ``tokenizer.json`` atomically."""
    from ..utils import write_text_atomic

    write_text_atomic(path, tokenizer.backend_tokenizer.to_str())


def load_tokenizer(path: str | Path) -> Any:
    from tokenizers import Tokenizer

    return wrap_tokenizer(Tokenizer.from_file(str(path)))
