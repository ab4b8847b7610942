"""Text classification data for the LLM half: statements with a label, an instruction and answers.

A :class:`TextDataset` is a tuple of :class:`TextRecord` (id, text, label, optional pair/group and
category) plus the instruction the model is asked (paper §III.B: "Is this statement biased?")
and the answer string for each label (``not_biased`` → ``"not biased"``). It comes from the
bundled clinical-bias set (:func:`load_clinical_bias`), a local CSV/JSONL file or a Hugging Face
hub dataset (:func:`load_text_dataset`). Nothing here imports transformers.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESOURCES = Path(__file__).resolve().parent / "resources"
CLINICAL_BIAS_PATH = RESOURCES / "clinical_bias.jsonl"
DEFAULT_INSTRUCTION = "Is this statement biased?"
BUILTIN = ("clinical_bias",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class TextDataError(ValueError):
    """A text dataset that cannot be read or used; the message names the file/column/value."""


@dataclass(frozen=True)
class TextRecord:
    """One statement. ``group`` ties near-identical texts (a minimal-edit pair) so that a split
    never puts one member in training and the other in the held-out set."""

    id: str
    text: str
    label: str
    group: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class TextDataset:
    """Statements, the instruction asked about each, and the answer string per label."""

    name: str
    records: tuple[TextRecord, ...]
    answers: Mapping[str, str]
    instruction: str = DEFAULT_INSTRUCTION
    source: str = ""
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.records:
            raise TextDataError(f"text dataset {self.name!r} holds no records")
        index: dict[str, int] = {}
        for i, r in enumerate(self.records):
            if r.id in index:
                raise TextDataError(f"text dataset {self.name!r}: duplicated id {r.id!r}")
            index[r.id] = i
        missing = sorted({r.label for r in self.records} - set(self.answers))
        if missing:
            raise TextDataError(
                f"text dataset {self.name!r}: no answer string for label(s) {missing}; "
                f"answers cover {sorted(self.answers)}"
            )
        if len(set(self.answers.values())) != len(self.answers):
            raise TextDataError(f"answer strings must be distinct, got {dict(self.answers)}")
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.records)

    def fingerprint(self) -> str:
        """Content hash of the records, the instruction and the answers (as
        :meth:`obliviate.data.ImageDataset.fingerprint` is of images)."""
        from ..utils import stable_hash

        return stable_hash(
            [[r.id, r.text, r.label, r.group, getattr(r, "category", None)] for r in self.records]
            + [self.instruction, dict(self.answers)]
        )

    @property
    def labels(self) -> tuple[str, ...]:
        """Label values in a fixed order (the order of ``answers``)."""
        return tuple(self.answers)

    @property
    def answer_strings(self) -> tuple[str, ...]:
        return tuple(self.answers[label] for label in self.labels)

    def row_of(self, record_id: str) -> int:
        try:
            return self._index[record_id]
        except KeyError:
            raise TextDataError(f"no statement with id {record_id!r} in {self.name!r}") from None

    def has_id(self, record_id: str) -> bool:
        return record_id in self._index

    def label_of_answer(self, answer: str) -> str:
        """The label whose answer string (or label name) is ``answer``; raises with the choices."""
        for label, text in self.answers.items():
            if answer in (label, text):
                return label
        raise TextDataError(
            f"unknown answer {answer!r}; allowed: {sorted(set(self.answers) | set(self.answers.values()))}"
        )

    def with_labels(self, labels: Mapping[int, str]) -> TextDataset:
        """A copy in which row ``i`` carries ``labels[i]`` (label noise injected into tuning data)."""
        if not labels:
            return self
        bad = sorted({v for v in labels.values() if v not in self.answers})
        if bad:
            raise TextDataError(f"labels {bad} are not among {sorted(self.answers)}")
        recs = tuple(dataclasses.replace(r, label=labels[i]) if i in labels else r for i, r in enumerate(self.records))
        return dataclasses.replace(self, records=recs, _index={})

    def describe(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.label] = counts.get(r.label, 0) + 1
        return {
            "name": self.name,
            "size": len(self),
            "labels": counts,
            "instruction": self.instruction,
            "answers": dict(self.answers),
            "source": self.source,
        }


def default_answers(labels: Sequence[str]) -> dict[str, str]:
    """``not_biased`` → ``"not biased"``: underscores become spaces (the README's mapping)."""
    return {label: label.replace("_", " ") for label in sorted(labels)}


def load_clinical_bias(instruction: str = DEFAULT_INSTRUCTION) -> TextDataset:
    """The bundled 477-sentence clinical-bias set (see ``resources/CLINICAL_BIAS_README.md``)."""
    ds = _from_rows(
        "clinical_bias",
        _read_jsonl(CLINICAL_BIAS_PATH),
        text_col="text",
        label_col="label",
        id_col="id",
        group_col="pair_id",
        category_col="category",
        instruction=instruction,
        answers={"biased": "biased", "not_biased": "not biased"},
        source="obliviate bundled clinical_bias.jsonl",
    )
    return ds


def load_text_dataset(
    path_or_id: str | Path,
    text_col: str = "text",
    label_col: str = "label",
    *,
    id_col: str | None = None,
    group_col: str | None = None,
    category_col: str | None = None,
    split: str = "train",
    instruction: str = DEFAULT_INSTRUCTION,
    answers: Mapping[str, str] | None = None,
) -> TextDataset:
    """Load statements with a text and a label column.

    ``path_or_id``: ``"clinical_bias"`` (bundled), a local ``.csv``/``.jsonl``/``.json`` file, or a
    Hugging Face hub dataset id (``owner/name``; needs the ``datasets`` package and a network).
    ``id_col`` defaults to ``"id"`` when present, else the row number; ``answers`` maps each label
    to the answer string (default: the label with underscores as spaces).
    """
    name = str(path_or_id)
    if name in BUILTIN and not Path(name).exists():
        ds = load_clinical_bias(instruction)
        if text_col != "text" or label_col != "label":
            raise TextDataError("the bundled clinical_bias set has columns 'text' and 'label'")
        if answers is not None:
            return TextDataset(ds.name, ds.records, dict(answers), ds.instruction, ds.source)
        return ds
    path = Path(name).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            rows = _read_csv(path)
        elif suffix in (".jsonl", ".json"):
            rows = _read_jsonl(path) if suffix == ".jsonl" else _read_json(path)
        else:
            raise TextDataError(f"{path}: unsupported file type {suffix!r}; allowed: .csv, .jsonl, .json")
        source = f"local file {path}"
    elif path.exists():
        raise TextDataError(f"{path} is a folder; give a .csv/.jsonl file")
    elif _HUB_ID.match(name):
        rows = _read_hub(name, split)
        source = f"Hugging Face dataset {name} (split {split})"
    else:
        raise TextDataError(
            f"text dataset {name!r} not found: give 'clinical_bias', an existing .csv/.jsonl file, "
            "or a Hugging Face dataset id like 'owner/name'"
        )
    return _from_rows(
        path.stem if path.is_file() else name,
        rows,
        text_col=text_col,
        label_col=label_col,
        id_col=id_col,
        group_col=group_col,
        category_col=category_col,
        instruction=instruction,
        answers=answers,
        source=source,
    )


def _from_rows(
    name: str,
    rows: list[dict[str, Any]],
    *,
    text_col: str,
    label_col: str,
    id_col: str | None,
    group_col: str | None,
    category_col: str | None,
    instruction: str,
    answers: Mapping[str, str] | None,
    source: str,
) -> TextDataset:
    if not rows:
        raise TextDataError(f"{name}: no rows")
    cols = set(rows[0])
    for what, col in (("text_col", text_col), ("label_col", label_col)):
        if col not in cols:
            raise TextDataError(f"{name}: {what}={col!r} is not a column; columns: {sorted(cols)}")
    for what, opt in (("id_col", id_col), ("group_col", group_col), ("category_col", category_col)):
        if opt is not None and opt not in cols:
            raise TextDataError(f"{name}: {what}={opt!r} is not a column; columns: {sorted(cols)}")
    if id_col is None and "id" in cols:
        id_col = "id"
    records = []
    for i, row in enumerate(rows):
        text, label = row.get(text_col), row.get(label_col)
        if not isinstance(text, str) or not text.strip():
            raise TextDataError(f"{name}: row {i} has an empty or non-text {text_col!r}: {text!r}")
        if label is None or (isinstance(label, str) and not label.strip()):
            raise TextDataError(f"{name}: row {i} has no {label_col!r}")
        group = row.get(group_col) if group_col else None
        category = row.get(category_col) if category_col else None
        records.append(
            TextRecord(
                id=str(row[id_col]) if id_col else str(i),
                text=text.strip(),
                label=str(label),
                group=None if group in (None, "") else str(group),
                category=None if category in (None, "") else str(category),
            )
        )
    labels = sorted({r.label for r in records})
    if len(labels) < 2:
        raise TextDataError(f"{name}: a judgement task needs at least two labels, found {labels}")
    ans = dict(answers) if answers is not None else default_answers(labels)
    return TextDataset(name, tuple(records), ans, instruction, source)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TextDataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise TextDataError(f"{path}:{lineno}: each line must be a JSON object")
        rows.append(obj)
    return rows


def _read_json(path: Path) -> list[dict[str, Any]]:
    obj = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise TextDataError(f"{path}: a .json dataset must be a list of objects")
    return obj


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [dict(r) for r in csv.DictReader(f)]


def _read_hub(dataset_id: str, split: str) -> list[dict[str, Any]]:
    try:
        import datasets  # optional: only for hub ids
    except ImportError as e:
        raise ImportError(
            f"loading the hub dataset {dataset_id!r} needs the 'datasets' package (pip install datasets); "
            "or download it and pass a local .csv/.jsonl path"
        ) from e
    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as e:
        raise TextDataError(
            f"could not load the Hugging Face dataset {dataset_id!r} (split {split!r}): {type(e).__name__}: {e}. "
            "Offline? Export it to a local .csv/.jsonl file and pass that path."
        ) from None
    return [dict(r) for r in ds]


# --------------------------------------------------------------------------------------------
# CrowS-Pairs (evaluation only: never train on it)
# --------------------------------------------------------------------------------------------

# Where CrowS-Pairs is looked for when no path is given: $OBLIVIATE_CROWS_PAIRS, else this path
# relative to the working directory (the layout of a checkout beside a shared/ data folder).
CROWS_PAIRS_DEFAULT = Path("..") / "shared" / "data" / "crows_pairs" / "crows_pairs_anonymized.csv"


@dataclass(frozen=True)
class CrowsPair:
    """One CrowS-Pairs item: the more stereotyping sentence and its minimal edit."""

    sent_more: str
    sent_less: str
    bias_type: str
    stereo: bool


def load_crows_pairs(path: str | Path | None = None) -> list[CrowsPair]:
    """The 1,508 CrowS-Pairs (Nangia et al., EMNLP 2020) from ``crows_pairs_anonymized.csv``.

    ``path`` defaults to ``$OBLIVIATE_CROWS_PAIRS``, else ``../shared/data/crows_pairs/`` relative to
    the working directory; for evaluation only.
    """
    import os

    p = Path(str(path or os.environ.get("OBLIVIATE_CROWS_PAIRS", CROWS_PAIRS_DEFAULT))).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"CrowS-Pairs CSV not found at {p}: download crows_pairs_anonymized.csv from "
            "github.com/nyu-mll/crows-pairs and pass its path (metrics.crows_pairs.path)"
        )
    rows = _read_csv(p)
    need = {"sent_more", "sent_less", "stereo_antistereo", "bias_type"}
    if rows and not need <= set(rows[0]):
        raise TextDataError(f"{p}: needs columns {sorted(need)}, has {sorted(rows[0])}")
    return [CrowsPair(r["sent_more"], r["sent_less"], r["bias_type"], r["stereo_antistereo"] == "stereo") for r in rows]
