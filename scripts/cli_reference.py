"""docs/cli.md's reference of every command, written from the parser itself (as sqlite-utils keeps
its CLI reference with cog): `python scripts/cli_reference.py` rewrites the part between the
markers, `--check` exits 1 when the page differs from what the parser says (a test runs it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "cli.md"
BEGIN, END = "<!-- cli-reference:begin -->", "<!-- cli-reference:end -->"


def reference() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal's width: the page must not depend on it
    sys.path.insert(0, str(ROOT / "backend"))
    from dbsync.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    parts = ["```text\n" + parser.format_help().strip() + "\n```"]
    for name, command in commands.items():
        parts += _sections(f"db-sync {name}", command)
    return "\n\n".join(parts)


def _sections(prog: str, command) -> list[str]:
    """The command's help, then each of its own subcommands' (`db-sync rules init`)."""
    parts = [f"### `{prog}`\n\n```text\n{command.format_help().strip()}\n```"]
    nested = command._subparsers._group_actions[0].choices if command._subparsers else {}
    for name, sub in nested.items():
        parts += _sections(f"{prog} {name}", sub)
    return parts


def rewritten(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{reference()}\n{END}{tail}"


def main() -> int:
    text = PAGE.read_text()
    if BEGIN not in text or END not in text:
        print(f"{PAGE}: the markers {BEGIN} … {END} are missing", file=sys.stderr)
        return 2
    new = rewritten(text)
    if "--check" in sys.argv[1:]:
        if new != text:
            print(f"{PAGE} differs from the parser: run `python scripts/cli_reference.py`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
