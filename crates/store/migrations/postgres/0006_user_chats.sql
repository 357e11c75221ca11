-- Every chat a person has been a member of, by person, as SQLite has had
-- since its migration 9: Linq's `GET /v3/chats?to=HANDLE` lists the chats
-- where that handle is or was a member. PostgreSQL's index by person
-- (`memberships_user`) holds active memberships only, so former members
-- were found by probing every chat of the tenant, newest first: 565 ms on
-- 10,000 chats for a person in one of them (BENCHMARKS.md, session 10),
-- linear in the tenant's chats.
--
-- Not an index on all memberships: a leave changes the membership's key
-- (`ended`), so such an index would take one more write per leave. A row
-- here is written when a person first joins a chat (with the membership,
-- in the same statement) and never changed.
CREATE TABLE user_chats (
    tenant_id   BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    chat_id     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, chat_id)
);

INSERT INTO user_chats (tenant_id, user_id, chat_id)
SELECT DISTINCT tenant_id, user_id, chat_id FROM memberships;
