-- The application's schema in every tenant database: organisations, their members and documents.
-- Every tenant-scoped table carries org_id so row-level security policies can key on it later.
-- Applied by tenantflow as the tenant's owner role, so the tenant owns these objects.

CREATE SCHEMA app;

CREATE TABLE app.organizations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE app.members (
    org_id      uuid NOT NULL REFERENCES app.organizations (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL,
    role        text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE app.documents (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      uuid NOT NULL REFERENCES app.organizations (id) ON DELETE CASCADE,
    owner_id    uuid NOT NULL,
    title       text NOT NULL,
    body        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
