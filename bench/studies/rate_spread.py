"""Members of the meta-training families, as a suite: where each one's tuned Muon-cosine rate
lies against Muon's usual 0.02 says which way a training period pushes a learned rate.

    python -m bench compare --optimizer muon-cosine-default \\
        --suite bench.studies.rate_spread:members --baselines muon-cosine --tuning-free none \\
        --seeds 1 --lr-range 1e-3 1 --max-speedup 1 --workers 2 --out runs/cmp/rate-spread

Members are drawn with the suites' keys (10 000 + i), which meta-training never draws.
"""

from __future__ import annotations

from bench.suites import members as _members

FAMILIES = ("image-mlp", "quadratic", "deep-mlp", "markov-lm")


def members(count: int = 5):
    """The first ``count`` members of each of ``FAMILIES``, 500 steps each."""
    return [entry for family in FAMILIES for entry in _members(family, count)]
