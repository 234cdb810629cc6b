-- An application's own token-request limit ("500/s", "30/min", "off"), overriding the configured
-- rate_limits.application; NULL for the configured one.
ALTER TABLE applications ADD COLUMN rate_limit TEXT;
