-- A query a burst of mail runs for every message (issue 13). Without this index it was a
-- scan of the whole outbox, whose rows carry the rendered mails: the cost of a reply grew
-- with the campaign. Keep in step with the other backend.

-- The hourly reply ceilings count the replies created since an hour ago, by kind.
CREATE INDEX outbox_created ON outbox (created_at, kind);

