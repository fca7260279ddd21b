"""template.yaml with either runner: the Lambda (the default) or the Fargate task, and the alarms
that watch them — the freshness alarm, armed only while the schedule is on, and the failed-task
alarm. cfn-lint and the SAM transform of the whole template are tests/deploy/test_template.py's;
here the conditions are evaluated for each parameter value (tests/support/template.py)."""

from __future__ import annotations

import json
import re

import pytest

from dbsync import metrics
from tests.support.template import REQUIRED, deployed, failed_rules, of_type, sam_template

# transformed (the template through the SAM translator, REQUIRED's values) is a fixture of
# tests/deploy/conftest.py.

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/db-sync:2026.11.25"
NETWORK = {"SubnetIds": "subnet-0a1b2c3d,subnet-4e5f6a7b", "SecurityGroupIds": "sg-0123abcd"}
FARGATE = {"SyncRunner": "fargate", "SyncImageUri": IMAGE, **NETWORK}
TOPIC = "arn:aws:sns:eu-west-1:123456789012:oncall"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012",
          "AWS::StackName": "books-staging"}


def sub(node) -> str:
    """A resolved Fn::Sub: its variables, then the pseudo-parameters."""
    text, variables = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
    return re.sub(r"\$\{([^}]+)\}", lambda m: {**PSEUDO, **variables}[m.group(1)], text)


def kinds(resources: dict) -> set[str]:
    return {r["Type"] for r in resources.values()}


def lambda_rule(resources: dict) -> dict:
    """The Lambda's sync schedule (the weekly verify has a schedule of its own, with an input)."""
    (rule,) = [r for r in of_type(resources, "AWS::Events::Rule").values()
               if r["Properties"].get("ScheduleExpression")
               and "verify" not in json.dumps(r["Properties"].get("Targets", []))]
    return rule["Properties"]


def task_environment(resources: dict) -> dict[str, str]:
    (container,) = resources["DbSyncTaskDefinition"]["Properties"]["ContainerDefinitions"]
    return {e["Name"]: e["Value"] for e in container["Environment"]}


def statements(role: dict) -> list[dict]:
    return [st for p in role["Properties"]["Policies"] for st in p["PolicyDocument"]["Statement"]]


# -- the two runners --------------------------------------------------------------------------------

def test_the_runner_is_a_parameter_and_lambda_by_default():
    spec = sam_template()["Parameters"]["SyncRunner"]
    assert spec["Default"] == "lambda" and spec["AllowedValues"] == ["lambda", "fargate"]


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_the_lambda_runner_deploys_no_ecs_and_keeps_its_schedule(transformed, enabled):
    resources = deployed(transformed, SyncScheduleEnabled=enabled)
    assert not {k for k in kinds(resources) if k.startswith(("AWS::ECS::", "AWS::Scheduler::"))}
    assert not {"DbSyncTaskRole", "DbSyncTaskExecutionRole", "DbSyncTaskFailedRule", "DbSyncTaskFailedAlarm",
                "DbSyncFailureQueuePolicy", "DbSyncTaskLogGroup"} & set(resources)
    assert lambda_rule(resources)["State"] == ("ENABLED" if enabled == "true" else "DISABLED")
    outputs = transformed["Outputs"]
    assert {outputs[o].get("Condition") for o in ("DbSyncClusterArn", "DbSyncTaskDefinitionArn")} == {"OnFargate"}


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_the_fargate_runner_schedules_the_task_and_turns_the_lambda_schedule_off(transformed, enabled):
    resources = deployed(transformed, SyncScheduleEnabled=enabled, **FARGATE)
    assert {"AWS::ECS::Cluster", "AWS::ECS::TaskDefinition", "AWS::Scheduler::Schedule"} <= kinds(resources)
    assert "DbSyncFunction" in resources  # the Lambda stays deployed (checks, manual runs)
    assert lambda_rule(resources)["State"] == "DISABLED"  # whatever SyncScheduleEnabled says

    schedule = resources["DbSyncTaskSchedule"]["Properties"]
    assert schedule["State"] == ("ENABLED" if enabled == "true" else "DISABLED")
    assert schedule["ScheduleExpression"] == sam_template()["Parameters"]["SyncScheduleExpression"]["Default"]
    target = schedule["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["DbSyncCluster", "Arn"]}
    assert target["RoleArn"] == {"Fn::GetAtt": ["DbSyncSchedulerRole", "Arn"]}
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["DbSyncFailureQueue", "Arn"]}
    ecs = target["EcsParameters"]
    assert ecs["TaskDefinitionArn"] == {"Ref": "DbSyncTaskDefinition"}
    assert (ecs["LaunchType"], ecs["TaskCount"]) == ("FARGATE", 1)
    assert ecs["NetworkConfiguration"]["AwsvpcConfiguration"] == {
        "Subnets": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"], "SecurityGroups": ["sg-0123abcd"],
        "AssignPublicIp": "DISABLED"}


