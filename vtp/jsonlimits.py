"""Parsing untrusted JSON with a bound on nesting depth.

`json.loads` recurses once per level; a body of a few thousand `[` raises RecursionError
deep inside the parser (a 500 before authentication). No VTP message nests more than a
few levels, so anything deeper than `MAX_DEPTH` is refused before parsing.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32
# A JSON string literal (so brackets inside strings are not counted).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = frozenset(b"[{")
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")


class TooDeep(ValueError):
    """The JSON nests deeper than allowed."""


def nesting_depth(raw: bytes) -> int:
    """The deepest bracket nesting of a JSON text (strings are skipped)."""
    if raw.count(b"[") + raw.count(b"{") == 0:
        return 0
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def loads(raw: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, but raises :class:`TooDeep` (a ValueError) for text nested deeper than
    `max_depth`; malformed text raises json.JSONDecodeError or UnicodeDecodeError as usual."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") > max_depth and nesting_depth(data) > max_depth:
        raise TooDeep(f"JSON nests deeper than {max_depth} levels")
    return json.loads(raw)
