-- Which ended sessions have had their session.summary event written (issue 17): the
-- summary and this row commit together, once per session, whichever node writes it;
-- a node that finds an ended session without a row (its ender died before writing the
-- summary) writes it late.
CREATE TABLE session_summaries (
    session_id  uuid PRIMARY KEY REFERENCES live_sessions(id) ON DELETE CASCADE,
    sent_at     timestamptz NOT NULL DEFAULT now()
);
-- Sessions that ended before this migration had theirs (or never will): not late ones.
INSERT INTO session_summaries (session_id) SELECT id FROM live_sessions WHERE status = 'ended';
