"""The GitHub workflows: valid against check-jsonschema's vendored GitHub-workflow schema (offline),
and doing what the README says they do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.paths import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def check(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", *map(str, files)],
                          capture_output=True, text=True, timeout=120)


def load(name: str) -> dict:
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def steps_text(job: dict) -> str:
    return "\n".join(str(s.get("run", "")) + str(s.get("uses", "")) + str(s.get("with", "")) for s in job["steps"])


def test_there_are_workflows():
    assert "test.yml" in {p.name for p in WORKFLOWS}


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_matches_the_github_schema(path):
    proc = check(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n"
                   "        rn: make test\n")
    proc = check(bad)
    assert proc.returncode == 1 and "rn" in proc.stdout


def test_ci_runs_make_test_on_pushes_and_pull_requests():
    doc = load("test.yml")
    assert {"push", "pull_request"} <= set(doc["on"])
    (job,) = doc["jobs"].values()
    assert any(s.get("run", "").strip() == "make test" for s in job["steps"])
    assert doc["permissions"] == {"contents": "read"}


# admin-route:begin
def test_removal_checks_staging_through_the_lambda_before_removing():
    doc = load("remove-admin-route.yml")
    assert set(doc["on"]) == {"workflow_dispatch"}
    check_job, remove_job = doc["jobs"]["check-staging"], doc["jobs"]["open-removal-pr"]
    assert check_job["permissions"]["id-token"] == "write"
    assert any(s.get("uses", "").startswith("aws-actions/configure-aws-credentials@") for s in check_job["steps"])
    text = steps_text(check_job)
    assert "aws lambda invoke" in text and '{"action": "verify"}' in text
    # The teardown only runs after a clean check, in a job that needs it.
    assert remove_job["needs"] == "check-staging"
    runs = [s.get("run", "") for s in remove_job["steps"]]
    teardown = next(i for i, r in enumerate(runs) if "make teardown-admin-route" in r)
    pr = next(i for i, r in enumerate(runs) if "gh pr create" in r)
    assert teardown < pr


def test_removal_pr_is_opened_with_a_token_that_triggers_ci():
    doc = load("remove-admin-route.yml")
    job = doc["jobs"]["open-removal-pr"]
    text = steps_text(job) + str([s.get("env") for s in job["steps"]])
    assert "GITHUB_TOKEN" not in text and "github.token" not in text
    app = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/create-github-app-token@"))
    assert {app["with"][k] for k in ("permission-contents", "permission-pull-requests",
                                     "permission-workflows")} == {"write"}
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["token"] == "${{ steps.token.outputs.token }}"
# admin-route:end


# admin-route:begin
def _gate(tmp_path: Path, invoke: dict, response) -> subprocess.CompletedProcess:
    """Run the workflow's own "Staging must be clean" step on a Lambda answer."""
    import json
    import os

    doc = load("remove-admin-route.yml")
    step = next(s for s in doc["jobs"]["check-staging"]["steps"] if s.get("name") == "Staging must be clean")
    assert step["shell"] == "python"
    (tmp_path / "invoke.json").write_text(json.dumps(invoke))
    (tmp_path / "response.json").write_text(json.dumps(response))
    summary = tmp_path / "summary.md"
    return subprocess.run([sys.executable, "-c", step["run"]], cwd=tmp_path, capture_output=True, text=True,
                          env={"GITHUB_STEP_SUMMARY": str(summary), "PATH": os.environ.get("PATH", "")})


def test_removal_gate_follows_the_real_verify_answer(tmp_path, prod_and_staging, monkeypatch):
    import json

    from dbsync.sync import sync_databases
    from lambdas.db_sync.handler import lambda_handler
    from tests.support.env import SYNC_SETTINGS
    from tests.support.lambda_context import FakeLambdaContext

    prod_dsn, staging_dsn = prod_and_staging
    for var in SYNC_SETTINGS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SOURCE_DATABASE_URL", prod_dsn)
    monkeypatch.setenv("TARGET_DATABASE_URL", staging_dsn)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    ok = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}

    # As the old sync left it: its sequences behind its data.
    broken = json.loads(json.dumps(lambda_handler({"action": "verify"}, FakeLambdaContext())))
    gate = _gate(tmp_path, ok, broken)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "sequence: public.books" in (tmp_path / "summary.md").read_text()

    sync_databases(prod_dsn, staging_dsn)
    clean = json.loads(json.dumps(lambda_handler({"action": "verify"}, FakeLambdaContext())))
    gate = _gate(tmp_path, ok, clean)
    assert gate.returncode == 0, gate.stdout + gate.stderr

    failed = _gate(tmp_path, {**ok, "FunctionError": "Unhandled"}, {"errorMessage": "cannot connect"})
    assert failed.returncode == 1 and "cannot connect" in failed.stdout
    odd = _gate(tmp_path, ok, {"status": "fine"})
    assert odd.returncode == 1 and "unexpected" in odd.stdout
# admin-route:end
