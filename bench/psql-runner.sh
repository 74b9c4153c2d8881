#!/usr/bin/env bash
# The peer "shell runner": what the supervisor replaces. One psql process per pending file, in one transaction
# with its tracking row; the applied set is read once. Connection comes from PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE.
set -euo pipefail
dir=$1
psql -qX -v ON_ERROR_STOP=1 -c "CREATE TABLE IF NOT EXISTS migrations_applied (
  filename text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
declare -A applied=()
while IFS= read -r name; do [ -n "$name" ] && applied[$name]=1; done < <(psql -qXtA -c "SELECT filename FROM migrations_applied")
for f in "$dir"/*.sql; do
  name=$(basename "$f")
  [ -n "${applied[$name]:-}" ] && continue
  sum=$(sha256sum "$f" | cut -d' ' -f1)
  psql -qX -v ON_ERROR_STOP=1 -1 -f "$f" -c "INSERT INTO migrations_applied (filename, checksum) VALUES ('$name', '$sum')"
done
