"""The live channel's messages: each model is documented in vtp.web.live, and client
messages are read as the browser sends them (extra fields ignored, bad fields refused)."""

from __future__ import annotations

import uuid

import pytest

from vtp.channel.messages import MessageError, message_type
from vtp.web import live
from vtp.web import live_messages as lm


def test_every_message_type_is_documented() -> None:
    doc = live.__doc__ or ""
    for model in (*lm.CLIENT_MESSAGES, *lm.SERVER_MESSAGES):
        assert f"``{message_type(model)}" in doc, message_type(model)


def test_client_messages_are_typed_and_lenient() -> None:
    user = uuid.uuid4()
    mute = lm.CLIENT.parse(f'{{"type": "mute", "user_id": "{user}", "extra": 1}}')
    assert isinstance(mute, lm.Mute)
    assert (mute.user_id, mute.kind, mute.locked) == (user, "audio", False)
    unmute = lm.CLIENT.parse('{"type": "unmute", "kind": "video"}')
    assert isinstance(unmute, lm.Unmute) and unmute.user_id is None
    with pytest.raises(MessageError) as bad:
        lm.CLIENT.parse('{"type": "mute", "user_id": "nobody"}')
    assert bad.value.code == "validation_error"
    assert bad.value.details[0]["field"] == "user_id"
    with pytest.raises(MessageError) as bad:
        lm.CLIENT.parse(f'{{"type": "mute", "user_id": "{user}", "kind": "screen"}}')
    assert bad.value.code == "validation_error"
    with pytest.raises(MessageError) as bad:
        lm.CLIENT.parse('{"type": "record", "action": "pause"}')
    assert bad.value.code == "validation_error"
    with pytest.raises(MessageError) as bad:
        lm.CLIENT.parse('{"type": "dance"}')
    assert bad.value.code == "unknown_type"
    with pytest.raises(MessageError) as bad:
        lm.CLIENT.parse("[" * 3000)
    assert bad.value.code == "invalid_json"


def test_server_messages_keep_their_wire_form() -> None:
    assert lm.Pong().to_json() == {"type": "pong"}
    assert lm.ErrorMessage.of("forbidden", "no").to_json() == {
        "type": "error",
        "error": {"code": "forbidden", "message": "no", "details": None},
    }
    assert lm.HandState(user_id="u", raised=False, at=None).to_json() == {
        "type": "hand",
        "user_id": "u",
        "raised": False,
        "at": None,
    }
