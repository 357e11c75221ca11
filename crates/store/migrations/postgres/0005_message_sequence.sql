-- Message ids from a sequence instead of MAX(id) + 1 under an advisory
-- lock per tenant: that lock was held until COMMIT, so every message of a
-- tenant waited for the one before it to commit (about 2,000 messages a
-- second per tenant, whatever the machine; BENCHMARKS.md, session 13).
-- Ids stay unique within a tenant (they are unique overall) and, drawn
-- after the chat's row lock, increase in commit order within a chat; a
-- tenant's ids are no longer consecutive. Owned by the column, so
-- `confab migrate-data` finds it and continues it after copied ids.
CREATE SEQUENCE messages_id_seq OWNED BY messages.id;
SELECT setval('messages_id_seq', COALESCE((SELECT MAX(id) FROM messages), 0) + 1, false);
