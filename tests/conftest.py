"""Test-wide settings."""

import os

# Command-line entry points called in-process (bench's main) turn JAX's persistent
# compilation cache on; tests keep it off unless a test sets its own directory.
os.environ.setdefault("LOPT_COMPILATION_CACHE", "off")
