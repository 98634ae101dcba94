-- Accounts (issue 11): one-time password-reset links. Only a SHA-256 of the token is
-- kept, so a copy of the database cannot be used to reset anyone's password.
CREATE TABLE password_resets (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- the admin who issued the link; NULL when the user asked for it by e-mail
    created_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX password_resets_user_idx ON password_resets (user_id);
CREATE INDEX password_resets_created_by_idx ON password_resets (created_by);
