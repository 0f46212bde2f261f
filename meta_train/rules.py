"""What a config field allows, declared beside the field.

A config section is a frozen dataclass whose fields are :func:`setting` s with a
:class:`Rule`, checked by :func:`validate` on construction::

    @dataclasses.dataclass(frozen=True)
    class OuterConfig:
        learning_rate: float = setting(3e-3, above(0))

        def __post_init__(self):
            validate(self)

``OuterConfig(learning_rate=0)`` raises ``ConfigError: learning_rate: must be > 0, got 0``.
A section names its own fields only; :func:`meta_train.config_io.from_dict`, which knows
where the section sits, puts its path in front (``outer.learning_rate: ...``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from typing import Any


class ConfigError(ValueError):
    """An invalid configuration.

    Attributes:
      message: what is wrong and what is allowed.
      field: the dotted path of the field at fault, relative to the section that raised it
        (empty: the section as a whole, or no field).
    """

    def __init__(self, message: str, field: str = ""):
        super().__init__(message, field)  # both in args, so the error pickles (Ray)
        self.message, self.field = message, field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def within(self, path: str) -> ConfigError:
        """This error raised by the section at ``path``: its field prefixed by ``path``."""
        return ConfigError(self.message, ".".join(p for p in (path, self.field) if p))


def check(cond: bool, field: str, message: str) -> None:
    """Raises :class:`ConfigError` ``field: message`` unless ``cond``."""
    if not cond:
        raise ConfigError(message, field)


@dataclasses.dataclass(frozen=True)
class Rule:
    """The values a field allows: those for which ``holds`` is true, described by ``allowed``
    (``"> 0"``, ``"one of ['a', 'b']"``). A value ``holds`` cannot compare (a string for a
    number) is not allowed."""

    holds: Callable[[Any], bool]
    allowed: str

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.holds(value))
        except (TypeError, ValueError):
            return False


def above(low: float) -> Rule:
    return Rule(lambda v: v > low, f"> {low}")


def at_least(low: float) -> Rule:
    return Rule(lambda v: v >= low, f">= {low}")


def between(low: float, high: float, *, open_low: bool = False) -> Rule:
    """``[low, high)``, or ``(low, high)`` with ``open_low``."""
    if open_low:
        return Rule(lambda v: low < v < high, f"in ({low}, {high})")
    return Rule(lambda v: low <= v < high, f"in [{low}, {high})")


def one_of(values: Collection[Any]) -> Rule:
    values = tuple(values)
    return Rule(lambda v: v in values, f"one of {list(values)}")


def instance_of(kind: type, name: str) -> Rule:
    """Instances of ``kind``, described as ``name``."""
    return Rule(lambda v: isinstance(v, kind), name)


def scale_range() -> Rule:
    """``[low, high]`` with ``0 < low <= high``: the bounds of a log-uniform draw."""
    return Rule(lambda v: len(v) == 2 and 0 < v[0] <= v[1], "[low, high] with 0 < low <= high")


def optional(rule: Rule, meaning: str) -> Rule:
    """``null`` (which means ``meaning``) or what ``rule`` allows."""
    return Rule(lambda v: v is None or rule(v), f"{rule.allowed} (or null {meaning})")


def each(rule: Rule) -> Rule:
    """A mapping whose every value ``rule`` allows."""
    return Rule(
        lambda m: all(rule(v) for v in m.values()), f"a mapping whose values are {rule.allowed}"
    )


def setting(default: Any, rule: Rule) -> Any:
    """A dataclass field with ``default`` (a dict is copied for each instance) that allows
    what ``rule`` allows; :func:`validate` checks it."""
    if isinstance(default, dict):
        return dataclasses.field(default_factory=default.copy, metadata={"rule": rule})
    return dataclasses.field(default=default, metadata={"rule": rule})


def rule_of(field: dataclasses.Field) -> Rule | None:
    """The rule a :func:`setting` declared, or ``None``."""
    return field.metadata.get("rule")


def validate(section: Any) -> None:
    """Raises :class:`ConfigError` naming the first field of dataclass ``section`` whose
    value its rule does not allow."""
    for field in dataclasses.fields(section):
        rule, value = rule_of(field), getattr(section, field.name)
        if rule is not None:
            check(rule(value), field.name, f"must be {rule.allowed}, got {value!r}")
