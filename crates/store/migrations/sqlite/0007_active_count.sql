-- Each chat keeps its number of active members, maintained in the same
-- transaction as every membership change, so the size rules read one row
-- instead of counting a large group's members on every leave.
ALTER TABLE chats ADD COLUMN active_count INTEGER NOT NULL DEFAULT 0;
UPDATE chats SET active_count = (
    SELECT COUNT(*) FROM memberships m
    WHERE m.tenant_id = chats.tenant_id AND m.chat_id = chats.id AND m.left_at IS NULL
);
