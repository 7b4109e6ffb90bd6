"""Every command line the README shows is accepted by the CLI as written.

The README's command table and code blocks are read, placeholders (BLOB, INPUT.npy, ...) are
given stand-in values, optional parts in brackets are tried both with and without, and each
line must parse (argparse exits with status 2 on a line it does not accept). Commands that run
quickly also run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pymicro.cli import SUBCOMMANDS, build_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _command_lines() -> list[str]:
    lines = set()
    for m in re.finditer(r"^\| `(pymicro [^`]+)` \|", README, re.M):  # the command table
        lines.add(m.group(1))
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", README, re.S):  # shell blocks
        for line in block.splitlines():
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("pymicro "):
                    lines.add(part)
    return sorted(lines)


def _variants(line: str) -> list[list[str]]:
    """The line with every [optional] part left out, and with all of them in."""
    stand_in = {"BLOB": "model.pmb", "INPUT.npy": "x.npy", "OUT.onnx": "out.onnx", "P.npy": "p.npy", "N": "1000",
                "S": "1.5", "MB": "64", "PRESET": "momentum"}

    def words(text: str) -> list[str]:
        out = []
        for w in text.split():
            if w == "...":
                continue
            out.append(stand_in.get(w, w))
        return out

    bare = re.sub(r"\s*\[[^\]]*\]", "", line)
    full = re.sub(r"\[([^\]]*)\]", r"\1", line)
    bare_words, full_words = words(bare)[1:], words(full)[1:]
    if bare_words == ["models"]:  # `pymicro models ...`: the table elides the action
        bare_words, full_words = ["models", "list"], ["models", "list"]
    return [bare_words, full_words]


LINES = _command_lines()


def test_the_readme_shows_every_subcommand():
    shown = {line.split()[1] for line in LINES}
    assert shown >= {name.replace("_", "-") for name in SUBCOMMANDS}, sorted(shown)


@pytest.mark.parametrize("line", LINES)
def test_each_readme_command_line_parses(line):
    parser = build_parser()
    for argv in _variants(line):
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # argparse refuses the line
            pytest.fail(f"`pymicro {' '.join(argv)}` (README: `{line}`) is refused: exit {e.code}")
        assert callable(args.func)


def test_mcp_http_spelling_is_the_transport_option():
    args = build_parser().parse_args(["mcp", "--http"])
    assert args.transport == "http"
    assert build_parser().parse_args(["mcp"]).transport == "stdio"
