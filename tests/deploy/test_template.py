"""template.yaml: cfn-lint, the SAM transform, the schedule's state, the handlers and the settings.

The SAM translator runs offline here: a region from the environment, the managed-policy map that
ships with the translator, and an S3 URI in place of the local CodeUri (what `sam build`/`sam
package` would substitute). It leaves `Fn::If` unresolved, so the tests evaluate the conditions
themselves for each parameter value, as CloudFormation would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.template import REQUIRED, TEMPLATE, deployed, of_type, sam_template

# transformed, the template through the SAM translator with REQUIRED's values, is a fixture of
# tests/deploy/conftest.py.

BIN = Path(sys.executable).parent

# The settings named in the README's table; the template must not invent others.
KNOWN_ENV = {
    "DATABASE_URL", "DB_SECRET_ARN", "DB_HOST", "DB_PORT", "DB_NAME", "LOCK_TIMEOUT",
    "SOURCE_DATABASE_URL", "TARGET_DATABASE_URL", "SOURCE_DB_SECRET_ARN", "TARGET_DB_SECRET_ARN",
    "SOURCE_DB_HOST", "SOURCE_DB_PORT", "SOURCE_DB_NAME", "TARGET_DB_HOST", "TARGET_DB_PORT",
    "TARGET_DB_NAME", "SYNC_TARGET_ALLOWLIST", "SYNC_RULES_FILE", "SYNC_MASKING_KEY", "SYNC_MASKING_KEY_SECRET_ARN",
    "POWERTOOLS_METRICS_NAMESPACE",
    # admin-route:begin
    "ADMIN_API_KEY", "ADMIN_API_KEY_SECRET_ARN", "ADMIN_ALLOW_PROD", "STAGE",
    # admin-route:end
}

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:{}-AbCdEf"
# REQUIRED, the parameters without a default, is tests/support/template.py's (the `transformed`
# fixture reads it from this module); deployed() evaluates the conditions for parameter values.


# -- the tests --------------------------------------------------------------------------------------

def test_cfn_lint_passes():
    # Informational checks too: the template should not even draw a remark.
    proc = subprocess.run([str(BIN / "cfn-lint"), "--include-checks", "I", "--", str(TEMPLATE)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cfn_lint_would_catch_a_broken_template(tmp_path):
    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE.read_text().replace("MemorySize: 1024", "MemorySize: 100000", 1))
    proc = subprocess.run([str(BIN / "cfn-lint"), "--", str(broken)], capture_output=True, text=True)
    assert proc.returncode != 0 and "100000" in proc.stdout


def test_sam_transform_gives_two_functions_from_one_artifact(transformed):
    functions = of_type(transformed["Resources"], "AWS::Lambda::Function")
    handlers = {f["Properties"]["Handler"] for f in functions.values()}
    assert handlers == {"app.main.handler", "lambdas.db_sync.handler.lambda_handler"}
    codes = {repr(f["Properties"]["Code"]) for f in functions.values()}
    assert len(codes) == 1, "both functions must deploy the same artifact"
    assert sam_template()["Globals"]["Function"]["CodeUri"] == "backend/"
    sync = transformed["Resources"]["DbSyncFunction"]["Properties"]
    assert sync["Timeout"] == 900
    assert sync["MemorySize"] >= 1024


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_schedule_state_follows_the_parameter(transformed, enabled):
    assert sam_template()["Parameters"]["SyncScheduleEnabled"]["AllowedValues"] == ["true", "false"]
    rules = of_type(deployed(transformed, SyncScheduleEnabled=enabled), "AWS::Events::Rule")
    assert len(rules) == 2  # the sync's, and the weekly verify's
    rule, verify = _sync_rule(rules), _verify_rule(rules)
    assert rule["Properties"]["State"] == verify["Properties"]["State"] == (
        "ENABLED" if enabled == "true" else "DISABLED")
    assert verify["Properties"]["ScheduleExpression"] == sam_template()["Parameters"]["VerifyScheduleExpression"][
        "Default"] == "cron(0 6 ? * SUN *)"
    (target,) = verify["Properties"]["Targets"]
    assert json.loads(target["Input"]) == {"action": "verify"}
    assert rule["Properties"]["ScheduleExpression"] == sam_template()["Parameters"]["SyncScheduleExpression"][
        "Default"]
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["DbSyncFunction", "Arn"]}


def _verify_rule(rules: dict) -> dict:
    (rule,) = [r for r in rules.values() if "Input" in r["Properties"]["Targets"][0]]
    return rule


def _sync_rule(rules: dict) -> dict:
    (rule,) = [r for r in rules.values() if "Input" not in r["Properties"]["Targets"][0]]
    return rule


def test_schedule_expression_is_a_parameter(transformed):
    resources = deployed(transformed, SyncScheduleExpression="rate(6 hours)", VerifyScheduleExpression="rate(7 days)")
    rules = of_type(resources, "AWS::Events::Rule")
    assert _sync_rule(rules)["Properties"]["ScheduleExpression"] == "rate(6 hours)"
    assert _verify_rule(rules)["Properties"]["ScheduleExpression"] == "rate(7 days)"


def test_verify_findings_and_personal_data_leaks_alarm():
    resources = sam_template()["Resources"]
    for name, metric in (("DbSyncVerifyAlarm", "VerifyFindings"), ("DbSyncPersonalDataAlarm", "PersonalDataLeaks")):
        alarm = resources[name]["Properties"]
        assert alarm["MetricName"] == metric and alarm["Threshold"] == 1
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["Dimensions"] == [{"Name": "service", "Value": "db_sync"}]


def _secret_resources(role: dict) -> list:
    found = []
    for policy in role["Properties"].get("Policies", []):
        for st in policy["PolicyDocument"]["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if any(a.startswith("secretsmanager:") for a in actions):
                assert actions == ["secretsmanager:GetSecretValue"], actions
                res = st["Resource"]
                found.append(res["Fn::Sub"][1]["secretArn"] if isinstance(res, dict) and "Fn::Sub" in res else res)
    return found


def test_each_function_reads_only_its_own_secrets(transformed):
    resources = deployed(transformed)
    assert _secret_resources(resources["ApiFunctionRole"]) == [REQUIRED["DbSecretArn"]]
    assert sorted(_secret_resources(resources["DbSyncFunctionRole"])) == sorted(
        [REQUIRED["SourceDbSecretArn"], REQUIRED["TargetDbSecretArn"], REQUIRED["MaskingKeySecretArn"]])
    opted_out = deployed(transformed, MaskingKeySecretArn="", SyncRulesFile="none")
    assert sorted(_secret_resources(opted_out["DbSyncFunctionRole"])) == sorted(
        [REQUIRED["SourceDbSecretArn"], REQUIRED["TargetDbSecretArn"]])


def test_environment_uses_only_documented_settings(transformed):
    resources = deployed(transformed, DbHost="db.internal", DbPort="5433", DbName="books",
                         SourceDbHost="prod.internal", TargetDbName="staging")
    for fn in of_type(resources, "AWS::Lambda::Function").values():
        names = set(fn["Properties"]["Environment"]["Variables"])
        assert names <= KNOWN_ENV, names - KNOWN_ENV
    api = resources["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert api["DB_SECRET_ARN"] == REQUIRED["DbSecretArn"]
    assert (api["DB_HOST"], api["DB_PORT"], api["DB_NAME"]) == ("db.internal", "5433", "books")
    assert api["LOCK_TIMEOUT"] == "10s"
    assert api["STAGE"] == "staging"  # admin-route
    sync = resources["DbSyncFunction"]["Properties"]["Environment"]["Variables"]
    assert sync["SYNC_TARGET_ALLOWLIST"] == REQUIRED["SyncTargetAllowlist"]
    assert sync["SOURCE_DB_HOST"] == "prod.internal" and sync["TARGET_DB_NAME"] == "staging"
    assert "SOURCE_DB_NAME" not in sync and "TARGET_DB_HOST" not in sync
    # The deployed sync always masks: the shipped rules, at the artifact's root (CodeUri backend/).
    assert sync["SYNC_RULES_FILE"] == "sync-rules.yaml" and (ROOT / "backend" / sync["SYNC_RULES_FILE"]).is_file()
    assert sync["SYNC_MASKING_KEY_SECRET_ARN"] == REQUIRED["MaskingKeySecretArn"]


def test_masking_needs_a_key_unless_opted_out_explicitly():
    rule = sam_template()["Rules"]["MaskingNeedsAKey"]
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "SyncRulesFile"}, "none"]}]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "MaskingKeySecretArn"}, ""]}]}


def test_empty_optional_parameters_set_no_variables(transformed):
    resources = deployed(transformed)
    api = resources["ApiFunction"]["Properties"]["Environment"]["Variables"]
    sync = resources["DbSyncFunction"]["Properties"]["Environment"]["Variables"]
    assert not {"DB_HOST", "DB_PORT", "DB_NAME"} & set(api)
    assert not {k for k in sync if re.match(r"(SOURCE|TARGET)_DB_(HOST|PORT|NAME)$", k)}


def test_vpc_config_only_when_subnets_are_given(transformed):
    outside = deployed(transformed)
    inside = deployed(transformed, SubnetIds="subnet-1,subnet-2", SecurityGroupIds="sg-1")
    for name in ("ApiFunction", "DbSyncFunction"):
        assert "VpcConfig" not in outside[name]["Properties"]
        assert inside[name]["Properties"]["VpcConfig"] == {
            "SubnetIds": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}


def test_logs_alarm_failure_destination_and_outputs(transformed):
    res = transformed["Resources"]
    for fn in ("ApiFunction", "DbSyncFunction"):
        group = res[fn]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert res[group]["Type"] == "AWS::Logs::LogGroup"
        assert res[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    invoke = of_type(res, "AWS::Lambda::EventInvokeConfig")
    (cfg,) = invoke.values()
    assert cfg["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["DbSyncFailureQueue", "Arn"]}
    alarm = res["DbSyncErrorsAlarm"]
    assert alarm["Properties"]["MetricName"] == "Errors"
    assert alarm["Properties"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "DbSyncFunction"}}]
    with_topic = deployed(transformed, AlarmTopicArn="arn:aws:sns:eu-west-1:123456789012:oncall")
    assert with_topic["DbSyncErrorsAlarm"]["Properties"]["AlarmActions"] == [
        "arn:aws:sns:eu-west-1:123456789012:oncall"]
    assert "AlarmActions" not in deployed(transformed)["DbSyncErrorsAlarm"]["Properties"]
    assert {"ApiUrl", "ApiFunctionName", "DbSyncFunctionName"} <= set(transformed["Outputs"])
    routes = {r["Properties"]["RouteKey"] for r in of_type(res, "AWS::ApiGatewayV2::Route").values()}
    body = res["ServerlessHttpApi"]["Properties"].get("Body", {})
    assert routes or {"/", "/{proxy+}"} <= set(body.get("paths", {}))


# admin-route:begin
def test_admin_key_secret_only_when_given(transformed):
    without = deployed(transformed)
    assert "ADMIN_API_KEY_SECRET_ARN" not in without["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert _secret_resources(without["ApiFunctionRole"]) == [REQUIRED["DbSecretArn"]]
    key = ARN.format("admin-key")
    with_key = deployed(transformed, AdminApiKeySecretArn=key)
    assert with_key["ApiFunction"]["Properties"]["Environment"]["Variables"]["ADMIN_API_KEY_SECRET_ARN"] == key
    assert sorted(_secret_resources(with_key["ApiFunctionRole"])) == sorted([REQUIRED["DbSecretArn"], key])
    assert _secret_resources(with_key["DbSyncFunctionRole"]).count(key) == 0
# admin-route:end


def test_requirements_match_the_project_dependencies():
    """sam build installs backend/requirements.txt: a runtime dependency missing there breaks Lambda."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["lambda"]
    lines = [ln.strip() for ln in (ROOT / "backend" / "requirements.txt").read_text().splitlines()]
    assert sorted(ln for ln in lines if ln and not ln.startswith("#")) == sorted(declared)


def _handlers() -> list[str]:
    return [res["Properties"]["Handler"] for res in sam_template()["Resources"].values()
            if res["Type"] == "AWS::Serverless::Function"]


def test_the_template_names_both_handlers():
    assert sorted(_handlers()) == ["app.main.handler", "lambdas.db_sync.handler.lambda_handler"]


@pytest.mark.parametrize("handler", _handlers())
def test_handler_imports_from_the_artifact_alone(handler):
    """Import the handler as Lambda would: a fresh interpreter, only backend/ on the path, no settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABASE_URL", "DB_", "SOURCE_", "TARGET_", "ADMIN_"))}
    env["PYTHONPATH"] = str(ROOT / "backend")
    env.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    module, _, attr = handler.rpartition(".")
    code = ("import importlib, sys; sys.path[:] = [p for p in sys.path if p not in ('', sys.argv[1])]; "
            f"h = getattr(importlib.import_module({module!r}), {attr!r}); assert callable(h); "
            "assert not any(m == 'localdev' or m.startswith('localdev.') for m in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT)], cwd=ROOT / "backend", env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{handler}: {proc.stderr.strip().splitlines()[-1:]}"
