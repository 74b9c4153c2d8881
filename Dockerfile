# The Directus image with the boot supervisor as its entrypoint (PID 1).
# Keep the tag equal to directus/package.json, which the end-to-end tests run (tests/unit/test_deploy.py checks it).
FROM directus/directus:12.4.0

USER 0
# Python from the image's own package manager; the versions follow the pinned base image.
# hadolint ignore=DL3018
RUN apk add --no-cache python3

# The supervisor in its own virtual environment (wheels for musl exist for asyncpg and pglast).
WORKDIR /opt/supervisor
COPY pyproject.toml README.md ./
COPY supervisor ./supervisor
COPY phases ./phases
RUN python3 -m venv /opt/supervisor/venv \
    && /opt/supervisor/venv/bin/pip install --no-cache-dir /opt/supervisor \
    && rm -rf /opt/supervisor/supervisor /opt/supervisor/phases

# The app's content, where the supervisor looks for it by default (relative to /directus).
WORKDIR /directus
COPY --chown=1000:1000 db-init ./db-init
COPY --chown=1000:1000 db-init-post ./db-init-post
COPY --chown=1000:1000 snapshots ./snapshots

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
