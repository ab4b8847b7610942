"""The references' outputs are kept beside the model cache under the group key: a second study
folder (another method, a tuning trial) reads them instead of evaluating three models again, and
gets the same numbers; a damaged file is recomputed."""

from __future__ import annotations

import json
from pathlib import Path

from obliviate.study import StudyRunner, load_study
from obliviate.study.presets import preset_path
from obliviate.testing import RecordingProgress

SET = ["methods=[original,retrain,finetune]", "audit.references=0", "seeds=[0]"]


def _values(out: Path) -> dict[str, dict[str, float]]:
    recs = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    return {r["key"]: {k: v for k, v in r["values"].items() if not k.startswith("efficiency/")} for r in recs}


def test_second_folder_reads_reference_outputs_and_agrees(tmp_path: Path) -> None:
    spec = load_study(preset_path("default"), overrides=SET)
    first, second, third = RecordingProgress(), RecordingProgress(), RecordingProgress()
    StudyRunner(spec, tmp_path / "a", cache_dir=tmp_path / "cache", progress=first).run()
    StudyRunner(spec, tmp_path / "b", cache_dir=tmp_path / "cache", progress=second).run()
    assert any(ln.endswith("evaluating references") for ln in first.lines)
    assert any(ln.endswith("reference outputs from the cache") for ln in second.lines), second.lines
    assert not any(ln.endswith("evaluating references") for ln in second.lines)
    assert _values(tmp_path / "a") == _values(tmp_path / "b")
    # a damaged file is not trusted: evaluated again, rewritten, same numbers
    (f,) = (tmp_path / "cache" / "outputs").glob("*.safetensors")
    f.write_bytes(b"not a safetensors file")
    StudyRunner(spec, tmp_path / "c", cache_dir=tmp_path / "cache", progress=third).run()
    assert any(ln.endswith("evaluating references") for ln in third.lines), third.lines
    assert _values(tmp_path / "c") == _values(tmp_path / "a")
    assert f.stat().st_size > 1000
