-- Bitrix bots keep their registration (CODE unique per portal, TYPE,
-- OPENLINE, event handler URLs as JSON); chats can be bound to a free
-- entity (im.chat.add / imbot.chat.add ENTITY_TYPE + ENTITY_ID).
ALTER TABLE users ADD COLUMN bot_code TEXT;
ALTER TABLE users ADD COLUMN bot_meta TEXT;
CREATE UNIQUE INDEX users_bot_code ON users(tenant_id, bot_code) WHERE bot_code IS NOT NULL;

CREATE TABLE chat_bindings (
    tenant_id    INTEGER NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    chat_id      INTEGER NOT NULL,
    seq          INTEGER PRIMARY KEY AUTOINCREMENT
);
CREATE INDEX chat_bindings_entity ON chat_bindings(tenant_id, entity_type, entity_id);
