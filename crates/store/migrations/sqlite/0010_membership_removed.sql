-- How a membership ended: `removed` is 1 when someone else took the member
-- out, 0 when they left (or are still in). Linq shows each former member
-- as `left` or `removed`; it used to tell them apart by the chat's `left`
-- and `removed` events, which meant walking the chat's events (one per
-- message too) at every render. Written by the update that ends the
-- membership, so a leave or removal writes no more pages.
--
-- Filled from those events, as the render read them: the latest `left` or
-- `removed` event of the member at the time it ended; none counts as
-- removed. One pass over the events (not a lookup per membership, which
-- walked each chat's events, messages included, once per former member):
-- the latest ending per member and time (SQLite takes a bare column from
-- the row of `max(id)`), then the memberships that did not end by a leave.
ALTER TABLE memberships ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;

CREATE TEMP TABLE latest_endings AS
SELECT tenant_id, chat_id, subject_id, at, kind, max(id) AS id
FROM events WHERE kind IN ('left', 'removed')
GROUP BY tenant_id, chat_id, subject_id, at;
CREATE INDEX temp.latest_endings_key ON latest_endings (tenant_id, chat_id, subject_id, at);

UPDATE memberships SET removed = 1
WHERE left_at IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM latest_endings x
      WHERE x.tenant_id = memberships.tenant_id AND x.chat_id = memberships.chat_id
        AND x.subject_id = memberships.user_id AND x.at = memberships.left_at AND x.kind = 'left');

DROP TABLE temp.latest_endings;
