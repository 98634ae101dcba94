"""Node tokens (vtp.cluster.nodetoken): what one node presents to another."""

from __future__ import annotations

from vtp.cluster import nodetoken

KEY = nodetoken.node_key("s" * 40)


def test_a_token_names_its_node_until_it_expires() -> None:
    token = nodetoken.sign(KEY, "node-b.example", now=1000)
    assert nodetoken.verify(KEY, token, now=1000) == "node-b.example"
    assert nodetoken.verify(KEY, token, now=1000 + nodetoken.TTL_S) == "node-b.example"
    assert nodetoken.verify(KEY, token, now=1001 + nodetoken.TTL_S) is None


def test_forged_or_foreign_tokens_are_refused() -> None:
    token = nodetoken.sign(KEY, "node-b", now=1000)
    node, expires, mac = token.split(":")
    assert nodetoken.verify(nodetoken.node_key("t" * 40), token, now=1000) is None
    assert nodetoken.verify(KEY, f"node-a:{expires}:{mac}", now=1000) is None
    assert nodetoken.verify(KEY, f"{node}:{int(expires) + 10}:{mac}", now=1000) is None
    far = nodetoken.sign(KEY, "node-b", now=5000)  # made for later than it can live
    assert nodetoken.verify(KEY, far, now=1000) is None
    for bad in ("", "x", "a:b:c", "a:1:2:3", ":1000:" + mac, "n" * 300):
        assert nodetoken.verify(KEY, bad, now=1000) is None
