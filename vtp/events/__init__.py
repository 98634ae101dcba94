"""Events out (docs/events.md): what happens in classes, as versioned JSON events on a
Redis Stream (:mod:`~vtp.events.stream`, :mod:`~vtp.events.envelope`), emitted by
one-line hooks where changes are committed (:mod:`~vtp.events.hooks`), and delivered to
admins' webhook endpoints, signed (:mod:`~vtp.events.signing`), retried and guarded
against internal targets (:mod:`~vtp.events.targets`), by :mod:`~vtp.events.deliverer`.

Core layer: imports no web, API or media-plane code; the classroom and the SFU reach it
through hooks the app wires in.
"""
