"""The reference in docs/ held to the code: the CLI's help, the sync's phases, its result's keys."""

from __future__ import annotations

import re
import subprocess
import sys
import typing

from dbsync.results import SyncReport
from dbsync.sync.phases import PHASES
from tests.support.paths import ROOT

SYNC_DOC = (ROOT / "docs" / "sync.md").read_text()


def test_the_cli_reference_is_what_the_parser_says():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_the_phase_list_is_the_code_s():
    paragraph = SYNC_DOC.split("The phases, in order,")[1].split("\n\n")[0]
    names = [n for n in re.findall(r"`([a-z_]+)`", paragraph) if n not in {"timings"}]
    assert names == [p.name for p in PHASES]


def test_the_result_table_names_every_key_of_the_report_and_no_other():
    section = SYNC_DOC.split("## The result")[1].split("\n## ")[0]
    documented = set()
    for row in re.findall(r"^\| (`[^|]+) \|", section, flags=re.MULTILINE):
        documented |= set(re.findall(r"`([a-z_]+)`", row))
    assert documented == set(typing.get_type_hints(SyncReport))
