"""Studies: YAML spec -> plan of content-keyed runs -> records; one runner for every task."""

from .runner import StudyRunner, default_cache_dir, run_study
from .spec import MethodSpec, ModelSpec, StudySpec, StudySpecError, load_study, parse_study
from .store import ResultStore, StudyLockedError

__all__ = [
    "StudyRunner", "default_cache_dir", "run_study", "MethodSpec", "ModelSpec", "StudySpec",
    "StudySpecError", "load_study", "parse_study", "ResultStore", "StudyLockedError",
]
