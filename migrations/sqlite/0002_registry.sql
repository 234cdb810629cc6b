-- The registry: subscriptions, applications (with their service principal), identifier URIs,
-- app roles, client secrets, managed identities, compute resources and their identity
-- assignments, federated identity credentials, role assignments and the activity log.
-- Ids are lower-case hyphenated GUIDs; resource keys are lower-cased ARM ids.

CREATE TABLE subscriptions (
    id        TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE
) STRICT;

CREATE TABLE applications (
    object_id    TEXT PRIMARY KEY NOT NULL,
    app_id       TEXT NOT NULL UNIQUE,
    sp_id        TEXT NOT NULL UNIQUE,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    display_name TEXT NOT NULL,
    created_at   TEXT NOT NULL
) STRICT;
CREATE INDEX applications_by_tenant ON applications(tenant_id);

CREATE TABLE identifier_uris (
    tenant_id      TEXT NOT NULL,
    uri_key        TEXT NOT NULL,
    uri            TEXT NOT NULL,
    application_id TEXT NOT NULL REFERENCES applications(object_id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, uri_key)
) STRICT;
CREATE INDEX identifier_uris_by_application ON identifier_uris(application_id);

CREATE TABLE app_roles (
    id             TEXT PRIMARY KEY NOT NULL,
    application_id TEXT NOT NULL REFERENCES applications(object_id) ON DELETE CASCADE,
    value          TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    description    TEXT NOT NULL,
    UNIQUE (application_id, value)
) STRICT;

CREATE TABLE client_secrets (
    id             TEXT PRIMARY KEY NOT NULL,
    application_id TEXT NOT NULL REFERENCES applications(object_id) ON DELETE CASCADE,
    secret_sha256  TEXT NOT NULL,
    hint           TEXT NOT NULL,
    created_at     TEXT NOT NULL
) STRICT;

CREATE TABLE compute_resources (
    resource_key    TEXT PRIMARY KEY NOT NULL,
    resource_id     TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('VirtualMachine', 'WebApp', 'WebAppSlot')),
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id),
    created_at      TEXT NOT NULL
) STRICT;

CREATE TABLE managed_identities (
    principal_id        TEXT PRIMARY KEY NOT NULL,
    client_id           TEXT NOT NULL UNIQUE,
    tenant_id           TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    resource_id         TEXT NOT NULL,
    resource_key        TEXT NOT NULL UNIQUE,
    -- Set for a system-assigned identity: it dies with its resource.
    system_resource_key TEXT UNIQUE REFERENCES compute_resources(resource_key) ON DELETE CASCADE,
    created_at          TEXT NOT NULL
) STRICT;

CREATE TABLE identity_assignments (
    resource_key TEXT NOT NULL REFERENCES compute_resources(resource_key) ON DELETE CASCADE,
    principal_id TEXT NOT NULL REFERENCES managed_identities(principal_id) ON DELETE CASCADE,
    PRIMARY KEY (resource_key, principal_id)
) STRICT;
CREATE INDEX identity_assignments_by_identity ON identity_assignments(principal_id);

CREATE TABLE federated_credentials (
    id             TEXT PRIMARY KEY NOT NULL,
    application_id TEXT REFERENCES applications(object_id) ON DELETE CASCADE,
    identity_id    TEXT REFERENCES managed_identities(principal_id) ON DELETE CASCADE,
    owner_id       TEXT NOT NULL,
    name           TEXT NOT NULL,
    issuer         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    audience       TEXT NOT NULL,
    description    TEXT,
    created_at     TEXT NOT NULL,
    CHECK ((application_id IS NULL) <> (identity_id IS NULL)),
    CHECK (owner_id = coalesce(application_id, identity_id)),
    UNIQUE (owner_id, name),
    UNIQUE (owner_id, issuer, subject)
) STRICT;

-- The 20-per-owner limit, enforced by the database whatever the interleaving of writers.
CREATE TRIGGER federated_credentials_limit
BEFORE INSERT ON federated_credentials
WHEN (SELECT count(*) FROM federated_credentials WHERE owner_id = NEW.owner_id) >= 20
BEGIN
    SELECT RAISE(ABORT, 'federated credential limit reached');
END;

CREATE TABLE role_assignments (
    id                 TEXT PRIMARY KEY NOT NULL,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    principal_id       TEXT NOT NULL,
    principal_app_sp   TEXT REFERENCES applications(sp_id) ON DELETE CASCADE,
    principal_identity TEXT REFERENCES managed_identities(principal_id) ON DELETE CASCADE,
    resource_sp_id     TEXT NOT NULL REFERENCES applications(sp_id) ON DELETE CASCADE,
    app_role_id        TEXT NOT NULL REFERENCES app_roles(id) ON DELETE CASCADE,
    created_at         TEXT NOT NULL,
    CHECK ((principal_app_sp IS NULL) <> (principal_identity IS NULL)),
    CHECK (principal_id = coalesce(principal_app_sp, principal_identity)),
    UNIQUE (principal_id, app_role_id)
) STRICT;

CREATE TABLE activity_log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    time_us     INTEGER NOT NULL,
    tenant_id   TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    operation   TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target      TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    reason      TEXT NOT NULL
) STRICT;
CREATE INDEX activity_log_by_tenant ON activity_log(tenant_id, seq);
CREATE INDEX activity_log_by_target ON activity_log(tenant_id, target, seq);

-- A role assignment names an app role that its resource application defines.
CREATE TRIGGER role_assignments_role_of_resource
BEFORE INSERT ON role_assignments
WHEN NOT EXISTS (
    SELECT 1 FROM app_roles r JOIN applications a ON a.object_id = r.application_id
    WHERE r.id = NEW.app_role_id AND a.sp_id = NEW.resource_sp_id
)
BEGIN
    SELECT RAISE(ABORT, 'app role not defined by the resource application');
END;
