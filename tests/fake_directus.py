"""A stand-in Directus CLI for the schema guard's process tests, printing a dry-run that real Directus cannot be
made to print (a new release's wording, say).

    python tests/fake_directus.py --version                  prints 12.4.0
    python tests/fake_directus.py schema apply --dry-run ...  prints the file $FAKE_DRY_RUN on stdout, exits 0
    python tests/fake_directus.py schema apply ...            with $FAKE_APPLY_SQL: runs that SQL file on the DB_*
                                                              database (the "apply"), then rewrites $FAKE_DRY_RUN
                                                              to say "No changes to apply." (what a real apply leaves)
    python tests/fake_directus.py anything else               exits 0 without doing anything
Every call is noted, one line of arguments each, in $FAKE_LOG.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path


def main() -> int:
    args = sys.argv[1:]
    with open(os.environ.get("FAKE_LOG", os.devnull), "a", encoding="utf-8") as log:
        log.write(" ".join(args) + "\n")
    if args == ["--version"]:
        print("12.4.0")
    elif args[:2] == ["schema", "apply"] and "--dry-run" in args:
        sys.stdout.write(Path(os.environ["FAKE_DRY_RUN"]).read_text(encoding="utf-8"))
    elif args[:2] == ["schema", "apply"] and os.environ.get("FAKE_APPLY_SQL"):
        asyncio.run(_apply(Path(os.environ["FAKE_APPLY_SQL"]).read_text(encoding="utf-8")))
        Path(os.environ["FAKE_DRY_RUN"]).write_text("[12:00:00.000] INFO: No changes to apply.\n")
    return 0


async def _apply(sql: str) -> None:
    import asyncpg

    e = os.environ
    conn = await asyncpg.connect(
        host=e["DB_HOST"], port=int(e["DB_PORT"]), user=e["DB_USER"], password=e["DB_PASSWORD"],
        database=e["DB_DATABASE"],
    )  # fmt: skip
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
