"""The monitoring stack of each workload environment: the drift monitor function and its schedules, the monitoring
alarms of every single-model endpoint, the on-call topic, and retraining where the pipelines run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from modelwerk import naming, settings
from stacks.stages import WorkloadStage

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dev(synthesized):
    return synthesized.template("dev", "Monitoring")


@pytest.fixture(scope="module")
def staging(synthesized):
    return synthesized.template("staging", "Monitoring")


def _alarms(template) -> dict:
    return {a["Properties"]["AlarmName"]: a["Properties"]
            for a in template.find_resources("AWS::CloudWatch::Alarm").values()}


def test_the_drift_monitor_runs_on_the_layers_by_arn_in_the_vpc(dev, config):
    (function,) = dev.find_resources("AWS::Lambda::Function").values()
    props = function["Properties"]
    assert props["FunctionName"] == naming.drift_monitor_function_name(config.project, "dev")
    assert props["Handler"] == "handler.handler" and props["Runtime"] == "python3.12"
    layers = json.dumps(props["Layers"])
    assert "336392948345" in layers and "AWSLambdaPowertoolsPythonV3" in layers
    assert props["VpcConfig"]["SubnetIds"] and "DeadLetterConfig" in props
    variables = props["Environment"]["Variables"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == naming.MONITORING_NAMESPACE
    assert variables["CAPTURE_PREFIX"] == "capture" and "SERVING_BUCKET" in variables


def test_each_single_model_endpoint_has_a_schedule_that_names_it(dev, config):
    rules = [r["Properties"] for r in dev.find_resources("AWS::Events::Rule").values()
             if "ScheduleExpression" in r["Properties"]]
    monitored = sorted(n for n, e in config.environment("dev").endpoints.items() if e.captures and not e.multi_model)
    assert monitored == ["energy-forecast", "pump-health"]  # pump-fleet is multi-model: versions, not one baseline
    named = []
    for rule in rules:
        assert rule["ScheduleExpression"] == config.use_case("pump-health").monitoring.schedule
        (target,) = rule["Targets"]
        assert "DeadLetterConfig" in target
        template = json.dumps(target["InputTransformer"]["InputTemplate"])
        named += [e for e in monitored if f'\\"endpoint\\":\\"{e}\\"' in template]
        assert "Scheduled Event" in template
    assert sorted(named) == monitored


def test_drift_quality_and_no_data_alarms_come_from_the_use_case_config(dev, config):
    alarms = _alarms(dev)
    drift = alarms[naming.monitoring_alarm_name("pump-health", "drift")]
    assert drift["MetricName"] == "WorstPSI" and drift["Namespace"] == naming.MONITORING_NAMESPACE
    assert drift["Threshold"] == config.use_case("pump-health").monitoring.max_psi
    assert drift["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert drift["Dimensions"] == [{"Name": "EndpointName", "Value": "pump-health"}]
    assert drift["TreatMissingData"] == "notBreaching" and drift["Period"] == 3600
    f1 = alarms[f"{naming.monitoring_alarm_name('pump-health', 'quality')}-f1"]
    assert f1["Threshold"] == 0.3 and f1["ComparisonOperator"] == "LessThanThreshold"
    assert not any(name.startswith("energy-forecast-model-quality") for name in alarms)  # none configured
    assert naming.monitoring_alarm_name("energy-forecast", "no-data") in alarms


def test_the_composite_alarm_notifies_the_encrypted_on_call_topic(dev):
    (topic,) = dev.find_resources("AWS::SNS::Topic").values()
    assert "KmsMasterKeyId" in topic["Properties"]
    composites = {c["Properties"]["AlarmName"]: c["Properties"]
                  for c in dev.find_resources("AWS::CloudWatch::CompositeAlarm").values()}
    composite = composites[naming.monitoring_alarm_name("pump-health", "composite")]
    rule = json.dumps(composite["AlarmRule"])
    assert "PumpHealthMonitoringDrift" in rule and "PumpHealthMonitoringQualityF1" in rule and ") OR ALARM(" in rule
    (topic_id,) = dev.find_resources("AWS::SNS::Topic")
    assert composite["AlarmActions"] == [{"Ref": topic_id}]
    (policy,) = dev.find_resources("AWS::SNS::TopicPolicy").values()
    assert "aws:SecureTransport" in json.dumps(policy)


def _pattern_rules(template) -> dict[str, dict]:
    """The rules on alarm events (not the drift monitor's rule on SageMaker's transform job events)."""
    return {lid: r["Properties"] for lid, r in template.find_resources("AWS::Events::Rule").items()
            if "EventPattern" in r["Properties"] and r["Properties"]["EventPattern"].get("source") != ["aws.sagemaker"]}


def _resolve(value, template, account: str, region: str):
    """A template value as CloudFormation would resolve it in ``account``: pseudo parameters, joins, and the ARN of
    the template's own composite alarms (by name)."""
    if isinstance(value, list):
        return [_resolve(v, template, account, region) for v in value]
    if not isinstance(value, dict):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_resolve(p, template, account, region) for p in parts)
    if "Ref" in value and value["Ref"].startswith("AWS::"):
        return {"AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": account}[value["Ref"]]
    if "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Arn":
        resource = template.to_json()["Resources"][value["Fn::GetAtt"][0]]
        if resource["Type"] == "AWS::CloudWatch::CompositeAlarm":
            return f"arn:aws:cloudwatch:{region}:{account}:alarm:{resource['Properties']['AlarmName']}"
    return {k: _resolve(v, template, account, region) for k, v in value.items()}


