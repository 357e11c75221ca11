-- The chats a person is in, keyed by the person first.
--
-- Keyed (tenant_id, user_id) before, the index could serve a lookup by
-- chat through its tenant column alone, and PostgreSQL took it whenever it
-- believed the tenant small: a tenant newer than the table's statistics is
-- estimated at one row. A new tenant's leave then read every active
-- membership of the leaver (10,000 in the benchmark's world) to find one
-- chat's, and listing a chat's members read every active membership of the
-- tenant, until the next ANALYZE replanned them; connections keep their
-- plans, so a busy pool could keep the bad ones.
--
-- With user_id first, a query that names no user can use this index only
-- by reading all of it (or, from PostgreSQL 18, by skipping through every
-- user), which costs more than the primary key's (tenant_id, chat_id, ...)
-- for any estimate; one that names the user, the tenant and the chat finds
-- its row in either index. chat_id last serves the user's chat list in
-- order from the index alone.
--
-- Built under a new name before the old index goes: other nodes can read
-- memberships during the build (writes wait for it, as for any CREATE
-- INDEX), and the DROP's exclusive lock is held only to the commit.
CREATE INDEX memberships_user_by_user ON memberships(user_id, tenant_id, chat_id) WHERE ended = 0;
DROP INDEX memberships_user;
ALTER INDEX memberships_user_by_user RENAME TO memberships_user;
