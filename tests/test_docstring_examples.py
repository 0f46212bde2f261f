"""The runnable examples in the public entry points' docstrings run and show what they say."""

import doctest

import pytest

from bench import compare
from lopt import per_param
from meta_train import estimators, trainer, unroll


@pytest.mark.parametrize(
    "module", [per_param, estimators, unroll, trainer, compare], ids=lambda m: m.__name__
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result
