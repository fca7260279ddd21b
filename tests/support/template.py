"""template.yaml, and the SAM translator run offline: a region from the environment, the
managed-policy map that ships with the translator, and an S3 URI in place of the local CodeUri
(what `sam build`/`sam package` would substitute)."""

from __future__ import annotations

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
