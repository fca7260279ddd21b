"""`pip install .` in a new virtual environment puts `db-sync` on its PATH with the engine and
nothing of the API's, the Lambda's or the tests' — and it works on a database that is not the
book collection's: --version, rules init, check-rules, preview, sync."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib

import pytest

from tests.support.db import execute
from tests.support.env import SYNC_SETTINGS
from tests.support.paths import ROOT
from tests.support.shop import SHOP_ROWS, SHOP_SCHEMA

KEY = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the project installed from a copy of the working tree (pip builds in
    the source tree: the copy keeps build/ out of it)."""
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "backend", src / "backend", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return venv / "bin"


def _run(bin_dir, *args, check_rc=0, **settings):
    env = {k: v for k, v in os.environ.items() if k not in SYNC_SETTINGS} | settings
    env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=120, cwd=bin_dir.parent)
    assert proc.returncode == check_rc, proc.stdout + proc.stderr
    return proc


@pytest.mark.slow
def test_pip_install_brings_the_cli_and_only_its_dependencies(installed):
    assert shutil.which("db-sync", path=str(installed)) == str(installed / "db-sync")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert _run(installed, "db-sync", "--version").stdout == f"db-sync {version}\n"
    absent = _run(installed, str(installed / "python"), "-c", "import importlib.util as u; print(*[m for m in"
                  " ('fastapi', 'mangum', 'boto3', 'aws_lambda_powertools', 'pytest', 'moto', 'uvicorn')"
                  " if u.find_spec(m)])").stdout
    assert absent.strip() == ""
    # What needs the aws extra says so in one line, not a traceback.
    env = dict(os.environ, SOURCE_DB_SECRET_ARN="arn:aws:secretsmanager:eu-west-1:1:secret:prod",
               AWS_DEFAULT_REGION="eu-west-1")
    env = {k: v for k, v in env.items() if k != "SOURCE_DATABASE_URL"}
    proc = subprocess.run(["db-sync", "rules", "init"], capture_output=True, text=True, timeout=60,
                          env=dict(env, PATH=f"{installed}{os.pathsep}{os.environ['PATH']}"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "needs the AWS libraries" in proc.stderr and "[aws]" in proc.stderr


@pytest.mark.slow
def test_the_installed_cli_on_a_database_of_its_own(installed, make_db):
    prod, staging = make_db("inst_prod"), make_db("inst_staging")
    execute(prod, *SHOP_SCHEMA, *SHOP_ROWS)
    execute(staging, *SHOP_SCHEMA)
    rules = installed.parent / "rules.yaml"
    _run(installed, "db-sync", "rules", "init", "--source", prod, "--output", str(rules))
    _run(installed, "db-sync", "check-rules", "--dsn", prod, "--rules", str(rules), check_rc=2)  # its TODO
    rules.write_text(rules.read_text().replace("login_email: TODO", "login_email: {value: a@example.com}"))
    _run(installed, "db-sync", "check-rules", "--dsn", prod, "--rules", str(rules))
    shown = _run(installed, "db-sync", "preview", "--source", prod, "--rules", str(rules), "--table", "customers",
                 SYNC_MASKING_KEY=KEY).stdout
    assert "@example.com" in shown and "@shop.test" not in shown
    done = _run(installed, "db-sync", "sync", "--source", prod, "--target", staging, "--rules", str(rules),
                SYNC_MASKING_KEY=KEY).stdout
    assert done.startswith("synced 3 table(s)")
    _run(installed, "db-sync", "check-sequences", "--dsn", staging, "--source", prod)
