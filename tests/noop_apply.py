"""The real Directus CLI, but for `schema apply` without `--dry-run`, which claims success and changes nothing.

    python tests/noop_apply.py ARGS...   runs `$REAL_DIRECTUS_CMD ARGS...` (exec), except `schema apply` without
                                         `--dry-run`: prints a success line and exits 0, as a broken apply would
Every call is noted, one line of arguments each, in $NOOP_LOG.
"""

from __future__ import annotations

import os
import shlex
import sys


def main() -> int:
    args = sys.argv[1:]
    with open(os.environ.get("NOOP_LOG", os.devnull), "a", encoding="utf-8") as log:
        log.write(" ".join(args) + "\n")
    if args[:2] == ["schema", "apply"] and "--dry-run" not in args:
        print("Snapshot applied successfully")
        return 0
    real = shlex.split(os.environ["REAL_DIRECTUS_CMD"])
    os.execvp(real[0], [*real, *args])  # noqa: S606 (the test's own Directus command)


if __name__ == "__main__":
    sys.exit(main())
