-- confab schema v1 (SQLite). Ids of users, apps, lines and chats are
-- per tenant: every tenant is its own Bitrix portal with its own user 1.
CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE apps (
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    id          INTEGER NOT NULL,
    client_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, client_id)
);

CREATE TABLE users (
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    id          INTEGER NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('person', 'bot', 'line')),
    name        TEXT NOT NULL,
    handle      TEXT,
    active      INTEGER NOT NULL DEFAULT 1,
    app_id      INTEGER,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX users_handle ON users(tenant_id, handle) WHERE handle IS NOT NULL;
CREATE INDEX users_app ON users(tenant_id, app_id) WHERE app_id IS NOT NULL;

CREATE TABLE lines (
    tenant_id     INTEGER NOT NULL REFERENCES tenants(id),
    id            INTEGER NOT NULL,
    phone_number  TEXT NOT NULL,
    user_id       INTEGER NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, phone_number)
);

CREATE TABLE chats (
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    id          INTEGER NOT NULL,
    uuid        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('dm', 'group', 'open_line')),
    network     TEXT NOT NULL CHECK (network IN ('internal', 'imessage')),
    title       TEXT NOT NULL,
    owner_id    INTEGER,
    line_id     INTEGER,
    chat_key    TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- History is kept: leaving sets left_at, rejoining adds a row.
CREATE TABLE memberships (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL,
    chat_id     INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    joined_at   INTEGER NOT NULL,
    left_at     INTEGER
);
CREATE INDEX memberships_chat ON memberships(tenant_id, chat_id);
CREATE UNIQUE INDEX memberships_active ON memberships(tenant_id, chat_id, user_id) WHERE left_at IS NULL;

CREATE TABLE crm_links (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    INTEGER NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    INTEGER NOT NULL,
    chat_id      INTEGER NOT NULL,
    UNIQUE (tenant_id, entity_type, entity_id, chat_id)
);

CREATE TABLE messages (
    tenant_id   INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    uuid        TEXT NOT NULL UNIQUE,
    chat_id     INTEGER NOT NULL,
    author_id   INTEGER NOT NULL,
    text        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX messages_chat ON messages(tenant_id, chat_id, id);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid        TEXT NOT NULL UNIQUE,
    tenant_id   INTEGER NOT NULL,
    chat_id     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    actor_id    INTEGER,
    subject_id  INTEGER,
    message_id  INTEGER,
    trace_id    TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX events_chat ON events(tenant_id, chat_id, id);

CREATE TABLE credentials (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    INTEGER NOT NULL REFERENCES tenants(id),
    kind         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    secret       TEXT,
    user_id      INTEGER,
    app_id       INTEGER,
    scopes       TEXT NOT NULL DEFAULT '',
    expires_at   INTEGER,
    label        TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    UNIQUE (kind, secret_hash)
);
CREATE INDEX credentials_tenant ON credentials(tenant_id, kind);

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
