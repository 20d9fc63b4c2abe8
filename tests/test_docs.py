"""The documentation against the code: every `unlearn ...` command shown in a shell block of README.md or
docs/ parses with the real CLI (nothing runs), the README stays a front door, and its links resolve.

The site itself (mkdocs.yml, docs/) is built with `mkdocs build --strict` in CI; these checks need no
MkDocs and take a few seconds.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from harness.cli import main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = sorted([README, *(REPO / "docs").rglob("*.md")])
SHELL_BLOCKS = {"bash", "console", "sh", "shell"}
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[\w+-]*)")
# Commands shown on purpose that cannot parse as written, with the reason. Empty: every command parses.
PLACEHOLDERS: dict[str, str] = {}


def _shell_lines(text: str):
    """(line number, command) of each `unlearn ...` command in the page's bash / console / sh blocks;
    a `$ ` prompt is dropped and lines ending in a backslash are joined to the next."""
    fence = None
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence = (match["fence"], match["info"].lower())
            continue
        if match and match["fence"][0] == fence[0][0] and len(match["fence"]) >= len(fence[0]) and not match["info"]:
            fence, pending = None, ""
            continue
        if fence[1] not in SHELL_BLOCKS:
            continue
        stripped = line.strip()
        if not pending:
            start = number
            if stripped.startswith("$ "):
                stripped = stripped[2:].lstrip()
        joined = pending + stripped
        if joined.endswith("\\"):
            pending = joined[:-1].rstrip() + " "
            continue
        pending = ""
        if joined.startswith("unlearn "):
            yield start, joined


def _commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for number, command in _shell_lines(page.read_text()):
            found.append((f"{page.relative_to(REPO)}:{number}", command))
    return found


COMMANDS = _commands()


def _parse(args: list[str]) -> click.Context:
    """`unlearn ARGS` as the CLI parses it, group by group down to the subcommand, without invoking it."""
    ctx = main.make_context("unlearn", list(args[1:]), resilient_parsing=False)
    command = main
    while isinstance(command, click.Group):
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args  # click < 8.2
        rest = [*protected, *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=False)
    return ctx


@pytest.fixture
def paths_need_not_exist(monkeypatch):
    """A shown command may name a file of the reader's (`unlearn import runs.json`): paths are checked for
    type, not for existence on this machine."""
    def walk(command):
        for param in command.params:
            if isinstance(param.type, click.Path):
                monkeypatch.setattr(param.type, "exists", False)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(main)


def test_the_pages_show_commands():
    assert len(COMMANDS) >= 20, COMMANDS
    assert {c.split()[1] for _, c in COMMANDS} >= {"run", "worker", "tune", "report", "check-attacks", "ui"}


@pytest.mark.parametrize("where, command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_shown_command_parses(where, command, paths_need_not_exist):
    if command in PLACEHOLDERS:
        pytest.skip(PLACEHOLDERS[command])
    args = shlex.split(command, comments=True)
    try:
        ctx = _parse(args)
    except click.exceptions.Exit as exc:  # --help / --version: parsed, then exited on purpose
        assert exc.exit_code == 0, f"{where}: {command}"
        return
    except click.UsageError as exc:
        pytest.fail(f"{where}: `{command}` does not parse: {exc.format_message()}")
    assert ctx.command is not main


def test_commands_are_found_after_prompts_across_continuations_and_only_in_shell_blocks():
    page = "\n".join([
        "```console", "$ unlearn run --seeds 0-2 \\", "    --quiet", "output: unlearn is not a command here", "```",
        "```text", "unlearn run [--methods a,b]", "```",
        "```bash", "unlearn ui   # a comment", "export X=1", "```",
    ])
    assert list(_shell_lines(page)) == [(2, "unlearn run --seeds 0-2 --quiet"), (10, "unlearn ui   # a comment")]


def test_the_command_parser_refuses_what_the_cli_refuses():
    with pytest.raises(click.UsageError):
        _parse(["unlearn", "run", "--no-such-flag"])
    with pytest.raises(click.UsageError):
        _parse(["unlearn", "no-such-command"])
    assert _parse(["unlearn", "run", "--references", "4"]).params["bank_size"] == 4


def test_the_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert 150 <= len(lines) <= 250, f"README.md has {len(lines)} lines: keep it 150-250, the manual is docs/"


def test_every_relative_link_of_the_readme_exists():
    text = README.read_text()
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text) + re.findall(r"^\[[^\]]+\]:\s*(\S+)", text, re.M)
    relative = [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]
    assert relative, "the README links into docs/"
    missing = [t for t in relative if not (REPO / t.split("#", 1)[0]).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
