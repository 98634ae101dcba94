"""Events out (docs/events.md): what happens in classes, as versioned JSON events on a
Redis Stream (:mod:`~vtp.events.envelope`), written by one-line hooks in the transaction
of the change they report (:mod:`~vtp.events.hooks`) to an outbox that each node's relay
moves to the stream (:mod:`~vtp.events.stream`), and delivered to admins' webhook
endpoints, signed (:mod:`~vtp.events.signing`) with secrets kept encrypted
(:mod:`~vtp.events.secret_box`), retried and guarded against internal targets
(:mod:`~vtp.events.targets`), by :mod:`~vtp.events.deliverer`.

Core layer: imports no web, API or media-plane code; the classroom and the SFU reach it
through hooks the app wires in.
"""
