"""deploy/Dockerfile, the Fargate task's image, checked without Docker: what it is built from and
runs as, and its command — read from its ENTRYPOINT and CMD — run here as a process with `.venv/bin`
on PATH and settings from the environment alone, as the task definition passes them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest

from tests.support.db import snapshot
from tests.support.paths import ROOT
from tests.support.template import sam_template

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
BIN = Path(sys.executable).parent


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, args = pending.strip().partition(" ")
        out.append((word.upper(), " ".join(args.split())))
        pending = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions(DOCKERFILE.read_text())
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)  # the exec form: no shell between the task and db-sync's signals
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def image_command() -> list[str]:
    """What the container runs: the final stage's last ENTRYPOINT, then its last CMD."""
    stage = final_stage()
    entrypoint = [exec_form(a) for w, a in stage if w == "ENTRYPOINT"][-1:] or [[]]
    cmd = [exec_form(a) for w, a in stage if w == "CMD"][-1:] or [[]]
    return entrypoint[0] + cmd[0]


def test_the_instruction_reader():
    text = "# c\nFROM a AS b\nRUN x \\\n    && y\n\nCMD [\"z\"]\n"
    assert instructions(text) == [("FROM", "a AS b"), ("RUN", "x && y"), ("CMD", '["z"]')]


def test_the_image_is_slim_python_of_the_lambdas_runtime_and_runs_as_a_user():
    steps = instructions(DOCKERFILE.read_text())
    runtime = sam_template()["Globals"]["Function"]["Runtime"]  # python3.12
    bases = [args.split()[0] for word, args in steps if word == "FROM"]
    assert bases and all(b == f"python:{runtime.removeprefix('python')}-slim" for b in bases), bases
    users = [args for word, args in final_stage() if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert image_command() == ["db-sync", "sync"]


def test_the_image_installs_the_project_with_its_aws_extra_and_not_the_apis():
    stage = final_stage()
    runs = " ; ".join(args for word, args in stage if word == "RUN")
    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    # From the first stage's wheels alone: what was resolved there is what runs.
    assert f"--no-index --find-links /tmp/wheels '{name}[aws]'" in runs
    assert "requirements.txt" not in DOCKERFILE.read_text()  # the Lambda's, with FastAPI and Mangum
    steps = instructions(DOCKERFILE.read_text())
    build = steps[:len(steps) - len(stage)]
    assert ("COPY", "backend/ backend/") in build
    assert any("pip wheel" in a and "'.[aws]'" in a for w, a in build if w == "RUN")


def test_the_workdir_holds_the_rules_the_template_names():
    stage = final_stage()
    workdir = [args for word, args in stage if word == "WORKDIR"][-1]
    after = stage[stage.index(("WORKDIR", workdir)):]
    assert ("COPY", "backend/sync-rules.yaml ./") in after
    assert sam_template()["Parameters"]["SyncRulesFile"]["Default"] == "sync-rules.yaml"


def test_the_build_context_is_kept_to_what_the_image_copies():
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*" and {"!pyproject.toml", "!README.md", "!backend/"} <= set(rules)
    copied = {args.split()[0] for word, args in instructions(DOCKERFILE.read_text())
              if word == "COPY" and not args.startswith("--from")}
    for src in copied:
        assert f"!{src}" in rules or src.startswith("backend/"), src


def run_image_command(cwd: Path, **settings: str) -> subprocess.CompletedProcess:
    env = {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(cwd), "LANG": "C.UTF-8",
           **settings}
    return subprocess.run(image_command(), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def rows(dsn: str) -> dict:
    return {k: v for k, v in snapshot(dsn).items() if k.startswith("rows ")}


def test_the_image_command_refreshes_staging_from_the_environment_alone(prod_and_staging, tmp_path):
    prod_dsn, staging_dsn = prod_and_staging
    conn = psycopg2.connect(prod_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO books (title) VALUES ('written in prod since the last sync')")
    conn.close()
    assert rows(staging_dsn) != rows(prod_dsn)
    proc = run_image_command(tmp_path, SOURCE_DATABASE_URL=prod_dsn, TARGET_DATABASE_URL=staging_dsn,
                             SYNC_TARGET_ALLOWLIST=psycopg2.extensions.parse_dsn(staging_dsn)["dbname"],
                             SYNC_RULES_FILE="none")
    assert proc.returncode == 0, proc.stderr
    assert re.match(r"synced 6 table\(s\), \d+ rows", proc.stdout), proc.stdout
    assert rows(staging_dsn) == rows(prod_dsn)
    check = subprocess.run([str(BIN / "db-sync"), "check-sequences", "--dsn", staging_dsn], capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr  # and its sequences are prod's


def test_the_image_command_masks_with_the_rules_in_its_workdir(prod_and_staging, tmp_path):
    """The template's default SYNC_RULES_FILE, sync-rules.yaml, read from the working directory the
    Dockerfile copies it to."""
    prod_dsn, staging_dsn = prod_and_staging
    workdir = tmp_path / "app"
    workdir.mkdir()
    shutil.copy(ROOT / "backend" / "sync-rules.yaml", workdir)
    proc = run_image_command(workdir, SOURCE_DATABASE_URL=prod_dsn, TARGET_DATABASE_URL=staging_dsn,
                             SYNC_TARGET_ALLOWLIST=psycopg2.extensions.parse_dsn(staging_dsn)["dbname"],
                             SYNC_RULES_FILE="sync-rules.yaml", SYNC_MASKING_KEY="image-test-key-0123456789abcdef01234")
    assert proc.returncode == 0, proc.stderr
    emails = {}
    for name, dsn in (("prod", prod_dsn), ("staging", staging_dsn)):
        conn = psycopg2.connect(dsn)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT email FROM users")
                emails[name] = {r[0] for r in cur.fetchall()}
        finally:
            conn.close()
    assert emails["prod"] and len(emails["staging"]) == len(emails["prod"])
    assert not emails["prod"] & emails["staging"]
    assert "image-test-key" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("missing", ["SOURCE_DATABASE_URL", "TARGET_DATABASE_URL"])
def test_the_image_command_without_its_settings_fails_in_one_line(missing, tmp_path):
    settings = {"SOURCE_DATABASE_URL": "postgresql://x@127.0.0.1:1/a", "TARGET_DATABASE_URL":
                "postgresql://x@127.0.0.1:1/b", "SYNC_RULES_FILE": "none"}
    del settings[missing]
    proc = run_image_command(tmp_path, **settings)
    assert proc.returncode == 2
    assert proc.stderr.startswith("db-sync: error: no ") and missing in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
