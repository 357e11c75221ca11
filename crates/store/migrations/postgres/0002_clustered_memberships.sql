-- Memberships keyed by (tenant, chat, user, ended), as on SQLite (see
-- migrations/sqlite/0008_clustered_memberships.sql): `ended` is 0 while the
-- membership is active and its `seq` once closed, so the primary key is the
-- guard against anyone being active twice, and `seq` orders memberships
-- within their chat. The chat row hands out the next `seq` (`member_seq`).
ALTER TABLE chats ADD COLUMN member_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE memberships_by_chat (
    tenant_id   BIGINT NOT NULL,
    chat_id     BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    ended       BIGINT NOT NULL,
    seq         BIGINT NOT NULL CHECK (seq > 0),
    role        TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    joined_at   BIGINT NOT NULL,
    left_at     BIGINT,
    CONSTRAINT memberships_key PRIMARY KEY (tenant_id, chat_id, user_id, ended),
    CONSTRAINT memberships_ended CHECK ((ended = 0 AND left_at IS NULL) OR (ended = seq AND left_at IS NOT NULL))
);

INSERT INTO memberships_by_chat (tenant_id, chat_id, user_id, ended, seq, role, joined_at, left_at)
SELECT tenant_id, chat_id, user_id, CASE WHEN left_at IS NULL THEN 0 ELSE n END, n, role, joined_at, left_at
FROM (
    SELECT m.*, row_number() OVER (PARTITION BY tenant_id, chat_id ORDER BY seq) AS n
    FROM memberships m
) numbered;

UPDATE chats SET member_seq = (
    SELECT COUNT(*) FROM memberships_by_chat m WHERE m.tenant_id = chats.tenant_id AND m.chat_id = chats.id
);

DROP TABLE memberships;
ALTER TABLE memberships_by_chat RENAME TO memberships;
-- The chats a person is in (the user's chat list).
CREATE INDEX memberships_user ON memberships(tenant_id, user_id) WHERE ended = 0;
