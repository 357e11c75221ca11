-- Memberships clustered by chat, and the active membership guarded by the
-- table's own key instead of a partial unique index.
--
-- The key is (tenant, chat, user, ended): `ended` is 0 while the membership
-- is active and the membership's `seq` once it is closed. So at most one
-- active row per person and chat is the primary key itself, and a leave
-- rewrites one row in place (its old and new keys are neighbours on the same
-- page) instead of changing a rowid table's row and a separate index: a
-- scattered leave dirties one page fewer.
--
-- `seq` orders memberships within their chat (oldest first); it is no longer
-- global. The chat row hands out the next one (`member_seq`), in the update
-- that already keeps its active count.
ALTER TABLE chats ADD COLUMN member_seq INTEGER NOT NULL DEFAULT 0;

CREATE TABLE memberships_by_chat (
    tenant_id   INTEGER NOT NULL,
    chat_id     INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    ended       INTEGER NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq > 0),
    role        TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    joined_at   INTEGER NOT NULL,
    left_at     INTEGER,
    PRIMARY KEY (tenant_id, chat_id, user_id, ended),
    CHECK ((ended = 0 AND left_at IS NULL) OR (ended = seq AND left_at IS NOT NULL))
) WITHOUT ROWID;

INSERT INTO memberships_by_chat (tenant_id, chat_id, user_id, ended, seq, role, joined_at, left_at)
SELECT tenant_id, chat_id, user_id, CASE WHEN left_at IS NULL THEN 0 ELSE n END, n, role, joined_at, left_at
FROM (
    SELECT m.*, row_number() OVER (PARTITION BY tenant_id, chat_id ORDER BY seq) AS n
    FROM memberships m
);

UPDATE chats SET member_seq = (
    SELECT COUNT(*) FROM memberships_by_chat m WHERE m.tenant_id = chats.tenant_id AND m.chat_id = chats.id
);

DROP TABLE memberships;
ALTER TABLE memberships_by_chat RENAME TO memberships;
