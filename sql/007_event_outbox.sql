-- The transactional outbox of the event stream (issue 17, docs/events.md): an event is
-- a row here, written in the same transaction as the change it reports, until a node's
-- relay has appended it to the Redis Stream (the row is then deleted). So an event whose
-- change committed survives a crash or a Redis outage before it reached the stream.
CREATE TABLE event_outbox (
    -- The stream order: the relay appends rows by seq. Per session (or course) seq
    -- order is commit order: writers of the same key serialise on an advisory lock.
    seq         bigserial PRIMARY KEY,
    -- The envelope's id: the same if a row is appended twice (a relay crash between
    -- XADD and DELETE), so consumers deduplicate on it.
    event_id    text NOT NULL,
    event_type  text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
