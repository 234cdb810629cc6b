-- Identical requests close together in time are logged as one sign-in with a count.
ALTER TABLE sign_ins ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
