-- Managed-identity endpoints: which network addresses a compute resource calls from (IMDS picks
-- the resource by the caller's address), the per-resource App Service identity header, and the
-- sign-in log.

CREATE TABLE resource_addresses (
    network      TEXT PRIMARY KEY NOT NULL,   -- canonical CIDR; one resource per network
    resource_key TEXT NOT NULL REFERENCES compute_resources(resource_key) ON DELETE CASCADE
) STRICT;
CREATE INDEX resource_addresses_by_resource ON resource_addresses(resource_key);

-- The App Service `X-IDENTITY-HEADER` secret. Kept readable (the admin API lists it, as Azure
-- shows IDENTITY_HEADER in the app's environment); NULL while the resource has no identity.
ALTER TABLE compute_resources ADD COLUMN identity_header TEXT;
CREATE UNIQUE INDEX compute_resources_by_identity_header ON compute_resources(identity_header);

CREATE TABLE sign_ins (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    time_us        INTEGER NOT NULL,
    tenant_id      TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('managedIdentity', 'application')),
    principal_id   TEXT,           -- NULL when the request named no known principal
    client_id      TEXT,
    resource       TEXT NOT NULL,
    caller_address TEXT NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    error_code     TEXT NOT NULL,  -- '' on success
    reason         TEXT NOT NULL,
    latency_us     INTEGER NOT NULL,
    cached         INTEGER NOT NULL
) STRICT;
CREATE INDEX sign_ins_by_tenant ON sign_ins(tenant_id, seq);
CREATE INDEX sign_ins_by_principal ON sign_ins(tenant_id, principal_id, seq);
