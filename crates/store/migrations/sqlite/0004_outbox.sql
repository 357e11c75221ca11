-- Webhook subscriptions of every face, the outbox of deliveries (one row
-- per event and matching subscription, written in the event's own
-- transaction), every delivery attempt, and asynchronous operations.
CREATE TABLE subscriptions (
    id           TEXT PRIMARY KEY,
    tenant_id    INTEGER NOT NULL,
    face         TEXT NOT NULL,
    target_url   TEXT NOT NULL,
    events       TEXT NOT NULL DEFAULT '[]',   -- the face's own event names, as given
    kinds        TEXT NOT NULL DEFAULT '',     -- core event kinds it wants, space separated; '' = all
    lines        TEXT NOT NULL DEFAULT '',     -- phone-number filter, space separated; '' = all
    subject_id   INTEGER,                      -- only events about this user (Bitrix bot handlers)
    secret       TEXT NOT NULL,
    extra        TEXT NOT NULL DEFAULT '{}',
    active       INTEGER NOT NULL DEFAULT 1,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX subscriptions_tenant ON subscriptions(tenant_id, active);

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id        INTEGER NOT NULL,
    subscription_id  TEXT NOT NULL,
    event_id         INTEGER NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,   -- unix milliseconds
    claimed_until    INTEGER,            -- unix milliseconds; a crashed worker's claim expires
    last_status      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);

CREATE TABLE delivery_attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id    INTEGER NOT NULL,
    attempt      INTEGER NOT NULL,
    at           INTEGER NOT NULL,       -- unix milliseconds
    status_code  INTEGER,
    latency_ms   INTEGER NOT NULL,
    error        TEXT
);
CREATE INDEX delivery_attempts_outbox ON delivery_attempts(outbox_id);

CREATE TABLE operations (
    trace_id       TEXT PRIMARY KEY,
    tenant_id      INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    chat_id        INTEGER NOT NULL,
    handle         TEXT,
    status         TEXT NOT NULL CHECK (status IN ('queued', 'done', 'failed')),
    error          TEXT,
    claimed_until  INTEGER,
    created_at     INTEGER NOT NULL,
    finished_at    INTEGER
);
CREATE INDEX operations_queued ON operations(status, created_at);
