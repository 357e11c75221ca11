-- How a membership ended: `removed` is TRUE when someone else took the
-- member out, FALSE when they left (or are still in). Linq shows each
-- former member as `left` or `removed`; it used to tell them apart by the
-- chat's `left` and `removed` events, which meant walking the chat's
-- events (one per message too) at every render. Written by the statement
-- that ends the membership.
--
-- Filled from those events, as the render read them: the latest `left` or
-- `removed` event of the member at the time it ended; none counts as
-- removed. One pass over the events (not a lookup per membership, which
-- walked each chat's events, messages included, once per former member).
ALTER TABLE memberships ADD COLUMN removed BOOLEAN NOT NULL DEFAULT FALSE;

UPDATE memberships m SET removed = TRUE
WHERE m.left_at IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM (
          SELECT DISTINCT ON (tenant_id, chat_id, subject_id, at) tenant_id, chat_id, subject_id, at, kind
          FROM events WHERE kind IN ('left', 'removed')
          ORDER BY tenant_id, chat_id, subject_id, at, id DESC
      ) latest
      WHERE latest.tenant_id = m.tenant_id AND latest.chat_id = m.chat_id
        AND latest.subject_id = m.user_id AND latest.at = m.left_at AND latest.kind = 'left');
