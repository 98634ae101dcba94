-- Webhook signing secrets encrypted at rest (AES-256-GCM, a key from the configuration:
-- vtp/events/secret_box.py). `secret_sealed` holds them from now on. `secret`, the plain
-- text of endpoints registered before, is sealed and emptied by the app when it starts
-- (and by `vtp migrate`): SQL has no access to the key.
ALTER TABLE webhook_endpoints ADD COLUMN secret_sealed text;
ALTER TABLE webhook_endpoints ALTER COLUMN secret DROP NOT NULL;
ALTER TABLE webhook_endpoints ADD CONSTRAINT webhook_endpoints_has_a_secret
    CHECK (secret IS NOT NULL OR secret_sealed IS NOT NULL);
