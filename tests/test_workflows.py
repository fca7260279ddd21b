"""The GitHub workflows: valid against check-jsonschema's vendored GitHub-workflow schema (offline),
and doing what the README says they do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
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
    assert "aws lambda invoke" in text and '{"action": "check-sequences"}' in text
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
