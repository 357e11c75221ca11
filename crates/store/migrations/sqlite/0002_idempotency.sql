-- Idempotency keys (Chert `message.idempotency_key`, later Linq): the
-- response of the first request is kept with a hash of its body, in the
-- same transaction as the command it answered.
CREATE TABLE idempotency_keys (
    tenant_id    INTEGER NOT NULL,
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    body_hash    TEXT NOT NULL,
    response     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, scope, key)
);
