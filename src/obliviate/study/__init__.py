"""Studies: YAML spec -> runs -> records; the runner orchestrates, methods and metrics do the work."""

from .runner import StudyRunner, default_cache_dir, run_study
from .spec import MethodSpec, ModelSpec, StudySpec, StudySpecError, load_study, parse_study
from .store import ResultStore

__all__ = [
    "StudyRunner", "default_cache_dir", "run_study", "MethodSpec", "ModelSpec", "StudySpec",
    "StudySpecError", "load_study", "parse_study", "ResultStore",
]
