-- Fault rules (ficus fault add): what a rule does is `rule` (JSON, the domain's FaultRule);
-- `remaining` counts what a "next N requests" rule has left, shared by every process on the file.
CREATE TABLE fault_rules (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    remaining INTEGER
);
