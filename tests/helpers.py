"""Small helpers shared by the API tests."""

from __future__ import annotations


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(body: object, code: str) -> dict[str, object]:
    """Check the JSON error envelope and return its inner object."""
    assert isinstance(body, dict), body
    error = body.get("error")
    assert isinstance(error, dict), body
    assert error["code"] == code, body
    assert isinstance(error["message"], str) and error["message"], body
    assert "details" in error, body
    return error
