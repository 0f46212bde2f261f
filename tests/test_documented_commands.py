"""Every ``python -m meta_train`` and ``python -m bench`` / ``lopt-bench`` command shown in the
README and docs parses with the real command line, and the configs, overrides, suites and
baselines it names exist (the commands are not run: most take minutes); every relative link
in them reaches its file and heading."""

import pathlib
import re
import shlex
import string

import pytest

from bench import baselines, suites
from bench.__main__ import TOOLS, tool_parser
from bench.__main__ import parser as bench_parser
from meta_train import load_config
from meta_train.__main__ import parser as meta_train_parser

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
PROGRAMS = {"python -m meta_train": "meta_train", "python -m bench": "bench", "lopt-bench": "bench"}


def _commands() -> list[tuple[str, str, list[str]]]:
    """``(where, program, argv)`` of each documented command: inside fenced code blocks,
    continuation lines joined, comments and ``[optional parts]`` dropped, and inside
    backticks in the text."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
        lines += re.findall(r"`((?:python -m (?:meta_train|bench)|lopt-bench) [^`]+)`", text)
        variables = {}  # NAME="..." lines of the blocks, as a shell would expand $NAME
        for line in lines:
            if m := re.fullmatch(r"(\w+)=(.*)", line.strip()):
                variables[m[1]] = shlex.split(m[2])[0]
            line = string.Template(line).safe_substitute(variables)
            line = re.sub(r"\[[^\]]*\]", "", line.split("  #")[0]).strip()
            for prefix, program in PROGRAMS.items():
                if line.startswith(prefix + " "):
                    argv = shlex.split(line[len(prefix) :], comments=True)
                    if len(argv) > 1:  # not a mention of a subcommand by name
                        found.append((f"{doc.relative_to(REPO)}: {line}", program, argv))
    return found


COMMANDS = _commands()


def test_the_docs_show_commands_of_both_programs():
    programs = {program for _, program, _ in COMMANDS}
    assert programs == {"meta_train", "bench"} and len(COMMANDS) > 20
    assert {argv[0] for _, _, argv in COMMANDS} >= {"compare", "demo", "perf"}


@pytest.mark.parametrize(("where", "program", "argv"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_documented_command_parses_and_names_what_exists(where, program, argv, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "docs" / "examples"))  # my_tasks
    if program == "meta_train":
        args = meta_train_parser().parse_args(argv)  # SystemExit on an unknown flag
        assert all("=" in o for o in args.overrides), where
        if args.config is not None:  # ConfigError on a field or value the config lacks
            assert load_config(args.config, args.overrides).num_steps >= 1
        return
    if argv[0] in TOOLS:  # a subcommand with its own command line
        args = tool_parser(argv[0]).parse_args(argv[1:])
        if argv[0] == "demo":  # a recipe: every override names a field the config has
            assert load_config(args.config, args.overrides).num_steps >= 1, where
        return
    args = bench_parser().parse_args(argv)
    assert args.command in ("compare", "saturation", "stability", "trace"), where
    if args.command in ("compare", "saturation"):
        for suite in args.suite if isinstance(args.suite, list) else [args.suite]:
            suites.get(suite)
    if args.command == "compare":
        for name in (b for b in args.baselines.split(",") if b):
            baselines.get(name)
        for name in (b for b in args.tuning_free.split(",") if b not in ("", "none")):
            assert not baselines.get(name).tuned, (where, name)


def _anchors(doc: pathlib.Path) -> set[str]:
    """The link anchors of ``doc``'s headings, as GitHub makes them: lower case, punctuation
    dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)  # a comment is no heading
    titles = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", t.strip().lower()).replace(" ", "-") for t in titles}


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(REPO)))
def test_every_relative_link_reaches_its_file_and_heading(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = doc.parent / path if path else doc
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in _anchors(dest)):
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: broken links {broken}"