def _alarm_event(account: str, region: str, alarm: str, state: str = "ALARM") -> dict:
    """CloudWatch's state change event as it reaches a bus (a forwarded one keeps its account and resources)."""
    return {"version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch", "account": account, "time": "2024-06-05T10:02:00Z", "region": region,
            "resources": [f"arn:aws:cloudwatch:{region}:{account}:alarm:{alarm}"],
            "detail": {"alarmName": alarm, "state": {"value": state}, "previousState": {"value": "OK"}}}


def _matches(pattern: dict, event: dict) -> bool:
    from moto.events.models import EventPattern

    return EventPattern.load(json.dumps(pattern)).matches_event(event)


def test_dev_retrains_each_use_case_on_its_composite_alarms_in_every_account(dev, config):
    rules = _pattern_rules(dev)
    assert len(rules) == len(config.use_cases) == 2  # one per use case, whichever account its alarm is in
    for rule in rules.values():
        assert rule["EventPattern"]["detail-type"] == ["CloudWatch Alarm State Change"]
        assert rule["EventPattern"]["detail"] == {"state": {"value": ["ALARM"]}}
        (target,) = rule["Targets"]
        assert target["SageMakerPipelineParameters"]["PipelineParameterList"] == [
            {"Name": "SnapshotId", "Value": "latest"}]
        assert "DeadLetterConfig" in target and ":pipeline/modelwerk-dev-" in json.dumps(target["Arn"])
    dev_env = config.environment("dev")
    pump = next(r for r in rules.values() if "pump-health-training" in json.dumps(r["Targets"][0]["Arn"]))
    resources = _resolve(pump["EventPattern"]["resources"], dev, dev_env.account, dev_env.region)
    assert sorted(resources) == sorted(
        f"arn:aws:cloudwatch:eu-central-1:{config.environment(e).account}:alarm:pump-health-needs-retraining"
        for e in ("dev", "staging", "prod"))


def test_the_dev_retraining_rule_matches_prods_forwarded_alarm_and_no_other_account(dev, config):
    dev_env, prod = config.environment("dev"), config.environment("prod")
    rules = [_resolve(r, dev, dev_env.account, dev_env.region) for r in _pattern_rules(dev).values()]
    pump = next(r for r in rules if r["Targets"][0]["Arn"].endswith("pump-health-training"))
    energy = next(r for r in rules if r["Targets"][0]["Arn"].endswith("energy-forecast-training"))
    forwarded = _alarm_event(prod.account, prod.region, "pump-health-needs-retraining")
    assert _matches(pump["EventPattern"], forwarded)
    assert not _matches(energy["EventPattern"], forwarded)
    assert _matches(energy["EventPattern"], _alarm_event(prod.account, prod.region, "energy-forecast-needs-retraining"))
    # The same alarm name in an account that is not configured, or back to OK, retrains nothing.
    assert not _matches(pump["EventPattern"], _alarm_event("444444444444", prod.region, "pump-health-needs-retraining"))
    assert not _matches(pump["EventPattern"], _alarm_event(prod.account, prod.region, "pump-health-needs-retraining",
                                                           state="OK"))


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_a_serving_environment_forwards_its_composite_alarms_to_devs_default_bus(synthesized, config, env):
    template = synthesized.template(env, "Monitoring")
    served, dev_env = config.environment(env), config.environment("dev")
    rules = [_resolve(r, template, served.account, served.region) for r in _pattern_rules(template).values()]
    (rule,) = rules  # no pipeline starts here: staging and prod do not train
    (target,) = rule["Targets"]
    assert target["Arn"] == f"arn:aws:events:{dev_env.region}:{dev_env.account}:event-bus/default"
    assert "SageMakerPipelineParameters" not in target and "DeadLetterConfig" in target
    assert _matches(rule["EventPattern"], _alarm_event(served.account, served.region, "pump-health-needs-retraining"))
    assert not _matches(rule["EventPattern"], _alarm_event(served.account, served.region, "pump-health-data-drift"))
    roles = template.find_resources("AWS::IAM::Role")
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    assert "events.amazonaws.com" in json.dumps(roles[role_id]["Properties"]["AssumeRolePolicyDocument"])
    statements = [s for p in template.find_resources("AWS::IAM::Policy").values()
                  if {"Ref": role_id} in p["Properties"]["Roles"]
                  for s in _resolve(p["Properties"]["PolicyDocument"]["Statement"], template, served.account,
                                    served.region)]
    assert statements == [{"Action": "events:PutEvents", "Effect": "Allow", "Resource": target["Arn"]}]
    assert not template.find_resources("AWS::Events::EventBusPolicy")
    assert template.find_resources("AWS::CloudWatch::CompositeAlarm")