def test_an_existing_cluster_replaces_the_new_one(transformed):
    cluster = "arn:aws:ecs:eu-west-1:123456789012:cluster/shared"
    resources = deployed(transformed, EcsClusterArn=cluster, **FARGATE)
    assert "DbSyncCluster" not in resources
    assert resources["DbSyncTaskSchedule"]["Properties"]["Target"]["Arn"] == cluster
    assert resources["DbSyncTaskFailedRule"]["Properties"]["EventPattern"]["detail"]["clusterArn"] == [cluster]


def test_fargate_is_refused_without_an_image_subnets_and_security_groups():
    template = sam_template()
    assert failed_rules(template) == []  # the Lambda runner needs none of them
    missing = failed_rules(template, SyncRunner="fargate")
    assert [m.split()[0] for m in missing] == ["SyncImageUri", "SubnetIds", "SecurityGroupIds"]
    assert failed_rules(template, **FARGATE) == []
    assert len(failed_rules(template, **{**FARGATE, "SecurityGroupIds": ""})) == 1


def test_the_task_runs_the_image_with_the_lambdas_settings(transformed):
    optional = {"SourceDbHost": "prod.internal", "SourceDbPort": "5433", "TargetDbName": "staging"}
    resources = deployed(transformed, **FARGATE, **optional)
    task = resources["DbSyncTaskDefinition"]["Properties"]
    (container,) = task["ContainerDefinitions"]
    assert container["Image"] == IMAGE
    assert "Command" not in container and "EntryPoint" not in container  # the image's own `db-sync sync`
    # SIGTERM, then SIGKILL after StopTimeout: time for db-sync to cancel and roll back (Fargate's maximum).
    assert container["StopTimeout"] == 120
    assert (task["RequiresCompatibilities"], task["NetworkMode"]) == (["FARGATE"], "awsvpc")
    lambda_env = resources["DbSyncFunction"]["Properties"]["Environment"]["Variables"]
    env = task_environment(resources)
    assert env == {**lambda_env, "SYNC_MAX_SECONDS": "14400", "SYNC_METRICS": "cloudwatch"}
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == metrics.DEFAULT_NAMESPACE
    assert env["SOURCE_DB_HOST"] == "prod.internal" and "TARGET_DB_HOST" not in env
    assert env["SYNC_MASKING_KEY_SECRET_ARN"] == REQUIRED["MaskingKeySecretArn"]
    assert task_environment(deployed(transformed, SyncMaxSeconds="3600", **FARGATE))["SYNC_MAX_SECONDS"] == "3600"
    logs = container["LogConfiguration"]
    assert logs["LogDriver"] == "awslogs" and logs["Options"]["awslogs-group"] == {"Ref": "DbSyncTaskLogGroup"}
    assert task["ExecutionRoleArn"] == {"Fn::GetAtt": ["DbSyncTaskExecutionRole", "Arn"]}
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["DbSyncTaskRole", "Arn"]}


def test_every_cpu_size_gets_a_valid_fargate_memory():
    template = sam_template()
    # Fargate's pairs (MiB): https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html
    valid = {"512": range(1024, 4097, 1024), "1024": range(2048, 8193, 1024), "2048": range(4096, 16385, 1024),
             "4096": range(8192, 30721, 1024)}
    for cpu in template["Parameters"]["SyncTaskCpu"]["AllowedValues"]:
        assert int(template["Mappings"]["FargateMemory"][cpu]["MiB"]) in valid[cpu]
    assert template["Resources"]["DbSyncTaskDefinition"]["Properties"]["Memory"] == {
        "Fn::FindInMap": ["FargateMemory", {"Ref": "SyncTaskCpu"}, "MiB"]}


# -- least privilege ----------------------------------------------------------------------------------

def test_the_task_role_reads_the_syncs_secrets_and_writes_metrics_in_its_namespace(transformed):
    role = deployed(transformed, MetricsNamespace="DbSync/books", **FARGATE)["DbSyncTaskRole"]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "ecs-tasks.amazonaws.com"}
    secrets, puts = statements(role)
    assert secrets["Action"] == "secretsmanager:GetSecretValue"
    assert sorted(secrets["Resource"]) == sorted(
        [REQUIRED["SourceDbSecretArn"], REQUIRED["TargetDbSecretArn"], REQUIRED["MaskingKeySecretArn"]])
    assert puts["Action"] == "cloudwatch:PutMetricData"
    assert puts["Condition"] == {"StringEquals": {"cloudwatch:namespace": "DbSync/books"}}
    unmasked = deployed(transformed, MaskingKeySecretArn="", SyncRulesFile="none", **FARGATE)["DbSyncTaskRole"]
    assert sorted(statements(unmasked)[0]["Resource"]) == sorted(
        [REQUIRED["SourceDbSecretArn"], REQUIRED["TargetDbSecretArn"]])


