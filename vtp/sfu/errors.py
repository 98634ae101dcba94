"""The one exception the SFU's public API raises for bad client input or state."""

from __future__ import annotations


class SfuError(Exception):
    """A request the SFU refused; ``code`` is a short machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"SfuError({self.code!r}, {self.message!r})"
