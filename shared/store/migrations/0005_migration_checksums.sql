-- Each applied migration keeps the sha256 of the file it was applied from; start-up refuses to
-- go on when a shipped migration's file no longer matches (shared/store/postgres.py `migrate`).
-- Rows applied before this column existed get their checksum recorded on the first start after.
ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text;
