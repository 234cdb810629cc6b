-- Flexible federated identity credentials: when set, `subject` holds a claims-matching expression
-- written in this language version instead of a subject. (issuer, subject) stays unique per owner,
-- so the same expression cannot be given twice for one issuer either. Adding a nullable column
-- leaves rows and the replicas of the previous version as they were.
ALTER TABLE federated_credentials ADD COLUMN claims_expression_version INTEGER;
