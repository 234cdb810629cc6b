-- The directory change log: every committed change to the registry appends (kind, key) rows,
-- written by triggers in the writing transaction itself, so no write path can forget one. A
-- broker applies the changes after its cursor to its in-memory snapshot, reloading only the
-- entities named (an application with its URIs, roles and secrets; an owner's federated
-- credentials; a resource with its addresses and identities...), never the whole registry.

CREATE TABLE directory_changes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key  TEXT NOT NULL
) STRICT;

-- Changes at or before `through` have been pruned: a reader behind it reloads everything.
CREATE TABLE directory_changes_pruned (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    through INTEGER NOT NULL
) STRICT;
INSERT INTO directory_changes_pruned (id, through) VALUES (1, 0);


CREATE TRIGGER tenants_changed_insert AFTER INSERT ON tenants BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('tenant', NEW.id);
END;
CREATE TRIGGER tenants_changed_update AFTER UPDATE ON tenants BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('tenant', OLD.id);
    INSERT INTO directory_changes (kind, key) SELECT 'tenant', NEW.id WHERE NEW.id IS NOT OLD.id;
END;
CREATE TRIGGER tenants_changed_delete AFTER DELETE ON tenants BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('tenant', OLD.id);
END;

CREATE TRIGGER subscriptions_changed_insert AFTER INSERT ON subscriptions BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('subscription', NEW.id);
END;
CREATE TRIGGER subscriptions_changed_update AFTER UPDATE ON subscriptions BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('subscription', OLD.id);
    INSERT INTO directory_changes (kind, key) SELECT 'subscription', NEW.id WHERE NEW.id IS NOT OLD.id;
END;
CREATE TRIGGER subscriptions_changed_delete AFTER DELETE ON subscriptions BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('subscription', OLD.id);
END;

CREATE TRIGGER applications_changed_insert AFTER INSERT ON applications BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('application', NEW.object_id);
END;
CREATE TRIGGER applications_changed_update AFTER UPDATE ON applications BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('application', OLD.object_id);
    INSERT INTO directory_changes (kind, key) SELECT 'application', NEW.object_id WHERE NEW.object_id IS NOT OLD.object_id;
END;
CREATE TRIGGER applications_changed_delete AFTER DELETE ON applications BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('application', OLD.object_id);
END;

CREATE TRIGGER identifier_uris_changed_insert AFTER INSERT ON identifier_uris BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('application', NEW.application_id);
END;
CREATE TRIGGER identifier_uris_changed_update AFTER UPDATE ON identifier_uris BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('application', OLD.application_id);
    INSERT INTO directory_changes (kind, key) SELECT 'application', NEW.application_id WHERE NEW.application_id IS NOT OLD.application_id;
END;
CREATE TRIGGER identifier_uris_changed_delete AFTER DELETE ON identifier_uris BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('application', OLD.application_id);
END;

CREATE TRIGGER app_roles_changed_insert AFTER INSERT ON app_roles BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('application', NEW.application_id);
END;
CREATE TRIGGER app_roles_changed_update AFTER UPDATE ON app_roles BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('application', OLD.application_id);
    INSERT INTO directory_changes (kind, key) SELECT 'application', NEW.application_id WHERE NEW.application_id IS NOT OLD.application_id;
END;
CREATE TRIGGER app_roles_changed_delete AFTER DELETE ON app_roles BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('application', OLD.application_id);
END;

CREATE TRIGGER client_secrets_changed_insert AFTER INSERT ON client_secrets BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('application', NEW.application_id);
END;
CREATE TRIGGER client_secrets_changed_update AFTER UPDATE ON client_secrets BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('application', OLD.application_id);
    INSERT INTO directory_changes (kind, key) SELECT 'application', NEW.application_id WHERE NEW.application_id IS NOT OLD.application_id;
END;
CREATE TRIGGER client_secrets_changed_delete AFTER DELETE ON client_secrets BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('application', OLD.application_id);
END;

