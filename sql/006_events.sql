-- Events out (issue 17): webhook endpoints registered by admins, the log of every
-- delivery attempt (with a dead-letter record, payload included, after the last one),
-- and participation counters per participant and session.
CREATE TABLE webhook_endpoints (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    url          text NOT NULL CHECK (length(url) <= 2000),
    secret       text NOT NULL,
    -- Event types delivered to it; empty: every type.
    event_types  text[] NOT NULL DEFAULT '{}',
    description  text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    enabled      boolean NOT NULL DEFAULT true,
    created_by   uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    endpoint_id  uuid NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id     text NOT NULL,
    event_type   text NOT NULL,
    attempt      integer NOT NULL CHECK (attempt >= 1),
    -- delivered: 2xx; failed: will be retried; dead: the last attempt failed (or the
    -- endpoint's backlog was full) and `payload` keeps the event for a replay.
    outcome      text NOT NULL CHECK (outcome IN ('delivered', 'failed', 'dead')),
    status_code  integer,
    error        text,
    duration_ms  integer NOT NULL DEFAULT 0,
    payload      jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (payload IS NULL OR outcome = 'dead')
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, created_at, id);

CREATE TABLE session_participation (
    session_id    uuid NOT NULL REFERENCES live_sessions(id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    talk_ms       bigint NOT NULL DEFAULT 0 CHECK (talk_ms >= 0),
    turns         integer NOT NULL DEFAULT 0 CHECK (turns >= 0),
    hands_raised  integer NOT NULL DEFAULT 0 CHECK (hands_raised >= 0),
    PRIMARY KEY (session_id, user_id)
);
CREATE INDEX webhook_endpoints_created_by ON webhook_endpoints (created_by);
CREATE INDEX session_participation_user ON session_participation (user_id);
