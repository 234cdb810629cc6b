-- What Graph's signIn resource shows beyond the first columns: the numeric status code (Graph's
-- status.errorCode), the principal's name and managed-identity kind when it signed in, the compute
-- resource whose endpoint was asked, and the federated credential that admitted the assertion.
-- Entries written before get the AADSTS number their code carries, else the one the broker now
-- logs for it (an injected failure: the transient-error code); their names stay empty.
ALTER TABLE sign_ins ADD COLUMN status_code INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sign_ins ADD COLUMN principal_name TEXT NOT NULL DEFAULT '';
ALTER TABLE sign_ins ADD COLUMN msi_type TEXT NOT NULL DEFAULT '';
ALTER TABLE sign_ins ADD COLUMN compute_resource TEXT;
ALTER TABLE sign_ins ADD COLUMN credential_id TEXT;
UPDATE sign_ins SET status_code = CASE
    WHEN outcome = 'success' THEN 0
    WHEN error_code LIKE 'AADSTS%' THEN CAST(substr(error_code, 7) AS INTEGER)
    WHEN error_code = 'throttled' THEN 90055
    WHEN error_code = 'missing_resource' THEN 900144
    WHEN error_code IN ('identity_not_found', 'unbound_address') THEN 700016
    WHEN error_code = 'server_error' THEN 50000
    WHEN error_code = 'injected' THEN 90033
    ELSE 9002313
END;