CREATE TRIGGER federated_credentials_changed_insert AFTER INSERT ON federated_credentials BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('credentials', NEW.owner_id);
END;
CREATE TRIGGER federated_credentials_changed_update AFTER UPDATE ON federated_credentials BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('credentials', OLD.owner_id);
    INSERT INTO directory_changes (kind, key) SELECT 'credentials', NEW.owner_id WHERE NEW.owner_id IS NOT OLD.owner_id;
END;
CREATE TRIGGER federated_credentials_changed_delete AFTER DELETE ON federated_credentials BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('credentials', OLD.owner_id);
END;

CREATE TRIGGER managed_identities_changed_insert AFTER INSERT ON managed_identities BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('identity', NEW.principal_id);
END;
CREATE TRIGGER managed_identities_changed_update AFTER UPDATE ON managed_identities BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('identity', OLD.principal_id);
    INSERT INTO directory_changes (kind, key) SELECT 'identity', NEW.principal_id WHERE NEW.principal_id IS NOT OLD.principal_id;
END;
CREATE TRIGGER managed_identities_changed_delete AFTER DELETE ON managed_identities BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('identity', OLD.principal_id);
END;

CREATE TRIGGER compute_resources_changed_insert AFTER INSERT ON compute_resources BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('resource', NEW.resource_key);
END;
CREATE TRIGGER compute_resources_changed_update AFTER UPDATE ON compute_resources BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('resource', OLD.resource_key);
    INSERT INTO directory_changes (kind, key) SELECT 'resource', NEW.resource_key WHERE NEW.resource_key IS NOT OLD.resource_key;
END;
CREATE TRIGGER compute_resources_changed_delete AFTER DELETE ON compute_resources BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('resource', OLD.resource_key);
END;

CREATE TRIGGER resource_addresses_changed_insert AFTER INSERT ON resource_addresses BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('resource', NEW.resource_key);
END;
CREATE TRIGGER resource_addresses_changed_update AFTER UPDATE ON resource_addresses BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('resource', OLD.resource_key);
    INSERT INTO directory_changes (kind, key) SELECT 'resource', NEW.resource_key WHERE NEW.resource_key IS NOT OLD.resource_key;
END;
CREATE TRIGGER resource_addresses_changed_delete AFTER DELETE ON resource_addresses BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('resource', OLD.resource_key);
END;

CREATE TRIGGER identity_assignments_changed_insert AFTER INSERT ON identity_assignments BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('resource', NEW.resource_key);
END;
CREATE TRIGGER identity_assignments_changed_update AFTER UPDATE ON identity_assignments BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('resource', OLD.resource_key);
    INSERT INTO directory_changes (kind, key) SELECT 'resource', NEW.resource_key WHERE NEW.resource_key IS NOT OLD.resource_key;
END;
CREATE TRIGGER identity_assignments_changed_delete AFTER DELETE ON identity_assignments BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('resource', OLD.resource_key);
END;

CREATE TRIGGER role_assignments_changed_insert AFTER INSERT ON role_assignments BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('role_assignment', NEW.id);
END;
CREATE TRIGGER role_assignments_changed_update AFTER UPDATE ON role_assignments BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('role_assignment', OLD.id);
    INSERT INTO directory_changes (kind, key) SELECT 'role_assignment', NEW.id WHERE NEW.id IS NOT OLD.id;
END;
CREATE TRIGGER role_assignments_changed_delete AFTER DELETE ON role_assignments BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('role_assignment', OLD.id);
END;

-- A system-assigned identity is part of its compute resource's view.
CREATE TRIGGER managed_identities_changed_resource_insert AFTER INSERT ON managed_identities
WHEN NEW.system_resource_key IS NOT NULL BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('resource', NEW.system_resource_key);
END;
CREATE TRIGGER managed_identities_changed_resource_delete AFTER DELETE ON managed_identities
WHEN OLD.system_resource_key IS NOT NULL BEGIN
    INSERT INTO directory_changes (kind, key) VALUES ('resource', OLD.system_resource_key);
END;
-- Reading one application's secrets back after a change.
CREATE INDEX client_secrets_by_application ON client_secrets(application_id);
