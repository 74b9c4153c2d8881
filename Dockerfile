# The Directus image with the boot supervisor as its entrypoint (PID 1).
# Keep the tag equal to directus/package.json, which the end-to-end tests run (tests/unit/test_deploy.py checks it).
FROM directus/directus:12.4.0

USER 0
# Python from the image's own package manager: CPython 3.14 on the base image's Alpine 3.24, the Python whose musl
# wheels scripts/check_musl_wheels.py finds locked in requirements.lock. Another Python stops the build here.
# hadolint ignore=DL3018
RUN apk add --no-cache python3 \
    && python3 -c 'import sys; v = sys.version_info[:2]; sys.exit(None if v == (3, 14) else f"python3 is {v}, requirements.lock is checked for (3, 14): see scripts/check_musl_wheels.py")'

# The supervisor in its own virtual environment: its dependencies exactly as locked, each file checked against its
# hash (the lock scripts/setup installs too), then the project itself, built with the locked setuptools, no deps.
WORKDIR /opt/supervisor
COPY requirements.lock pyproject.toml README.md ./
COPY supervisor ./supervisor
COPY phases ./phases
RUN python3 -m venv /opt/supervisor/venv \
    && /opt/supervisor/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock \
    && /opt/supervisor/venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation /opt/supervisor \
    && rm -rf /opt/supervisor/supervisor /opt/supervisor/phases

# The app's content, where the supervisor looks for it by default (relative to /directus).
WORKDIR /directus
COPY --chown=1000:1000 db-init ./db-init
COPY --chown=1000:1000 db-init-post ./db-init-post
COPY --chown=1000:1000 snapshots ./snapshots

# Node's compile cache, pre-warmed: loading the CLI entry (which imports every command, the server included) once
# with NODE_COMPILE_CACHE set stores the compiled code of Directus's modules in the folder that the supervisor hands
# to every Directus it starts, so the first boot of a container skips most of that work. DB_CLIENT is unset for
# this one call: the base image's sqlite3 default would make the CLI open (and create) a database file.
ENV SUPERVISOR_NODE_COMPILE_CACHE=/directus/.compile-cache
RUN env -u DB_CLIENT NODE_COMPILE_CACHE=/directus/.compile-cache \
        node /directus/node_modules/@directus/api/dist/cli/run.js --version \
    && chown -R 1000:1000 /directus/.compile-cache

# The base image's unprivileged user, `node`.
USER 1000:1000
# This image is for Postgres (the base image defaults to sqlite3, which the supervisor refuses).
ENV DB_CLIENT=pg
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=180s --retries=3 \
    CMD ["wget", "-qO", "/dev/null", "http://127.0.0.1:8055/server/ping"]
EXPOSE 8055
# `run` by default; `migrate`, `status`, `plan` or `lint` as arguments (Kubernetes init containers: args: [migrate]).
ENTRYPOINT ["/opt/supervisor/venv/bin/python", "-m", "supervisor"]
CMD ["run"]
