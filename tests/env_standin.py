"""A stand-in Directus CLI that notes the NODE_COMPILE_CACHE it was given.

    python tests/env_standin.py --version   prints 12.4.0 (and notes the call)
    python tests/env_standin.py ARGS...     notes the call, exits 0
Each call appends `ARGS<TAB>NODE_COMPILE_CACHE's value, or -` to $ENV_STANDIN_LOG.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    args = sys.argv[1:]
    with open(os.environ["ENV_STANDIN_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{' '.join(args)}\t{os.environ.get('NODE_COMPILE_CACHE', '-')}\n")
    if args == ["--version"]:
        print("12.4.0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
