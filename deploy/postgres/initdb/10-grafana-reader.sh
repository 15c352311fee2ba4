#!/bin/sh
# Runs once, when the Postgres data volume is empty (the official image's /docker-entrypoint-initdb.d).
# Grafana reads the read models with this SELECT-only login, never with the pipeline's own. The
# tables do not exist yet (the services create them on first start), so the grant is also a default
# privilege on the tables the pipeline's role creates later in the public schema.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v owner="$POSTGRES_USER" -v db="$POSTGRES_DB" \
  -v reader="${GRAFANA_DB_USER:-grafana_reader}" \
  -v reader_password="${GRAFANA_DB_PASSWORD:-grafana_reader}" <<'SQL'
CREATE ROLE :"reader" LOGIN PASSWORD :'reader_password';
GRANT CONNECT ON DATABASE :"db" TO :"reader";
GRANT USAGE ON SCHEMA public TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
SQL
