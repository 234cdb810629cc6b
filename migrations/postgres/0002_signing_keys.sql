-- Signing keys shared by every replica. The private key is sealed (AES-256-GCM) under a
-- key-encryption key that replicas hold and this database never sees; `kek_id` names that key by
-- a one-way identifier. Times are microseconds since the Unix epoch, as in the logs.
CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL CHECK (alg IN ('RS256', 'ES256')),
    created_at_us  BIGINT NOT NULL,
    activate_at_us BIGINT NOT NULL,
    kek_id         TEXT NOT NULL,
    sealed_key     BYTEA NOT NULL,
    certificate    BYTEA NOT NULL
);

-- One row: the key set's generation, advanced by every change. Writers compare and set it (the
-- row lock orders them), and replicas poll it cheaply besides listening on `ficus_keys`.
CREATE TABLE signing_key_set (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO signing_key_set (id, generation) VALUES (1, 0);
