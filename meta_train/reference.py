"""The config reference: every field of :class:`MetaTrainConfig`, its default, what it
allows and its description, generated from the dataclasses, their fields' rules
(``meta_train.rules``) and their docstrings' ``Attributes`` sections.

    python -m meta_train.reference > docs/config.md
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re

from meta_train.config import MetaTrainConfig
from meta_train.rules import rule_of


def attribute_docs(cls: type) -> dict[str, str]:
    """``{field: description}`` from the ``Attributes:`` section of ``cls``'s docstring."""
    doc = inspect.getdoc(cls) or ""
    _, found, section = doc.partition("Attributes:\n")
    if not found:
        return {}
    docs: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        entry = re.match(r"  (\w+): (.*)", line)
        if entry:
            name, text = entry.groups()
            docs[name] = text
        elif line.startswith("    ") and name:
            docs[name] += " " + line.strip()
        elif line.strip():
            break  # the section ended
    return docs


def _default(field: dataclasses.Field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def rows(cls: type = MetaTrainConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(path, default as YAML flow, allowed values, description)`` for every field, depth
    first (a section with empty default and allowed values). Raises ``ValueError`` naming a
    field whose class documents it nowhere."""
    docs, out = attribute_docs(cls), []
    for field in dataclasses.fields(cls):
        path = f"{prefix}{field.name}"
        if field.name not in docs:
            raise ValueError(f"{cls.__name__}.{field.name} ({path}) has no description")
        default = _default(field)
        if dataclasses.is_dataclass(default):
            out.append((path, "", "", docs[field.name]))
            out.extend(rows(type(default), path + "."))
        else:
            if isinstance(default, tuple):
                default = list(default)
            rule = rule_of(field)
            allowed = "" if rule is None else rule.allowed
            out.append((path, json.dumps(default), allowed, docs[field.name]))
    return out


def markdown() -> str:
    lines = [
        "# Meta-training config reference",
        "",
        "Every field of a meta-training config (YAML, or `key=value` overrides on the command",
        "line), its default, the values it allows and what it does. Generated from",
        "`meta_train.config` by `python -m meta_train.reference > docs/config.md`; a test",
        "keeps it current.",
        "",
        "| field | default | allowed | description |",
        "| --- | --- | --- | --- |",
    ]
    for path, default, allowed, text in rows():
        default, allowed = (f"`{x}`" if x else "" for x in (default, allowed))
        text = text.replace("``", "`").replace("|", "/")
        lines.append(f"| `{path}` | {default} | {allowed} | {text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
