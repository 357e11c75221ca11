-- Every chat a person has been a member of, by person: the chats a person
-- is in (a user's chat list, the chats a deleted bot leaves, an iMessage
-- DM between a line and a handle) without reading every membership of
-- every chat. Before, `GET /v1/chats` took 110 ms on 2,000,000 memberships,
-- linear in the table.
--
-- Not an index on memberships: its entries would carry the membership's
-- key, `ended` included, so every leave would rewrite one more page, in
-- an order of its own (by person); scattered leaves ran 13 to 44 % slower
-- with it. A row here is written when a person first joins a chat and
-- never changed; a lookup checks each chat's active membership by key.
-- (PostgreSQL keeps its partial index: an update there leaves a partial
-- index its row no longer matches untouched.)
CREATE TABLE user_chats (
    tenant_id   INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    chat_id     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id, chat_id)
) WITHOUT ROWID;

INSERT INTO user_chats (tenant_id, user_id, chat_id)
SELECT DISTINCT tenant_id, user_id, chat_id FROM memberships;
