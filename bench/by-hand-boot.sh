#!/usr/bin/env bash
# The peer "by hand": the five steps in the order that works, as a careful operator would write them, each once:
# psql over db-init/ (one transaction per file), bootstrap, schema apply, psql over db-init-post/, start.
# Needs PG* variables for psql and DIRECTUS (the CLI command); runs in the project folder.
set -euo pipefail
for f in db-init/*.sql; do psql -qX -v ON_ERROR_STOP=1 -1 -f "$f" >/dev/null; done
$DIRECTUS bootstrap
$DIRECTUS schema apply --yes snapshots/schema.yaml
for f in db-init-post/*.sql; do psql -qX -v ON_ERROR_STOP=1 -1 -f "$f" >/dev/null; done
exec $DIRECTUS start
