"""The tasks the one study runner drives: ``vision`` (image classifiers) and ``llm`` (causal LMs)."""

from .base import GroupPlan, OpenGroup, Progress, Task, Unit

__all__ = ["GroupPlan", "OpenGroup", "Progress", "Task", "Unit"]
