"""docs/quickstart.md runs as written (as sqlite-utils tests its docs): every ```sh block, in order,
in one shell, against a real prod and an empty staging of a schema that is not the book
collection's; a block after `<!-- test: skip -->` is not run, one after `<!-- test: exit N -->`
must exit N."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from localdev.pgserver import bin_dir
from tests.support.db import execute
from tests.support.env import SYNC_SETTINGS
from tests.support.paths import ROOT
from tests.support.shop import SHOP_ROWS, SHOP_SCHEMA

PAGE = ROOT / "docs" / "quickstart.md"
BLOCK = re.compile(r"(?:<!-- test: (?P<mark>[^>]*?) -->\n)?```sh\n(?P<body>.*?)```", re.S)


def blocks(text: str) -> list[tuple[str | None, str]]:
    """(mark, commands) of each ```sh block, in order."""
    return [(m.group("mark"), m.group("body")) for m in BLOCK.finditer(text)]


def script(text: str) -> str:
    parts = ["set -euo pipefail"]
    for i, (mark, body) in enumerate(blocks(text)):
        if mark == "skip":
            continue
        parts.append(f"echo '>>> block {i}'")
        if not mark:  # in this shell, so that an `export` holds for the blocks after it; set -e ends at a failure
            parts.append(body)
            continue
        expected = int(mark.removeprefix("exit "))
        parts.append(f"set +e; (\n{body}); rc=$?; set -e\n"
                     f"[ $rc -eq {expected} ] || {{ echo \"block {i} exited $rc, not {expected}\" >&2; exit 99; }}")
    return "\n".join(parts) + "\n"


def test_the_block_reader():
    text = "a\n```sh\none\n```\n<!-- test: skip -->\n```sh\ntwo\n```\n<!-- test: exit 2 -->\n```sh\nthree\n```\n"
    assert blocks(text) == [(None, "one\n"), ("skip", "two\n"), ("exit 2", "three\n")]
    assert "two" not in script(text) and "[ $rc -eq 2 ]" in script(text)


@pytest.mark.slow
def test_the_quickstart_runs_as_written(make_db, tmp_path):
    prod, staging = make_db("qs_prod"), make_db("qs_staging")
    # The page's rules file needs no decision: no NOT NULL email too short for any masked one.
    execute(prod, *SHOP_SCHEMA, *SHOP_ROWS, "ALTER TABLE customers DROP COLUMN login_email")
    env = {k: v for k, v in os.environ.items() if k not in SYNC_SETTINGS}
    env.update(PROD=prod, STAGING=staging, PATH=os.pathsep.join([str(Path(sys.executable).parent), str(bin_dir()),
                                                                  env.get("PATH", "")]))
    proc = subprocess.run(["bash", "-c", script(PAGE.read_text())], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "user-" in out and "@example.com" in out and "@shop.test" not in out.split(">>> block 4")[1]
    rules = (tmp_path / "sync-rules.yaml").read_text()
    assert "email: email" in rules and ": TODO" not in rules
    result = json.loads(out[out.rindex("\n{") + 1:])  # the handler's result, after its log lines
    assert result["ok"] and result["validation"]["ok"]
    conn_rows = subprocess.run(["psql", "-XAtc", "SELECT count(*), count(*) FILTER (WHERE email LIKE"
                                " '%@shop.test') FROM customers", staging], env=env, capture_output=True, text=True)
    assert conn_rows.stdout.strip() == "40|0"


def test_the_readme_is_short_and_starts_with_the_three_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 150
    first = "\n".join(lines[:8])
    assert "make demo" in first and "make test" in first and "pipx install ." in first and "quickstart.md" in first
