-- How a membership ended: `removed` is 1 when someone else took the member
-- out, 0 when they left (or are still in). Linq shows each former member
-- as `left` or `removed`; it used to tell them apart by the chat's `left`
-- and `removed` events, which meant walking the chat's events (one per
-- message too) at every render. Written by the update that ends the
-- membership, so a leave or removal writes no more pages.
--
-- Filled from those events, as the render read them: the latest `left` or
-- `removed` event of the member at the time it ended; none counts as
-- removed.
ALTER TABLE memberships ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;

UPDATE memberships SET removed = 1
WHERE left_at IS NOT NULL
  AND COALESCE((SELECT e.kind FROM events e
                WHERE e.tenant_id = memberships.tenant_id AND e.chat_id = memberships.chat_id
                  AND e.subject_id = memberships.user_id AND e.at = memberships.left_at
                  AND e.kind IN ('left', 'removed')
                ORDER BY e.id DESC LIMIT 1), 'removed') = 'removed';
