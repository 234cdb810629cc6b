-- Replicas sharing this database, each refreshing its row every cluster.heartbeat_interval; a row
-- older than cluster.replica_expiry counts as a replica gone. Times are the database's clock, so
-- replicas' clocks need not agree. UNLOGGED: a heartbeat is worth nothing after a crash (and is not
-- copied to standbys); the replicas write their rows again within a second.
CREATE UNLOGGED TABLE replica_heartbeats (
    replica    TEXT PRIMARY KEY,
    version    TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    seen_at    TIMESTAMPTZ NOT NULL
);
