"""A stand-in Directus CLI for the fault suite: slow enough to be killed mid-step, and honest about its locks.

    python tests/fault/directus_standin.py --version                      prints 12.4.0
    ... bootstrap                                                          installs the stand-in "system tables"
    ... schema apply --dry-run --yes PATH                                  prints a diff, or "No changes to apply."
    ... schema apply --yes PATH                                            creates the collection `fx_vehicles`
    ... start                                                              runs a moment, then exits 0
With FAULT_STANDIN_LEAK set, any step prints the DB password (as a failing CLI might) and exits 1.

Each invocation but `--version` writes its pid to `$FAULT_STANDIN_DIR/<pid>` (removed when it ends normally), so a
test can tell whether one outlived its supervisor, and appends `<pid> <args>` to `$FAULT_STANDIN_DIR/started`.
`bootstrap` and `schema apply` sleep `$FAULT_STANDIN_SLEEP` seconds, then do their work in one transaction on a *new*
connection (as Directus's pool would after a restart), and check, before and after, that the supervisor that started
them (the parent process) still holds one of its advisory locks: if not, they note `unlocked <step>` in
`$FAULT_STANDIN_DIR/violations`. That is the race the supervisor exists to prevent (directus#23707): a Directus step
running without its lock.

Connects with the DB_* variables the supervisor passes through (DB_CONNECTION_STRING is not supported here).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

CLASSID = 0x44535550  # supervisor.lock.CLASSID, repeated: the stand-in must not import the supervisor
_DIFF = (
    "The following changes will be applied:\n\n"
    "Collections:\n  - Create fx_vehicles\n\n"
    "Fields:\n  - Create fx_vehicles.id\n  - Create fx_vehicles.plate\n"
)


async def _connect() -> asyncpg.Connection:
    """Connect, retrying for up to 25 s while the server is down or starting, as `directus bootstrap` waits."""
    import asyncpg  # here: `--version` must not pay for it

    e = os.environ
    deadline = time.monotonic() + 25
    while True:
        try:
            return await asyncpg.connect(
                host=e["DB_HOST"],
                port=int(e["DB_PORT"]),
                user=e["DB_USER"],
                password=e.get("DB_PASSWORD"),
                database=e["DB_DATABASE"],
                timeout=10,
            )
        except (OSError, asyncpg.CannotConnectNowError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _parent_holds_lock(conn: asyncpg.Connection) -> bool:
    """Whether the supervisor process that started us holds one of its advisory locks right now."""
    held = await conn.fetchval(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.granted AND a.application_name LIKE $2",
        CLASSID,
        f"%:{os.getppid()}",
    )
    return bool(held)


def _note(folder: Path, text: str) -> None:
    with open(folder / "violations", "a", encoding="utf-8") as f:
        f.write(text + "\n")


async def _step(folder: Path, name: str, work: str) -> None:
    """Check the lock, sleep, then (new connection) check it again and do `work` in one transaction."""
    conn = await _connect()
    try:
        if not await _parent_holds_lock(conn):
            _note(folder, f"unlocked {name} at start (pid {os.getpid()})")
    finally:
        await conn.close()
    await asyncio.sleep(float(os.environ.get("FAULT_STANDIN_SLEEP", "0.3")))
    conn = await _connect()
    try:
        async with conn.transaction():
            if not await _parent_holds_lock(conn):
                _note(folder, f"unlocked {name} at commit (pid {os.getpid()})")
            await conn.execute(work)
            await conn.execute("INSERT INTO fx_steps (step, pid) VALUES ($1, $2)", name, os.getpid())
    finally:
        await conn.close()


_STEPS_TABLE = (
    "CREATE TABLE IF NOT EXISTS fx_steps (step text, pid int, at timestamptz DEFAULT clock_timestamp());"
)
_BOOTSTRAP = (
    "CREATE TABLE IF NOT EXISTS directus_collections (collection text PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS directus_migrations (version text PRIMARY KEY);"
    "INSERT INTO directus_migrations VALUES ('standin') ON CONFLICT DO NOTHING;"
)
_APPLY = (
    "CREATE TABLE fx_vehicles (id serial PRIMARY KEY, plate text);"
    "INSERT INTO directus_collections VALUES ('fx_vehicles');"
)


async def _dry_run() -> None:
    conn = await _connect()
    try:
        if not await conn.fetchval("SELECT to_regclass('directus_collections') IS NOT NULL"):
            print("Directus isn't installed on this database. Please run `directus bootstrap` first.")
        elif await conn.fetchval("SELECT to_regclass('fx_vehicles') IS NOT NULL"):
            print("[12:00:00.000] INFO: No changes to apply.")
        else:
            print(_DIFF)
    finally:
        await conn.close()


async def _main(args: list[str], folder: Path) -> int:
    if os.environ.get("FAULT_STANDIN_LEAK"):
        # A CLI that prints its connection settings when it fails (knex and Directus can): the supervisor passes the
        # output on, and must not pass the password on with it.
        e = os.environ
        line = f"connect failed: postgres://{e.get('DB_USER')}:{e.get('DB_PASSWORD')}@{e.get('DB_HOST')}/db"
        print(line)
        print(line, file=sys.stderr)
        return 1
    if args == ["bootstrap"]:
        conn = await _connect()
        try:
            await conn.execute(_STEPS_TABLE)
        finally:
            await conn.close()
        await _step(folder, "bootstrap", _BOOTSTRAP)
    elif args[:2] == ["schema", "apply"] and "--dry-run" in args:
        await _dry_run()
    elif args[:2] == ["schema", "apply"]:
        await _step(folder, "schema apply", _APPLY)
    elif args == ["start"]:
        await asyncio.sleep(float(os.environ.get("FAULT_STANDIN_START_S", "0.3")))
    else:
        print(f"stand-in: unknown command {args}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    args = sys.argv[1:]
    if args == ["--version"]:
        print("12.4.0")
        return 0
    folder = Path(os.environ["FAULT_STANDIN_DIR"])
    mark = folder / str(os.getpid())
    mark.write_text(f"{' '.join(args)}\n{time.time()}\n")
    with open(folder / "started", "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {' '.join(args)}\n")
    code = asyncio.run(_main(args, folder))
    mark.unlink()
    return code


if __name__ == "__main__":
    sys.exit(main())
