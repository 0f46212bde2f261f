"""What a config field allows, declared beside the field.

A config section is a frozen dataclass whose fields are :func:`setting` s with a
:class:`Rule`, checked by :func:`validate` on construction::

    @dataclasses.dataclass(frozen=True)
    class OuterConfig:
        learning_rate: float = setting(3e-3, above(0))

        def __post_init__(self):
            validate(self)

``OuterConfig(learning_rate=0)`` raises ``ConfigError: learning_rate: must be > 0, got 0``.
A section names its own fields only (built in Python, it is the section the caller wrote);
:func:`meta_train.config_io.from_dict`, which knows where the section sits in a config
file, puts its path in front (``outer.learning_rate: ...``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
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
        raise ConfigError(message, field=field)


@dataclasses.dataclass(frozen=True)
class Rule:
    """The values a field allows: those for which ``holds`` is true, described by ``allowed``
    (``"> 0"``, ``"one of ['a', 'b']"``). A value ``holds`` cannot compare (``TypeError``:
    a string for a number) is not allowed. ``item``: for a mapping, the rule of each value
    (:func:`each`), so that an error names the entry at fault."""

    holds: Callable[[Any], bool]
    allowed: str
    item: Rule | None = None

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.holds(value))
        except TypeError:
            return False


def above(low: float) -> Rule:
    return Rule(lambda v: v > low, f"> {low}")


def at_least(low: float) -> Rule:
    return Rule(lambda v: v >= low, f">= {low}")


def one_of(values: Collection[Any]) -> Rule:
    values = tuple(values)
    return Rule(lambda v: v in values, f"one of {list(values)}")


def optional(rule: Rule, meaning: str) -> Rule:
    """``null`` (which means ``meaning``) or what ``rule`` allows."""
    return Rule(lambda v: v is None or rule(v), f"{rule.allowed} (or null {meaning})")


def each(rule: Rule) -> Rule:
    """A mapping whose every value ``rule`` allows."""
    return Rule(
        lambda m: isinstance(m, Mapping) and all(rule(v) for v in m.values()),
        f"a mapping to {rule.allowed}",
        item=rule,
    )


def setting(default: Any, rule: Rule) -> Any:
    """A dataclass field with ``default`` that allows what ``rule`` allows; :func:`validate`
    checks it. A dict default is copied for each instance (the only mutable default a
    config section has)."""
    if isinstance(default, dict):
        return dataclasses.field(default_factory=default.copy, metadata={"rule": rule})
    return dataclasses.field(default=default, metadata={"rule": rule})


def rule_of(field: dataclasses.Field) -> Rule | None:
    """The rule a :func:`setting` declared, or ``None``."""
    return field.metadata.get("rule")


def validate(section: Any) -> None:
    """Raises :class:`ConfigError` naming the first field of dataclass ``section`` whose
    value its rule does not allow (for a mapping, the first entry at fault, ``field.key``,
    and only its value)."""
    for field in dataclasses.fields(section):
        rule, name, value = rule_of(field), field.name, getattr(section, field.name)
        if rule is None or rule(value):
            continue
        if rule.item is not None and isinstance(value, Mapping):
            name, value = next((f"{name}.{k}", v) for k, v in value.items() if not rule.item(v))
            rule = rule.item
        shown = list(value) if isinstance(value, tuple) else value  # as a config file writes it
        raise ConfigError(f"must be {rule.allowed}, got {shown!r}", field=name)
