"""A tiny builder for filtered keyset-paginated queries with numbered parameters."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any


class Where:
    def __init__(self, *initial: Any) -> None:
        self.params: list[Any] = list(initial)
        self.clauses: list[str] = []

    def add(self, clause: str, *values: Any) -> None:
        """`clause` has one `{}` per value, filled with the value's `$n`."""
        slots = []
        for value in values:
            self.params.append(value)
            slots.append(f"${len(self.params)}")
        self.clauses.append(clause.format(*slots))

    def add_if(self, value: Any, clause: str) -> None:
        if value is not None:
            self.add(clause, value)

    def after(
        self, cursor: tuple[datetime, uuid.UUID] | None, alias: str, *, desc: bool = False
    ) -> None:
        if cursor is not None:
            op = "<" if desc else ">"
            self.add(f"({alias}.created_at, {alias}.id) {op} ({{}}, {{}})", *cursor)

    def sql(self) -> str:
        return ("WHERE " + " AND ".join(self.clauses)) if self.clauses else ""

    def limit(self, limit: int) -> str:
        self.params.append(limit + 1)
        return f"LIMIT ${len(self.params)}"
