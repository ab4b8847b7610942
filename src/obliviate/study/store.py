"""Where a study's results live: one JSON record per finished run, written atomically.

``out_dir/runs/<key>.json`` exists only for finished runs, so an interrupted study re-run skips
exactly what is done and never reads a half-written result. ``results.jsonl`` and
``results.csv`` (one row per run × metric) are regenerated from the records.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from ..utils import write_json_atomic, write_text_atomic

ROW_FIELDS = ("study", "scale", "dataset", "model", "request", "method", "seed", "metric", "value", "direction")


def safe_key(*parts: Any) -> str:
    """A filesystem-safe key from labels (``resnet9(width=0.25)`` -> ``resnet9_width-0.25_``)."""
    text = "__".join(str(p) for p in parts)
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-")


class ResultStore:
    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.runs_dir = self.out_dir / "runs"
        self.groups_dir = self.out_dir / "groups"

    def run_path(self, key: str) -> Path:
        return self.runs_dir / f"{key}.json"

    def has_run(self, key: str) -> bool:
        p = self.run_path(key)
        if not p.is_file():
            return False
        try:
            json.loads(p.read_text())
        except (json.JSONDecodeError, OSError):
            return False
        return True

    def save_run(self, key: str, record: dict[str, Any]) -> None:
        write_json_atomic(self.run_path(key), record)

    def save_group(self, key: str, record: dict[str, Any]) -> None:
        write_json_atomic(self.groups_dir / f"{key}.json", record)

    def runs(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.runs_dir.glob("*.json"))]

    def groups(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.groups_dir.glob("*.json"))]

    def write_tables(self, rows: list[dict[str, Any]]) -> None:
        write_text_atomic(self.out_dir / "results.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(ROW_FIELDS), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        write_text_atomic(self.out_dir / "results.csv", buf.getvalue())


def record_rows(record: dict[str, Any], study: str, scale: str | None) -> list[dict[str, Any]]:
    """Flatten one run record into result rows (one per metric)."""
    base = {
        "study": study, "scale": scale or "", "dataset": record.get("dataset", ""), "model": record["model"],
        "request": record["request"], "method": record["method"], "seed": record["seed"],
    }
    return [
        {**base, "metric": k, "value": v, "direction": record.get("directions", {}).get(k, "info")}
        for k, v in sorted(record["values"].items())
    ]
