"""template.yaml, and the SAM translator run offline: a region from the environment, the
managed-policy map that ships with the translator, and an S3 URI in place of the local CodeUri
(what `sam build`/`sam package` would substitute)."""

from __future__ import annotations

import copy
import os

from samtranslator.internal.managed_policies import get_bundled_managed_policy_map
from samtranslator.translator.arn_generator import ArnGenerator
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from tests.support.paths import ROOT

TEMPLATE = ROOT / "template.yaml"


class BundledPolicies:
    """Stands in for ManagedPolicyLoader (which asks IAM): the map the translator ships with."""

    def load(self) -> dict[str, str]:
        return get_bundled_managed_policy_map("aws")


def sam_template() -> dict:
    return yaml_parse(TEMPLATE.read_text())


def transform_offline(parameters: dict[str, str]) -> dict:
    """The template after the SAM transform, with these parameter values."""
    template = sam_template()
    template["Globals"]["Function"]["CodeUri"] = "s3://artifacts-bucket/book-collection/backend.zip"
    saved_region, saved_env = ArnGenerator.BOTO_SESSION_REGION_NAME, os.environ.get("AWS_DEFAULT_REGION")
    ArnGenerator.BOTO_SESSION_REGION_NAME = "eu-west-1"
    os.environ["AWS_DEFAULT_REGION"] = "eu-west-1"
    try:
        return transform(template, dict(parameters), BundledPolicies())
    finally:
        ArnGenerator.BOTO_SESSION_REGION_NAME = saved_region
        if saved_env is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = saved_env


ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:{}-AbCdEf"
# The parameters without a default (the `transformed` fixture reads them from the test module).
REQUIRED = {
    "DbSecretArn": ARN.format("api-db"),
    "SourceDbSecretArn": ARN.format("prod-db"),
    "TargetDbSecretArn": ARN.format("staging-db"),
    "SyncTargetAllowlist": "staging.example.internal/books",
    "MaskingKeySecretArn": ARN.format("masking-key"),
}
NO_VALUE = object()


# -- a small CloudFormation condition evaluator ---------------------------------------------------

def parameter_values(template: dict, overrides: dict[str, str]) -> dict:
    values = {}
    for name, spec in template["Parameters"].items():
        raw = overrides.get(name, spec.get("Default"))
        assert raw is not None, f"parameter {name} has no value in this test"
        # CloudFormation splits a CommaDelimitedList on commas: "" is [""], not [].
        values[name] = str(raw).split(",") if spec["Type"] == "CommaDelimitedList" else str(raw)
    return values


def evaluate(node, params: dict, conditions: dict):
    """Resolve Ref/Fn::If/Fn::Equals/… against parameter values; keep what it cannot resolve."""
    if isinstance(node, list):
        out = [evaluate(x, params, conditions) for x in node]
        return [x for x in out if x is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, arg), = node.items()
        if key == "Ref" and arg == "AWS::NoValue":
            return NO_VALUE
        if key == "Ref" and arg in params:
            return params[arg]
        if key == "Condition":
            return conditions[arg]
        if key == "Fn::If":
            name, when_true, when_false = arg
            return evaluate(when_true if conditions[name] else when_false, params, conditions)
        if key == "Fn::Equals":
            a, b = (evaluate(x, params, conditions) for x in arg)
            return a == b
        if key == "Fn::Not":
            return not evaluate(arg[0], params, conditions)
        if key == "Fn::And":
            return all(evaluate(x, params, conditions) for x in arg)
        if key == "Fn::Or":
            return any(evaluate(x, params, conditions) for x in arg)
        if key == "Fn::Join":
            sep, items = arg
            return sep.join(evaluate(items, params, conditions))
        if key == "Fn::Split":
            sep, text = (evaluate(x, params, conditions) for x in arg)
            return text.split(sep) if isinstance(text, str) else node
        if key == "Fn::Select":
            index, items = (evaluate(x, params, conditions) for x in arg)
            return items[int(index)] if isinstance(items, list) else node
        if key == "Fn::Contains":  # Rules only: [list, value]
            items, value = (evaluate(x, params, conditions) for x in arg)
            return value in items
    out = {k: evaluate(v, params, conditions) for k, v in node.items()}
    return {k: v for k, v in out.items() if v is not NO_VALUE}


def _conditions(template: dict, params: dict) -> dict[str, bool]:
    conditions: dict[str, bool] = {}
    pending = dict(template.get("Conditions", {}))
    while pending:  # conditions may refer to each other
        for name, expr in list(pending.items()):
            try:
                conditions[name] = bool(evaluate(expr, params, conditions))
            except KeyError:
                continue
            del pending[name]
    return conditions


def deployed(template: dict, **overrides: str) -> dict:
    """The resources CloudFormation would create for these parameter values."""
    params = parameter_values(template, {**REQUIRED, **overrides})
    conditions = _conditions(template, params)
    resources = {}
    for name, res in copy.deepcopy(template["Resources"]).items():
        if "Condition" in res and not conditions[res["Condition"]]:
            continue
        resources[name] = evaluate(res, params, conditions)
    return resources


def of_type(resources: dict, kind: str) -> dict:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def failed_rules(template: dict, **overrides: str) -> list[str]:
    """The `Rules:` assertions CloudFormation would refuse the stack with, as their descriptions."""
    params = parameter_values(template, {**REQUIRED, **overrides})
    failed = []
    for rule in (template.get("Rules") or {}).values():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], params, {}):
            continue
        failed += [a["AssertDescription"] for a in rule["Assertions"] if not evaluate(a["Assert"], params, {})]
    return failed
