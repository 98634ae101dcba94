"""Parsing untrusted JSON with a bound on nesting depth.

`json.loads` recurses once per level: a body of a few thousand `[` raised RecursionError
deep inside the parser (a 500 before authentication), and a few hundred levels that do
parse would make every later recursive step (validation, logging) a risk. No VTP message
nests more than a few levels, so anything deeper than `MAX_DEPTH` is refused.

The parser's own RecursionError is caught (it fails fast, at the interpreter's recursion
limit), and what parses is then measured without recursion, stopping at the first node
too deep: no pass over the raw text, so a large ordinary body costs little more than
parsing it.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32


class TooDeep(ValueError):
    """The JSON nests deeper than allowed."""


def exceeds_depth(data: Any, max_depth: int) -> bool:
    """Whether `data` (parsed JSON) has containers nested more than `max_depth` deep
    (`[]` is depth 1, `[[]]` depth 2)."""
    if not isinstance(data, (dict, list)):
        return False
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def loads(raw: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, but raises :class:`TooDeep` (a ValueError) for text nested deeper than
    `max_depth`; malformed text raises json.JSONDecodeError or UnicodeDecodeError as usual."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise TooDeep(f"JSON nests deeper than {max_depth} levels") from None
    if exceeds_depth(data, max_depth):
        raise TooDeep(f"JSON nests deeper than {max_depth} levels")
    return data
