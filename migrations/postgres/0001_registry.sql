-- The registry on PostgreSQL: the same tables and rules as migrations/sqlite, in one schema.
-- Ids are lower-case hyphenated GUIDs stored as text (the adapters bind them as strings on both
-- backends); resource keys are lower-cased ARM ids. `created_at` uses clock_timestamp(), so rows
-- written by one transaction still order as they were inserted.

-- Every write to the registry takes this transaction-scoped advisory lock before it changes
-- anything (the adapter takes it first; the change triggers take it again as a safety net for
-- writers that did not). Writers therefore commit one at a time, and change-log sequence numbers
-- become visible in order: a reader that has seen change N has seen every change before N.
CREATE FUNCTION ficus_registry_write_lock() RETURNS void LANGUAGE sql AS
$$ SELECT pg_advisory_xact_lock(7046029254386353131) $$;

CREATE TABLE tenants (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL CONSTRAINT tenants_name_key UNIQUE,
    display_name TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE subscriptions (
    id        TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE
);

CREATE TABLE applications (
    object_id    TEXT PRIMARY KEY,
    app_id       TEXT NOT NULL UNIQUE,
    sp_id        TEXT NOT NULL UNIQUE,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    display_name TEXT NOT NULL,
    -- Its own token-request limit ("500/s", "30/min", "off"); NULL for the configured one.
    rate_limit   TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX applications_by_tenant ON applications(tenant_id);

CREATE TABLE identifier_uris (
    tenant_id      TEXT NOT NULL,
    uri_key        TEXT NOT NULL,
    uri            TEXT NOT NULL,
    application_id TEXT NOT NULL REFERENCES applications(object_id) ON DELETE CASCADE,
    CONSTRAINT identifier_uris_pkey PRIMARY KEY (tenant_id, uri_key)
);
CREATE INDEX identifier_uris_by_application ON identifier_uris(application_id);

CREATE TABLE app_roles (
    id             TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(object_id) ON DELETE CASCADE,
    value          TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    description    TEXT NOT NULL,
    UNIQUE (application_id, value)
);

CREATE TABLE client_secrets (
    id             TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(object_id) ON DELETE CASCADE,
    secret_sha256  TEXT NOT NULL,
    hint           TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX client_secrets_by_application ON client_secrets(application_id);

CREATE TABLE compute_resources (
    resource_key    TEXT PRIMARY KEY,
    resource_id     TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('VirtualMachine', 'WebApp', 'WebAppSlot')),
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id),
    -- The App Service `X-IDENTITY-HEADER` secret; NULL while the resource has no identity.
    identity_header TEXT CONSTRAINT compute_resources_identity_header_key UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE managed_identities (
    principal_id        TEXT PRIMARY KEY,
    client_id           TEXT NOT NULL UNIQUE,
    tenant_id           TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    resource_id         TEXT NOT NULL,
    resource_key        TEXT NOT NULL UNIQUE,
    -- Set for a system-assigned identity: it dies with its resource.
    system_resource_key TEXT UNIQUE REFERENCES compute_resources(resource_key) ON DELETE CASCADE,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE identity_assignments (
    resource_key TEXT NOT NULL REFERENCES compute_resources(resource_key) ON DELETE CASCADE,
    principal_id TEXT NOT NULL REFERENCES managed_identities(principal_id) ON DELETE CASCADE,
    PRIMARY KEY (resource_key, principal_id)
);
CREATE INDEX identity_assignments_by_identity ON identity_assignments(principal_id);

-- Which network addresses a compute resource calls from (one resource per network).
CREATE TABLE resource_addresses (
    network      TEXT CONSTRAINT resource_addresses_pkey PRIMARY KEY,
    resource_key TEXT NOT NULL REFERENCES compute_resources(resource_key) ON DELETE CASCADE
);
CREATE INDEX resource_addresses_by_resource ON resource_addresses(resource_key);

CREATE TABLE federated_credentials (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY,
    id             TEXT PRIMARY KEY,
    application_id TEXT REFERENCES applications(object_id) ON DELETE CASCADE,
    identity_id    TEXT REFERENCES managed_identities(principal_id) ON DELETE CASCADE,
    owner_id       TEXT NOT NULL,
    name           TEXT NOT NULL,
    issuer         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    audience       TEXT NOT NULL,
    description    TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CHECK ((application_id IS NULL) <> (identity_id IS NULL)),
    CHECK (owner_id = coalesce(application_id, identity_id)),
    CONSTRAINT federated_credentials_name_key UNIQUE (owner_id, name),
    CONSTRAINT federated_credentials_issuer_subject_key UNIQUE (owner_id, issuer, subject)
);

-- The 20-per-owner limit, enforced by the database whatever the interleaving of writers and
-- replicas: the owner's row is locked first, so concurrent inserts for one owner queue here, and
-- each counts (with a fresh snapshot, under READ COMMITTED) after the previous one committed.
CREATE FUNCTION federated_credentials_limit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.application_id IS NOT NULL THEN
        PERFORM 1 FROM applications WHERE object_id = NEW.application_id FOR UPDATE;
    ELSE
        PERFORM 1 FROM managed_identities WHERE principal_id = NEW.identity_id FOR UPDATE;
    END IF;
    IF (SELECT count(*) FROM federated_credentials WHERE owner_id = NEW.owner_id) >= 20 THEN
        RAISE EXCEPTION 'federated credential limit reached'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'federated_credentials_limit';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER federated_credentials_limit BEFORE INSERT ON federated_credentials
    FOR EACH ROW EXECUTE FUNCTION federated_credentials_limit();

CREATE TABLE role_assignments (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    principal_id       TEXT NOT NULL,
    principal_app_sp   TEXT REFERENCES applications(sp_id) ON DELETE CASCADE,
    principal_identity TEXT REFERENCES managed_identities(principal_id) ON DELETE CASCADE,
    resource_sp_id     TEXT NOT NULL REFERENCES applications(sp_id) ON DELETE CASCADE,
    app_role_id        TEXT NOT NULL REFERENCES app_roles(id) ON DELETE CASCADE,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CHECK ((principal_app_sp IS NULL) <> (principal_identity IS NULL)),
    CHECK (principal_id = coalesce(principal_app_sp, principal_identity)),
    CONSTRAINT role_assignments_principal_role_key UNIQUE (principal_id, app_role_id)
);

-- A role assignment names an app role that its resource application defines. The foreign keys
-- take share locks on the rows they name, so a concurrent delete of the resource waits for this
-- insert (and cascades to it) or makes it fail.
CREATE FUNCTION role_assignments_role_of_resource() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM app_roles r JOIN applications a ON a.object_id = r.application_id
        WHERE r.id = NEW.app_role_id AND a.sp_id = NEW.resource_sp_id
    ) THEN
        RAISE EXCEPTION 'app role not defined by the resource application'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'role_assignments_role_of_resource';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER role_assignments_role_of_resource BEFORE INSERT ON role_assignments
    FOR EACH ROW EXECUTE FUNCTION role_assignments_role_of_resource();

CREATE TABLE activity_log (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    time_us     BIGINT NOT NULL,
    tenant_id   TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    operation   TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target      TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    reason      TEXT NOT NULL
);
CREATE INDEX activity_log_by_tenant ON activity_log(tenant_id, seq);
CREATE INDEX activity_log_by_target ON activity_log(tenant_id, lower(target), seq);

CREATE TABLE sign_ins (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    time_us        BIGINT NOT NULL,
    tenant_id      TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('managedIdentity', 'application')),
    principal_id   TEXT,
    client_id      TEXT,
    resource       TEXT NOT NULL,
    caller_address TEXT NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    error_code     TEXT NOT NULL,
    reason         TEXT NOT NULL,
    latency_us     BIGINT NOT NULL,
    cached         BOOLEAN NOT NULL,
    count          INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX sign_ins_by_tenant ON sign_ins(tenant_id, seq);
CREATE INDEX sign_ins_by_principal ON sign_ins(tenant_id, principal_id, seq);

-- The directory change log: every committed change to the registry appends (kind, key) rows,
-- written by triggers in the writing transaction itself, and wakes every replica listening on
-- the `ficus_directory` channel when the transaction commits. A replica applies the changes after
-- its cursor to its in-memory snapshot, reloading only the entities named.
CREATE TABLE directory_changes (
    seq  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    key  TEXT NOT NULL
);

-- Changes at or before `through` have been pruned: a reader behind it reloads everything.
CREATE TABLE directory_changes_pruned (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    through BIGINT NOT NULL
);
INSERT INTO directory_changes_pruned (id, through) VALUES (1, 0);

-- directory_changed(kind, key column): appends the old and the new key of the changed row.
CREATE FUNCTION directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_key TEXT;
    new_key TEXT;
BEGIN
    PERFORM ficus_registry_write_lock();
    IF TG_OP <> 'INSERT' THEN
        old_key := to_jsonb(OLD) ->> TG_ARGV[1];
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_key := to_jsonb(NEW) ->> TG_ARGV[1];
    END IF;
    IF old_key IS NOT NULL THEN
        INSERT INTO directory_changes (kind, key) VALUES (TG_ARGV[0], old_key);
    END IF;
    IF new_key IS NOT NULL AND new_key IS DISTINCT FROM old_key THEN
        INSERT INTO directory_changes (kind, key) VALUES (TG_ARGV[0], new_key);
    END IF;
    -- Delivered once per transaction, at commit (identical payloads are folded).
    PERFORM pg_notify('ficus_directory', '');
    RETURN NULL;
END $$;

CREATE TRIGGER tenants_changed AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION directory_changed('tenant', 'id');
CREATE TRIGGER subscriptions_changed AFTER INSERT OR UPDATE OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION directory_changed('subscription', 'id');
CREATE TRIGGER applications_changed AFTER INSERT OR UPDATE OR DELETE ON applications
    FOR EACH ROW EXECUTE FUNCTION directory_changed('application', 'object_id');
CREATE TRIGGER identifier_uris_changed AFTER INSERT OR UPDATE OR DELETE ON identifier_uris
    FOR EACH ROW EXECUTE FUNCTION directory_changed('application', 'application_id');
CREATE TRIGGER app_roles_changed AFTER INSERT OR UPDATE OR DELETE ON app_roles
    FOR EACH ROW EXECUTE FUNCTION directory_changed('application', 'application_id');
CREATE TRIGGER client_secrets_changed AFTER INSERT OR UPDATE OR DELETE ON client_secrets
    FOR EACH ROW EXECUTE FUNCTION directory_changed('application', 'application_id');
CREATE TRIGGER federated_credentials_changed AFTER INSERT OR UPDATE OR DELETE ON federated_credentials
    FOR EACH ROW EXECUTE FUNCTION directory_changed('credentials', 'owner_id');
CREATE TRIGGER managed_identities_changed AFTER INSERT OR UPDATE OR DELETE ON managed_identities
    FOR EACH ROW EXECUTE FUNCTION directory_changed('identity', 'principal_id');
-- A system-assigned identity is part of its compute resource's view.
CREATE TRIGGER managed_identities_changed_resource AFTER INSERT OR UPDATE OR DELETE ON managed_identities
    FOR EACH ROW EXECUTE FUNCTION directory_changed('resource', 'system_resource_key');
CREATE TRIGGER compute_resources_changed AFTER INSERT OR UPDATE OR DELETE ON compute_resources
    FOR EACH ROW EXECUTE FUNCTION directory_changed('resource', 'resource_key');
CREATE TRIGGER resource_addresses_changed AFTER INSERT OR UPDATE OR DELETE ON resource_addresses
    FOR EACH ROW EXECUTE FUNCTION directory_changed('resource', 'resource_key');
CREATE TRIGGER identity_assignments_changed AFTER INSERT OR UPDATE OR DELETE ON identity_assignments
    FOR EACH ROW EXECUTE FUNCTION directory_changed('resource', 'resource_key');
CREATE TRIGGER role_assignments_changed AFTER INSERT OR UPDATE OR DELETE ON role_assignments
    FOR EACH ROW EXECUTE FUNCTION directory_changed('role_assignment', 'id');