@pytest.mark.parametrize(("image", "repository"), [
    (IMAGE, "arn:aws:ecr:eu-west-1:123456789012:repository/db-sync"),
    ("210987654321.dkr.ecr.us-east-2.amazonaws.com/team/db.sync@sha256:" + "ab" * 32,
     "arn:aws:ecr:us-east-2:210987654321:repository/team/db.sync"),
])
def test_the_execution_role_pulls_only_the_images_repository_and_writes_its_logs(transformed, image, repository):
    spec = sam_template()["Parameters"]["SyncImageUri"]
    assert re.fullmatch(spec["AllowedPattern"], image)
    resources = deployed(transformed, **{**FARGATE, "SyncImageUri": image})
    token, pull, logs = statements(resources["DbSyncTaskExecutionRole"])
    assert (token["Action"], token["Resource"]) == ("ecr:GetAuthorizationToken", "*")
    assert sorted(pull["Action"]) == ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
                                      "ecr:GetDownloadUrlForLayer"]
    assert sub(pull["Resource"]) == repository
    assert sorted(logs["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert logs["Resource"] == {"Fn::GetAtt": ["DbSyncTaskLogGroup", "Arn"]}


@pytest.mark.parametrize("image", ["python:3.12-slim", "docker.io/library/db-sync:1",
                                   "123456789012.dkr.ecr.eu-west-1.amazonaws.com/db-sync"])
def test_the_image_must_be_an_ecr_uri_with_a_tag_or_digest(image):
    assert not re.fullmatch(sam_template()["Parameters"]["SyncImageUri"]["AllowedPattern"], image)


def test_the_scheduler_may_only_run_this_task_in_this_cluster(transformed):
    role = deployed(transformed, **FARGATE)["DbSyncSchedulerRole"]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "scheduler.amazonaws.com"}
    run, pass_role, dead_letter = statements(role)
    assert (run["Action"], run["Resource"]) == ("ecs:RunTask", {"Ref": "DbSyncTaskDefinition"})
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["DbSyncCluster", "Arn"]}}}
    assert pass_role["Action"] == "iam:PassRole"
    assert pass_role["Resource"] == [{"Fn::GetAtt": ["DbSyncTaskExecutionRole", "Arn"]},
                                     {"Fn::GetAtt": ["DbSyncTaskRole", "Arn"]}]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    assert (dead_letter["Action"], dead_letter["Resource"]) == (
        "sqs:SendMessage", {"Fn::GetAtt": ["DbSyncFailureQueue", "Arn"]})


# -- the freshness alarm ------------------------------------------------------------------------------

@pytest.mark.parametrize("runner", [{}, FARGATE], ids=["lambda", "fargate"])
def test_the_freshness_alarm_exists_only_while_the_schedule_is_on(transformed, runner):
    assert "DbSyncFreshnessAlarm" not in deployed(transformed, SyncScheduleEnabled="false", **runner)
    alarm = deployed(transformed, SyncScheduleEnabled="true", **runner)["DbSyncFreshnessAlarm"]["Properties"]
    # The series both runners publish (dbsync/metrics.py): the same namespace and dimension.
    assert (alarm["Namespace"], alarm["MetricName"]) == (metrics.DEFAULT_NAMESPACE, "SyncSucceeded")
    assert alarm["Dimensions"] == [{"Name": k, "Value": v} for k, v in metrics.DIMENSIONS.items()]
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "Maximum", "LessThanThreshold", 1)
    assert alarm["TreatMissingData"] == "breaching"  # no report at all is stale too
    assert alarm["Period"] == 3600 and alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == "26"
    assert "AlarmActions" not in alarm


def test_the_freshness_window_is_a_parameter_within_cloudwatchs_limits(transformed):
    spec = sam_template()["Parameters"]["FreshnessWindowHours"]
    assert spec["Default"] == 26
    alarm = deployed(transformed, SyncScheduleEnabled="true", FreshnessWindowHours="30", AlarmTopicArn=TOPIC,
                     MetricsNamespace="DbSync/books")["DbSyncFreshnessAlarm"]["Properties"]
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == "30"
    assert alarm["Namespace"] == "DbSync/books"
    assert alarm["AlarmActions"] == [TOPIC]
    # PutMetricAlarm: Period × EvaluationPeriods at most 7 days, and at most 1 day when the period
    # is under an hour.
    assert alarm["Period"] >= 3600 and alarm["Period"] * spec["MaxValue"] <= 7 * 86400
    assert spec["MinValue"] >= 1


# -- the synced set must not shrink unseen --------------------------------------------------------------

