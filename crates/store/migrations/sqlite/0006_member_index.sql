-- The latest membership row of a user in a chat (`Tx::membership`, twice
-- per leave) becomes a point lookup instead of a walk over every row the
-- chat ever had; the same index serves the per-chat listings.
CREATE INDEX memberships_member ON memberships(tenant_id, chat_id, user_id, seq);
DROP INDEX memberships_chat;
