\set c random(1, 10000)
\set u random(2, 20)
START TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE;
SELECT tenant_id, id, uuid, kind, network, title, owner_id, line_id, chat_key, created_at, active_count, (SELECT l.phone_number FROM lines l WHERE l.tenant_id = chats.tenant_id AND l.id = chats.line_id) FROM chats WHERE tenant_id = 1 AND id = :c FOR UPDATE OF chats;
SELECT m.*, u.*, nextval('events_id_seq') AS evid, s.id, s.tenant_id, s.face, s.target_url, s.events, s.kinds, s.lines, s.subject_id, s.secret, s.extra, s.active, s.created_at, s.updated_at FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT chat_id, user_id, role, joined_at, left_at FROM memberships WHERE tenant_id = 1 AND chat_id = :c AND user_id = :u ORDER BY seq DESC LIMIT 1) m ON true LEFT JOIN LATERAL (SELECT tenant_id, id, kind, name, handle, active, app_id FROM users WHERE tenant_id = 1 AND id = :u) u ON true LEFT JOIN subscriptions s ON s.tenant_id = 1 AND s.active = TRUE
\gset
WITH closed AS (UPDATE memberships SET ended = seq, left_at = 1796312821 WHERE tenant_id = 1 AND chat_id = :c AND user_id = :u AND ended = 0 RETURNING 1) UPDATE chats SET active_count = active_count - (SELECT count(*) FROM closed) WHERE tenant_id = 1 AND id = :c;
INSERT INTO events (uuid, tenant_id, chat_id, kind, actor_id, subject_id, message_id, trace_id, at, id) VALUES (gen_random_uuid()::text, 1, :c, 'left', :u, :u, NULL, NULL, 1796312821, :evid);
COMMIT;
