"""An SFU refusal (:class:`vtp.sfu.SfuError`) as the edge answers it: one error code per
SFU code, in the API's spelling, for WebSocket messages; with an HTTP status beside it
for REST transports, WHIP, WHEP and the cascade's node-to-node steps."""

from __future__ import annotations

from vtp.api.errors import ApiError
from vtp.sfu import SfuError

_CODES = {"exists": "conflict", "internal": "internal_error"}  # else "bad-sdp" -> "bad_sdp"
_STATUS = {  # else 400 (bad SDP, candidate, name or request)
    "not-found": 404,
    "bad-state": 409,
    "relayed-room": 409,
    "exists": 409,
    "internal": 500,
}


def sfu_error_code(exc: SfuError) -> str:
    """The signalling/REST error code for an SFU error code."""
    return _CODES.get(exc.code, exc.code.replace("-", "_"))


def sfu_api_error(exc: SfuError) -> ApiError:
    """The HTTP answer to an SFU refusal."""
    return ApiError(_STATUS.get(exc.code, 400), sfu_error_code(exc), exc.message)
