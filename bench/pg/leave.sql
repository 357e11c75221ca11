\set c random(1, 10000)
\set u random(1, 20)
BEGIN;
UPDATE memberships SET left_at = 1 WHERE tenant_id = 1 AND chat_id = :c AND user_id = :u AND left_at IS NULL;
INSERT INTO events (uuid, tenant_id, chat_id, kind, actor_id, subject_id, at) VALUES (gen_random_uuid()::text, 1, :c, 'left', :u, :u, 1) ;
INSERT INTO outbox (tenant_id, subscription_id, event_id, next_attempt_at, created_at, updated_at) VALUES (1, 'sub', currval(pg_get_serial_sequence('events', 'id')), 0, 0, 0);
COMMIT;
