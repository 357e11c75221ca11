-- State that several nodes must share on PostgreSQL, kept in the same
-- shape here so that one implementation serves both stores: leaky buckets
-- (Bitrix portal limit), sliding windows (Linq pair limit) and signatures
-- already seen (Chert replay protection).
CREATE TABLE rate_buckets (
    key         TEXT PRIMARY KEY,
    level       REAL NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE rate_hits (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    key     TEXT NOT NULL,
    at_ms   INTEGER NOT NULL
);
CREATE INDEX rate_hits_key ON rate_hits(key, at_ms);
CREATE TABLE replay_nonces (
    key         TEXT PRIMARY KEY,
    expires_at  INTEGER NOT NULL
);
