"""Every `pivh-live ...` command shown in a bash block of the README or docs/ parses.

A renamed or removed option would otherwise leave the documentation telling
a newcomer a command that fails; this only parses (argparse), it runs nothing.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pivh_live.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```(?:bash|sh|console)\n(.*?)^```", re.M | re.S)
_PREFIX = re.compile(r"^(?:sudo\s+)?(?:\S*/)?pivh-live(?=\s|$)")


def documented_commands(text: str) -> list[str]:
    """The `pivh-live` command lines in ``text``'s bash blocks (continuations joined)."""
    commands = []
    for block in _BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            for part in re.split(r"\s*(?:&&|\|\||;)\s*", line):
                part = part.split(" #", 1)[0].split(" |", 1)[0].strip()
                match = _PREFIX.match(part)
                if match:
                    commands.append(" ".join(part[match.end() :].split()))
    return commands


def _cases() -> list[tuple[str, str]]:
    return [
        (path.name, command)
        for path in DOCS
        for command in documented_commands(path.read_text(encoding="utf-8"))
    ]


def test_the_docs_show_commands() -> None:
    names = {name for name, _ in _cases()}
    assert "README.md" in names


def test_extraction_joins_continuations_and_splits_chains() -> None:
    text = "```bash\nx && .venv/bin/pivh-live run \\\n  --duration 3 # note\n```\n"
    assert documented_commands(text) == ["run --duration 3"]


@pytest.mark.parametrize(("doc", "command"), _cases())
def test_documented_command_parses(doc: str, command: str) -> None:
    parser = build_parser()
    try:
        args = parser.parse_args(shlex.split(command))
    except SystemExit as exc:  # --help and --version exit 0 after printing
        if exc.code != 0:
            pytest.fail(f"{doc}: `pivh-live {command}` does not parse (exit {exc.code})")
        return
    assert args.command, f"{doc}: `pivh-live {command}` names no command"