def test_devs_default_bus_admits_exactly_the_serving_accounts_alarm_changes(dev, config):
    (policy,) = dev.find_resources("AWS::Events::EventBusPolicy").values()
    dev_env = config.environment("dev")
    props = _resolve(policy["Properties"], dev, dev_env.account, dev_env.region)
    statement = props["Statement"]
    assert props["EventBusName"] == "default" and statement["Effect"] == "Allow"
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == f"arn:aws:events:{dev_env.region}:{dev_env.account}:event-bus/default"
    assert sorted(statement["Principal"]["AWS"]) == [
        f"arn:aws:iam::{config.environment(e).account}:root" for e in ("staging", "prod")]
    assert statement["Condition"]["ForAllValues:StringEquals"] == {"events:source": ["aws.cloudwatch"]}
    assert statement["Condition"]["StringEquals"] == {"events:detail-type": "CloudWatch Alarm State Change"}


def test_the_monitor_role_reads_capture_and_baselines_and_writes_reports_only(dev, config):
    statements = [s for p in dev.find_resources("AWS::IAM::Policy").values()
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    flat = json.dumps(statements)
    assert '"s3:*"' not in flat and '"sagemaker:*"' not in flat and '"Action": "*"' not in flat
    writes = [s for s in statements if "s3:PutObject" in s["Action"]]
    assert len(writes) == 1 and "/monitoring/" in json.dumps(writes[0]["Resource"])
    packages = next(s for s in statements if s["Action"] == "sagemaker:DescribeModelPackage")
    assert all(config.registry.account in json.dumps(r) for r in packages["Resource"])
    unscoped = {a for s in statements if s["Resource"] == "*"
                for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert unscoped == {"ec2:DescribeNetworkInterfaces"}


def test_only_environments_with_single_model_endpoints_get_a_monitoring_stack(synthesized):
    names = {path.name.split(".")[0] for path in synthesized.template_files()}
    assert {n for n in names if "Monitoring" in n} >= {n for n in names if n.startswith(("DevMonitoring",
                                                                                          "StagingMonitoring",
                                                                                          "ProdMonitoring"))}
    assert any(n.startswith("ProdMonitoring") for n in names)


def test_a_training_environment_without_its_own_endpoints_still_retrains_on_forwarded_alarms(tmp_path):
    """dev serves only the multi-model fleet (no drift monitor of its own); staging's and prod's alarms still need
    dev's retraining rules and the bus policy that admits them."""
    context = copy.deepcopy(json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"])
    dev_endpoints = context[settings.ENVIRONMENTS_KEY]["dev"]["endpoints"]
    context[settings.ENVIRONMENTS_KEY]["dev"]["endpoints"] = {
        name: e for name, e in dev_endpoints.items() if e.get("multi_model")}
    config = settings.parse_context(context, ROOT)
    app = App(context=context, outdir=str(tmp_path))
    stage = WorkloadStage(app, "Dev", config=config, environment=config.environment("dev"))
    assert stage.monitoring is not None
    template = Template.from_stack(stage.monitoring)
    assert template.find_resources("AWS::Events::EventBusPolicy")
    rules = [r["Properties"] for r in template.find_resources("AWS::Events::Rule").values()
             if "aws.cloudwatch" in json.dumps(r["Properties"].get("EventPattern", {}))]
    assert {u for r in rules for u in config.use_cases if u in json.dumps(r)} == {"pump-health", "energy-forecast"}
