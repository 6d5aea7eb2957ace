-- Documents are soft-deleted (restorable for a while), and the two hot lookups get indexes:
-- "my organisations" (members by user) and "recent live documents of an organisation".

ALTER TABLE app.documents ADD COLUMN deleted_at timestamptz;

CREATE INDEX members_user_id_idx ON app.members (user_id);

CREATE INDEX documents_org_recent_idx
    ON app.documents (org_id, updated_at DESC)
    WHERE deleted_at IS NULL;
