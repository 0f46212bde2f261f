"""The older form of ``python -m bench perf``: ``python -m bench.perf``."""

import sys

from bench.__main__ import main

sys.exit(main(["perf", *sys.argv[1:]]))
