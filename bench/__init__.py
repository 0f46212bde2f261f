"""Benchmarks of optimizers against tuned baselines, and the studies and tools around them."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence


def invocation(prog: str, argv: Sequence[str] | None = None) -> str:
    """The shell command that ran ``prog`` with ``argv`` (default: this process's arguments),
    quoted so that it can be pasted back; every results file records it."""
    return shlex.join([*prog.split(), *(sys.argv[1:] if argv is None else argv)])