@pytest.mark.parametrize("runner", [{}, FARGATE], ids=["lambda", "fargate"])
def test_prod_only_tables_and_columns_alarm_whichever_runner(transformed, runner):
    alarm = deployed(transformed, AlarmTopicArn=TOPIC, MetricsNamespace="DbSync/books",
                     **runner)["DbSyncProdOnlyAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("DbSync/books", "ProdOnlyObjects")
    assert "ProdOnlyObjects" in metrics.UNITS  # the series both runners publish
    assert alarm["Dimensions"] == [{"Name": k, "Value": v} for k, v in metrics.DIMENSIONS.items()]
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "Maximum", "GreaterThanOrEqualToThreshold", 1)
    assert alarm["TreatMissingData"] == "notBreaching" and alarm["AlarmActions"] == [TOPIC]
    assert "AlarmActions" not in deployed(transformed, **runner)["DbSyncProdOnlyAlarm"]["Properties"]


# -- a failed task alarms as a failed Lambda does ------------------------------------------------------

def matches(pattern, event) -> bool:
    """EventBridge's matching, as much as the rule uses: value lists, prefix, anything-but, $or,
    nested objects, and arrays of objects (any element)."""
    if isinstance(event, list):
        return any(matches(pattern, e) for e in event)
    for key, want in pattern.items():
        if key == "$or":
            if not any(matches(p, event) for p in want):
                return False
            continue
        if not isinstance(event, dict) or key not in event:
            return False
        value = event[key]
        if isinstance(want, dict):
            if not matches(want, value):
                return False
        elif not any(_one(w, v) for w in want for v in (value if isinstance(value, list) else [value])):
            return False
    return True


def _one(want, value) -> bool:
    if isinstance(want, dict):
        ((op, arg),) = want.items()
        return {"prefix": lambda: isinstance(value, str) and value.startswith(arg),
                "anything-but": lambda: value != arg}[op]()
    return want == value


def task_event(family: str, *, exit_code: int | None, stop_code: str = "EssentialContainerExited",
               status: str = "STOPPED") -> dict:
    """An ECS Task State Change as EventBridge delivers it (the fields the rule reads)."""
    container = {"name": "db-sync", "lastStatus": status}
    if exit_code is not None:
        container["exitCode"] = exit_code
    return {"source": "aws.ecs", "detail-type": "ECS Task State Change", "detail": {
        "clusterArn": "arn:aws:ecs:eu-west-1:123456789012:cluster/shared",
        "taskDefinitionArn": f"arn:aws:ecs:eu-west-1:123456789012:task-definition/{family}:7",
        "lastStatus": status, "stopCode": stop_code, "containers": [container]}}


def test_a_failed_task_reaches_the_failure_queue_and_its_alarm(transformed):
    cluster = "arn:aws:ecs:eu-west-1:123456789012:cluster/shared"
    resources = deployed(transformed, EcsClusterArn=cluster, AlarmTopicArn=TOPIC, **FARGATE)
    family = sub(resources["DbSyncTaskDefinition"]["Properties"]["Family"])
    rule = resources["DbSyncTaskFailedRule"]["Properties"]
    pattern = rule["EventPattern"]
    detail = pattern["detail"]
    detail["taskDefinitionArn"] = [{"prefix": sub(p["prefix"])} for p in detail["taskDefinitionArn"]]
    assert detail["taskDefinitionArn"] == [{"prefix": f"arn:aws:ecs:eu-west-1:123456789012:task-definition/{family}:"}]

    assert matches(pattern, task_event(family, exit_code=2))  # the sync failed: db-sync exits 2
    assert matches(pattern, task_event(family, exit_code=137))  # killed (out of memory, stopped)
    assert matches(pattern, task_event(family, exit_code=None, stop_code="TaskFailedToStart"))  # no image, no secret
    assert not matches(pattern, task_event(family, exit_code=0))  # synced
    assert not matches(pattern, task_event(family, exit_code=None, status="RUNNING", stop_code=""))
    assert not matches(pattern, task_event(family + "-other", exit_code=2))
    assert not matches(pattern, task_event("other-stack-db-sync", exit_code=2))

    assert rule["Targets"] == [{"Id": "failure-queue", "Arn": {"Fn::GetAtt": ["DbSyncFailureQueue", "Arn"]}}]
    (allow,) = resources["DbSyncFailureQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"} and allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["DbSyncTaskFailedRule", "Arn"]}}}

    alarm = resources["DbSyncTaskFailedAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Events", "TriggeredRules")
    assert alarm["Dimensions"] == [{"Name": "RuleName", "Value": {"Ref": "DbSyncTaskFailedRule"}}]
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum", 1, "GreaterThanOrEqualToThreshold")
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == [TOPIC]
    assert "AlarmActions" not in deployed(transformed, **FARGATE)["DbSyncTaskFailedAlarm"]["Properties"]
