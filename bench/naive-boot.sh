#!/usr/bin/env bash
# The peer "naive five steps": every phase run unconditionally on every boot, as the seed's shell entrypoint did.
# Needs PG* variables for psql and DIRECTUS (the CLI command); runs in the project folder.
set -euo pipefail
for f in db-init/*.sql; do psql -qX -v ON_ERROR_STOP=1 -f "$f" >/dev/null; done
$DIRECTUS schema apply --yes snapshots/schema.yaml
for f in db-init-post/*.sql; do psql -qX -v ON_ERROR_STOP=1 -f "$f" >/dev/null; done
$DIRECTUS bootstrap
exec $DIRECTUS start
