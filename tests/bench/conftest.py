"""Fixtures of the benchmark's tests."""

import dataclasses
import math
import pathlib

import pytest

from bench import results

STORED = pathlib.Path(__file__).parents[2] / "docs/benchmarks/mlplopt-mix-heldout/results.json"


@pytest.fixture(scope="session")
def report_of():
    """``report_of(finals, select="train", **fields)``: a ``Results`` whose records hold the
    final losses ``finals[task][optimizer]`` (``None``: a diverged run, which results.json
    holds as null; two equal seeds), its other ``fields`` as given, the rest as in a stored report."""
    stub = results.load(STORED)
    record = next(iter(stub.tasks.values())).optimizers["adam"]

    def make(finals, select="train", **fields):
        def final(v):
            v = math.nan if v is None else v
            seeds = results.Finals(train=[v, v], valid=[v, v])  # two equal seeds: no noise
            return dataclasses.replace(record, **{f"final_{select}": v}, finals=seeds)

        tasks = {
            task: results.TaskResult(500, {name: final(v) for name, v in row.items()})
            for task, row in finals.items()
        }
        return dataclasses.replace(stub, selection=select, tasks=tasks, **fields)

    return make
