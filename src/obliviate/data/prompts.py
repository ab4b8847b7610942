"""Prompt formatting and token batches for the judgement task.

A training example is ``prompt(instruction, statement) + answer + EOS``. The prompt template is
one of :data:`TEMPLATES` — ``alpaca`` is the template of the Unsloth notebooks the paper used
(§III.B), ``short`` a compact one for tiny models, ``chat`` the tokenizer's own chat template
(instruct checkpoints; ``system`` sets its system message, else the tokenizer's default one is
used). The template's fixed parts and the statement are tokenised separately so
that a long statement is truncated without ever cutting the answer.

Batches are dicts: ``input_ids``, ``attention_mask`` (right-padded), ``labels`` (``-100`` where no
loss is taken; Hugging Face convention, unshifted) and ``index`` (row positions in the dataset).
``loss_on="answer"`` puts labels on the answer tokens and EOS only (the TOFU convention);
``"all"`` on every token after BOS.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

TEMPLATES: dict[str, str] = {
    "alpaca": (
        "Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{text}\n\n### Response:\n"
    ),
    "short": "### Instruction: {instruction}\n### Statement: {text}\n### Answer:",
}
TEMPLATE_NAMES = ("alpaca", "short", "chat")
LOSS_ON = ("answer", "all")
IGNORE = -100
_SLOT = "\x00STATEMENT\x00"


@dataclass
class Encoded:
    """One example: token ids and the positions (same length) that carry a loss."""

    ids: list[int]
    loss_mask: list[bool]


class TaskEncoder:
    """Turns (statement, label) pairs into token batches for one tokenizer and template."""

    def __init__(
        self,
        tokenizer: Any,
        instruction: str,
        answers: Mapping[str, str],
        template: str = "alpaca",
        max_length: int = 256,
        system: str | None = None,
    ) -> None:
        if template not in TEMPLATE_NAMES:
            raise ValueError(f"template must be one of {TEMPLATE_NAMES}, got {template!r}")
        if system is not None and template != "chat":
            raise ValueError(f"a system message needs template 'chat' (got template {template!r})")
        if max_length < 16:
            raise ValueError(f"max_length must be >= 16, got {max_length}")
        self.tokenizer = tokenizer
        self.instruction = instruction
        self.answers = dict(answers)
        self.template = template
        self.max_length = max_length
        self.system = system
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_id = tokenizer.eos_token_id
        self.bos_id = tokenizer.bos_token_id
        if self.eos_id is None:
            raise ValueError("the tokenizer has no EOS token; an answer must end with one")
        self._prefix, self._suffix = self._template_parts()
        self._answer_cache: dict[str, list[int]] = {}
        self._text_cache: dict[str, list[int]] = {}

    # -- formatting ------------------------------------------------------------------------------
    def _template_parts(self) -> tuple[list[int], list[int]]:
        if self.template == "chat":
            if not getattr(self.tokenizer, "chat_template", None):
                raise ValueError("template 'chat' needs a tokenizer with a chat template; use 'alpaca' or 'short'")
            system = [] if self.system is None else [{"role": "system", "content": self.system}]
            rendered = self.tokenizer.apply_chat_template(
                [*system, {"role": "user", "content": f"{self.instruction}\n\n{_SLOT}"}],
                add_generation_prompt=True,
                tokenize=False,
            )
        else:
            rendered = TEMPLATES[self.template].format(instruction=self.instruction, text=_SLOT)
        return self._around_slot(rendered)

    def _around_slot(self, rendered: str) -> tuple[list[int], list[int]]:
        """The tokens before (with BOS) and after the statement's slot in a rendered template."""
        before, after = rendered.split(_SLOT)
        prefix = self._encode(before)
        if self.bos_id is not None and (not prefix or prefix[0] != self.bos_id):
            prefix = [self.bos_id, *prefix]
        return prefix, self._encode(after)

    def _encode(self, s: str) -> list[int]:
        return list(self.tokenizer(s, add_special_tokens=False)["input_ids"]) if s else []

    def prompt_text(self, text: str) -> str:
        """The prompt as a string (for reports; the ids come from :meth:`prompt_ids`)."""
        ids = self.prompt_ids(text)
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def text_ids(self, text: str) -> list[int]:
        if text not in self._text_cache:
            self._text_cache[text] = self._encode(text)
        return self._text_cache[text]

    def answer_ids(self, answer: str) -> list[int]:
        """Tokens of an answer string (``"not biased"``) followed by EOS."""
        if answer not in self._answer_cache:
            lead = " " if self.template == "short" else ""
            self._answer_cache[answer] = [*self._encode(lead + answer), self.eos_id]
        return self._answer_cache[answer]

    def prompt_ids(self, text: str, reserve: int = 0) -> list[int]:
        """Prompt tokens, truncating the statement so that ``reserve`` answer tokens still fit."""
        body = self.text_ids(text)
        room = self.max_length - reserve - len(self._prefix) - len(self._suffix)
        if room < 1:
            raise ValueError(f"max_length={self.max_length} leaves no room for the statement")
        return [*self._prefix, *body[:room], *self._suffix]

    def example(self, text: str, answer: str, loss_on: str = "answer") -> Encoded:
        """``prompt + answer + EOS`` with the loss on the answer (or on everything after BOS)."""
        if loss_on not in LOSS_ON:
            raise ValueError(f"loss_on must be one of {LOSS_ON}, got {loss_on!r}")
        ans = self.answer_ids(answer)
        prompt = self.prompt_ids(text, reserve=len(ans))
        ids = [*prompt, *ans]
        if loss_on == "answer":
            mask = [False] * len(prompt) + [True] * len(ans)
        else:
            first = 1 if self.bos_id is not None and ids[0] == self.bos_id else 0
            mask = [i >= first for i in range(len(ids))]
        return Encoded(ids, mask)

    def lm_example(self, text: str) -> Encoded:
        """Plain text for language-model scoring (CrowS-Pairs): ``BOS + text``, loss on the text."""
        ids = self.text_ids(text)[: self.max_length - 1]
        if self.bos_id is not None:
            return Encoded([self.bos_id, *ids], [False] + [True] * len(ids))
        return Encoded(list(ids), [False] + [True] * (len(ids) - 1))

    # -- batching ---------------------------------------------------------------------------------
    def collate(
        self, examples: Sequence[Encoded], index: Sequence[int] | torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Right-pad a list of examples into a batch dict."""
        if not examples:
            raise ValueError("cannot collate an empty batch")
        width = max(len(e.ids) for e in examples)
        ids = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(examples), width), dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
        for i, e in enumerate(examples):
            n = len(e.ids)
            t = torch.tensor(e.ids, dtype=torch.long)
            ids[i, :n] = t
            att[i, :n] = 1
            m = torch.tensor(e.loss_mask, dtype=torch.bool)
            labels[i, :n] = torch.where(m, t, torch.full_like(t, IGNORE))
        idx = torch.as_tensor(list(range(len(examples))) if index is None else index, dtype=torch.long)
        return {"input_ids": ids, "attention_mask": att, "labels": labels, "index": idx}


class TextBatchLoader:
    """Batches over rows of statements with a chosen answer per row; reshuffled per epoch.

    ``answers[i]`` is the answer string taught/scored for ``texts[i]``; ``rows[i]`` its position
    in the dataset (returned as ``batch["index"]``). Shuffling draws from ``seed`` and the epoch.
    ``group_by_length`` (as Hugging Face's ``Trainer(group_by_length=True)``): each epoch's shuffled
    order is cut into mega-batches of ``MEGA`` batches, each sorted by length and cut into batches
    (less padding), and the batches are shuffled again.
    """

    MEGA = 16

    def __init__(
        self,
        encoder: TaskEncoder,
        texts: Sequence[str],
        answers: Sequence[str],
        rows: Sequence[int],
        *,
        batch_size: int,
        loss_on: str = "answer",
        shuffle: bool = True,
        seed: int = 0,
        group_by_length: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not (len(texts) == len(answers) == len(rows)):
            raise ValueError("texts, answers and rows must have the same length")
        if len(texts) == 0:
            raise ValueError("TextBatchLoader got no rows")
        self.encoder, self.batch_size, self.shuffle, self.seed = encoder, batch_size, shuffle, seed
        self.group_by_length = group_by_length
        self.examples = [encoder.example(t, a, loss_on) for t, a in zip(texts, answers)]
        self.rows = list(rows)
        self.epoch = 0

    def __len__(self) -> int:
        return (len(self.examples) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = list(range(len(self.examples)))
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.shuffle:
            order = torch.randperm(len(order), generator=g).tolist()
        self.epoch += 1
        bs = self.batch_size
        chunks = [order[s : s + bs] for s in range(0, len(order), bs)]
        if self.group_by_length:
            mega = bs * self.MEGA
            chunks = []
            for m in range(0, len(order), mega):
                part = sorted(order[m : m + mega], key=lambda i: -len(self.examples[i].ids))
                chunks += [part[s : s + bs] for s in range(0, len(part), bs)]
            if self.shuffle:
                chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=g).tolist()]
        for chunk in chunks:
            yield self.encoder.collate([self.examples[i] for i in chunk], [self.rows[i] for i in chunk])

    def forever(self) -> Iterator[dict[str, torch.Tensor]]:
        """Cycle through epochs without end (each epoch reshuffled)."""
        while True:
            yield from self


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def model_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys a causal LM's ``forward`` takes (labels are scored by our own losses)."""
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


@dataclass(frozen=True)
class TextRow:
    """One row of a deletion request on a causal LM: a prompt and its answer (a question and the
    answer the model gives), or a plain text (``prompt`` empty). ``requested``: the answer to give
    instead, when the request names one. ``paraphrase`` and ``perturbed``: the true answer in other
    words and wrong answers of the same form (TOFU's construction), for the truth ratio."""

    prompt: str
    answer: str
    requested: str | None = None
    paraphrase: str | None = None
    perturbed: tuple[str, ...] = ()


QA_TEMPLATE = "Question: {text}\nAnswer:"


class PairEncoder(TaskEncoder):
    """Token batches of prompt/answer pairs and plain texts, for deletion requests on a causal LM.

    A pair's prompt is its question alone — inside the tokenizer's chat template (``template="chat"``,
    the question as the user's message) or :data:`QA_TEMPLATE` (``"qa"``) — and the answer follows
    it with EOS; a row with an empty prompt is a plain text (a document), taught and scored on every
    token. Everything else — truncation that never cuts the answer, ``loss_on``, batching — is
    :class:`TaskEncoder`'s.
    """

    def __init__(self, tokenizer: Any, template: str = "qa", max_length: int = 256, system: str | None = None) -> None:
        if template not in ("qa", "chat"):
            raise ValueError(f"a pair's template is 'qa' or 'chat', got {template!r}")
        self.pair_template = template
        super().__init__(tokenizer, "", {}, "chat" if template == "chat" else "short", max_length, system)

    def _template_parts(self) -> tuple[list[int], list[int]]:
        if self.pair_template == "chat":
            if not getattr(self.tokenizer, "chat_template", None):
                raise ValueError("template 'chat' needs a tokenizer with a chat template; use 'qa'")
            system = [] if self.system is None else [{"role": "system", "content": self.system}]
            rendered = self.tokenizer.apply_chat_template(
                [*system, {"role": "user", "content": _SLOT}], add_generation_prompt=True, tokenize=False
            )
        else:
            rendered = QA_TEMPLATE.format(text=_SLOT)
        return self._around_slot(rendered)

    def answer_ids(self, answer: str) -> list[int]:
        if answer not in self._answer_cache:
            lead = "" if self.pair_template == "chat" else " "
            self._answer_cache[answer] = [*self._encode(lead + answer), self.eos_id]
        return self._answer_cache[answer]

    def example(self, text: str, answer: str, loss_on: str = "answer") -> Encoded:
        if text:
            return super().example(text, answer, loss_on)
        ids = [*self._encode(answer)][: self.max_length - 2]  # a plain text: BOS + text + EOS, all scored
        head = [self.bos_id] if self.bos_id is not None else []
        return Encoded([*head, *ids, self.eos_id], [False] * len(head) + [True] * (len(ids) + 1))
