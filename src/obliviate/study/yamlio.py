"""Reading YAML a user wrote: plain data only, within a size and an expansion budget.

``yaml.safe_load`` already refuses Python tags, but it reads a file of any size, and a few hundred
bytes of aliases of aliases expand to millions of values (a "billion laughs"), which then hang
whatever walks them. :func:`load_yaml` refuses both before building anything, and its errors name
the line and say what is allowed — never the file's contents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # a study file or a preset is a few KB
MAX_VALUES = 100_000  # values after aliases are expanded


class YAMLInputError(ValueError):
    """A YAML text that is not valid, too large, expands too far, or uses a tag."""


def _line(e: yaml.MarkedYAMLError) -> str:
    mark = e.problem_mark or e.context_mark
    return f", line {mark.line + 1}" if mark is not None else ""


def _expanded(node: yaml.Node, memo: dict[int, int], busy: set[int], what: str) -> int:
    """How many values ``node`` holds once every alias is expanded (memoised: linear in the text)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in busy:
        raise YAMLInputError(f"{what}, line {node.start_mark.line + 1}: an alias refers to itself")
    busy.add(key)
    if isinstance(node, yaml.MappingNode):
        n = 1 + sum(_expanded(k, memo, busy, what) + _expanded(v, memo, busy, what) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        n = 1 + sum(_expanded(v, memo, busy, what) for v in node.value)
    else:
        n = 1
    busy.discard(key)
    memo[key] = n
    return n


def load_yaml(text: str, what: str) -> Any:
    """The data in ``text`` (mappings, lists, text, numbers, booleans, null); ``what`` names it in
    errors (a path). Refuses texts over :data:`MAX_BYTES`, documents that expand past
    :data:`MAX_VALUES` values, tags (``!!python/...``) and invalid YAML, with the line."""
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise YAMLInputError(f"{what} is {size:,} bytes; a YAML input may hold at most {MAX_BYTES:,}")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        n = _expanded(node, {}, set(), what)
        if n > MAX_VALUES:
            raise YAMLInputError(
                f"{what} expands to {n:,} values (aliases of aliases); at most {MAX_VALUES:,} are read"
            )
        return loader.construct_document(node)
    except yaml.constructor.ConstructorError as e:
        raise YAMLInputError(
            f"{what}{_line(e)}: {e.problem} — only plain YAML is read (mappings, lists, text, numbers)"
        ) from None
    except yaml.MarkedYAMLError as e:
        raise YAMLInputError(f"{what} is not valid YAML{_line(e)}: {e.problem}") from None
    except yaml.YAMLError as e:
        raise YAMLInputError(f"{what} is not valid YAML: {type(e).__name__}") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path) -> Any:
    """:func:`load_yaml` of a file, its size checked before it is read."""
    p = Path(path)
    if not p.is_file():
        raise YAMLInputError(f"{p} is not a regular file")
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise YAMLInputError(f"{p} is {size:,} bytes; a YAML input may hold at most {MAX_BYTES:,}")
    return load_yaml(p.read_text(encoding="utf-8"), str(p))
