-- How a membership ended: `removed` is TRUE when someone else took the
-- member out, FALSE when they left (or are still in). Linq shows each
-- former member as `left` or `removed`; it used to tell them apart by the
-- chat's `left` and `removed` events, which meant walking the chat's
-- events (one per message too) at every render. Written by the statement
-- that ends the membership.
--
-- Filled from those events, as the render read them: the latest `left` or
-- `removed` event of the member at the time it ended; none counts as
-- removed.
ALTER TABLE memberships ADD COLUMN removed BOOLEAN NOT NULL DEFAULT FALSE;

UPDATE memberships m SET removed = TRUE
WHERE m.left_at IS NOT NULL
  AND COALESCE((SELECT e.kind FROM events e
                WHERE e.tenant_id = m.tenant_id AND e.chat_id = m.chat_id
                  AND e.subject_id = m.user_id AND e.at = m.left_at
                  AND e.kind IN ('left', 'removed')
                ORDER BY e.id DESC LIMIT 1), 'removed') = 'removed';
