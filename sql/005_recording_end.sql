-- How a recording ended (issue 11): `ended_reason` says why it stopped, and for a
-- recording cut by a process that died while recording ('cut'), `cut_at` is the moment
-- its files end (what reached the disk before the cut). Rows from before this
-- migration keep NULL in both.
ALTER TABLE recordings
    ADD COLUMN ended_reason text
        CHECK (ended_reason IN ('stopped', 'session_ended', 'max_length', 'server_stopping',
                                'cut')),
    ADD COLUMN cut_at timestamptz,
    ADD CONSTRAINT recordings_cut_at_only_when_cut
        CHECK (cut_at IS NULL OR ended_reason = 'cut');
