"""The monitoring stack of each workload environment: the drift monitor function and its schedules, the monitoring
alarms of every single-model endpoint, the on-call topic, and retraining where the pipelines run."""

from __future__ import annotations

import json

import pytest

from modelwerk import naming

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
    monitored = sorted(n for n, e in config.environment("dev").endpoints.items() if not e.multi_model)
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


def test_dev_retrains_on_the_composite_alarm_and_staging_only_notifies(dev, staging, config):
    retraining = [r["Properties"] for r in dev.find_resources("AWS::Events::Rule").values()
                  if "EventPattern" in r["Properties"]]
    assert len(retraining) == 2
    for rule in retraining:
        assert rule["EventPattern"]["detail-type"] == ["CloudWatch Alarm State Change"]
        assert rule["EventPattern"]["detail"] == {"state": {"value": ["ALARM"]}}
        (target,) = rule["Targets"]
        assert target["SageMakerPipelineParameters"]["PipelineParameterList"] == [
            {"Name": "SnapshotId", "Value": "latest"}]
        assert "DeadLetterConfig" in target and ":pipeline/modelwerk-dev-" in json.dumps(target["Arn"])
    assert not [r for r in staging.find_resources("AWS::Events::Rule").values() if "EventPattern" in r["Properties"]]
    assert staging.find_resources("AWS::CloudWatch::CompositeAlarm")


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
    assert all(a.startswith("ec2:") for a in unscoped)


def test_only_environments_with_single_model_endpoints_get_a_monitoring_stack(synthesized):
    names = {path.name.split(".")[0] for path in synthesized.template_files()}
    assert {n for n in names if "Monitoring" in n} >= {n for n in names if n.startswith(("DevMonitoring",
                                                                                          "StagingMonitoring",
                                                                                          "ProdMonitoring"))}
    assert any(n.startswith("ProdMonitoring") for n in names)
