"""Studies: YAML spec -> plan of content-keyed runs -> records; one runner for every task.

``obliviate.api.run_study`` runs a study and renders its report (the report sits above this layer)."""

from .runner import StudyRunner, default_cache_dir
from .spec import MethodSpec, ModelSpec, StudySpec, StudySpecError, load_study, parse_study
from .store import ResultStore, StudyLockedError

__all__ = [
    "MethodSpec",
    "ModelSpec",
    "ResultStore",
    "StudyLockedError",
    "StudyRunner",
    "StudySpec",
    "StudySpecError",
    "default_cache_dir",
    "load_study",
    "parse_study",
]
