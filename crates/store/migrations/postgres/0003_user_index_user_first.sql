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
-- With user_id first, a query that names no user cannot use this index but
-- by reading all of it, which the planner never prefers to the primary key
-- (tenant_id, chat_id, ...); one that names the user, the tenant and the
-- chat finds its row in either index. chat_id last serves the user's chat
-- list in order from the index alone.
DROP INDEX memberships_user;
CREATE INDEX memberships_user ON memberships(user_id, tenant_id, chat_id) WHERE ended = 0;
