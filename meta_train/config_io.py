"""Configs in and out: YAML/JSON files and command-line overrides such as
``estimator.sigma=0.03`` become a :class:`~meta_train.config.MetaTrainConfig`
(:func:`load_config`), and a config becomes plain dicts and YAML again (:func:`to_dict`,
:func:`dump_config`). An unknown key or a value of the wrong type raises
:class:`~meta_train.config.ConfigError` with the dotted path of the field.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

import tasks
from meta_train.config import MetaTrainConfig
from meta_train.rules import ConfigError, check


class _Loader(yaml.SafeLoader):
    """Safe YAML that reads ``3e-2`` and ``1.0e2`` as numbers, as YAML 1.2 and a user do
    (PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent)."""


class _Dumper(yaml.SafeDumper):
    """Safe YAML that quotes a string such as ``"1e5"``, which :class:`_Loader` would read
    back as a number."""


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )


def _finite(x: float) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:  # an int beyond float range
        return False


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: no arbitrary objects


def _yaml_error(e: yaml.YAMLError) -> str:
    """One line: where the text stops being YAML and why."""
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"not valid YAML/JSON{where}: {problem}"


def read_value(text: str, what: str) -> Any:
    """The value of a ``field=value`` setting, read as YAML 1.2 reads it (``null``, numbers
    such as ``3e-2``, lists, mappings); ``ConfigError`` naming ``what`` when it is not YAML."""
    try:
        return _yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error(e), field=what) from None


def _convert(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        python_only = (tasks.Task, tasks.TaskFamily)  # objects given in Python, as they are
        if isinstance(value, python_only):
            check(any(isinstance(value, a) for a in args), path, f"cannot be {value!r}")
            return value
        errors = []
        for inner in [a for a in args if a not in (type(None), *python_only)]:  # first that fits
            try:
                return _convert(value, inner, path)
            except ConfigError as e:
                errors.append(e.message if e.field == path else str(e))  # an item's own path
        raise ConfigError(" or ".join(errors), field=path)
    if origin is tuple:
        check(
            isinstance(value, Sequence) and not isinstance(value, str),
            path,
            f"must be a list, got {value!r}",
        )
        args = typing.get_args(hint)
        items = args[:1] * len(value) if args[-1] is Ellipsis else args
        check(len(value) == len(items), path, f"must have {len(items)} items, got {value!r}")
        pairs = enumerate(zip(value, items, strict=True))
        return tuple(_convert(v, h, f"{path}[{i}]") for i, (v, h) in pairs)
    if origin in (Mapping, dict) or hint is dict:
        check(isinstance(value, Mapping), path, f"must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        check(isinstance(value, bool), path, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        check(
            isinstance(value, int) and not isinstance(value, bool),
            path,
            f"must be an integer, got {value!r}",
        )
        return value
    if hint is float:
        check(
            isinstance(value, int | float) and not isinstance(value, bool),
            path,
            f"must be a number, got {value!r}",
        )
        check(_finite(value), path, f"must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        check(isinstance(value, str), path, f"must be a string, got {value!r}")
        return value
    raise TypeError(f"{path}: unsupported config type {hint!r}")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Builds dataclass ``cls`` from nested mappings; unknown keys and bad values raise
    :class:`ConfigError` with the dotted field path."""
    where = path or "config"
    check(isinstance(data, Mapping), where, f"must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    check(not unknown, where, f"unknown field(s) {unknown}; allowed: {names}")
    kwargs = {k: _convert(v, hints[k], f"{path}.{k}" if path else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:  # a section names its own fields: put its path in front
        raise e.within(path).with_traceback(e.__traceback__) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dicts/lists, ready for YAML or JSON (a task or family object as its
    ``tasks.label``)."""

    def plain(v):
        if isinstance(v, tasks.Task | tasks.TaskFamily):
            return tasks.label(v)
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Sequence) and not isinstance(v, str):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``["estimator.sigma=0.03", "task.name=mlp-digits"]`` applied to nested dict ``data``;
    values are parsed as YAML (so ``null``, numbers, lists work)."""
    check(isinstance(data, Mapping), "config", f"must be a mapping, got {data!r}")
    data = to_dict(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        check(bool(sep) and bool(key), item, "an override must look like section.field=value")
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
            check(isinstance(node, dict), key, f"{p!r} is not a section")
        node[leaf] = read_value(raw, item)
    return data


CONFIG_DIR = pathlib.Path(__file__).parent / "configs"
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _shipped(path: str | pathlib.Path) -> str | pathlib.Path:
    """A shipped config's file for a bare name such as ``demo``; any other ``path`` as is."""
    name = str(path)
    if pathlib.Path(name).exists() or "/" in name or "." in name:
        return path
    if name not in CONFIGS:
        raise ConfigError(f"no config file {name!r} and no shipped config of that name: {CONFIGS}")
    return CONFIG_DIR / f"{name}.yaml"


def load_config(
    path: str | pathlib.Path | None = None, overrides: Sequence[str] = ()
) -> MetaTrainConfig:
    """A config from a YAML/JSON file (defaults for anything it omits) plus overrides.

    ``path`` is a file, or the name of a config that ships with the package (``CONFIGS``:
    ``demo``, ``smoke``, ...; the files in ``meta_train/configs``)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = _shipped(path)
        try:
            text = pathlib.Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e}") from None
        try:
            data = _yaml(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: {_yaml_error(e)}") from None
    return from_dict(MetaTrainConfig, apply_overrides(data, overrides))


def dump_config(cfg: MetaTrainConfig, path: str | pathlib.Path) -> None:
    pathlib.Path(path).write_text(yaml.dump(to_dict(cfg), Dumper=_Dumper, sort_keys=False))
