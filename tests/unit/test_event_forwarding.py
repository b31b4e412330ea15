"""The local event router across accounts: prod's alarm forwarded to dev's default bus, admitted by that bus's
policy, starts dev's retraining pipeline; a bus that does not name the sender refuses it; an event that already
crossed accounts is not forwarded again."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from modelwerk.local import events
from modelwerk.local.assembly import StackArtifact
from modelwerk.local.deployer import deploy_stack

REGION = "eu-central-1"
ACCOUNTS = {"dev": "123456789012", "staging": "222222222222", "prod": "333333333333"}
ALARM = "pump-health-needs-retraining"
PIPELINE = "modelwerk-dev-pump-health-training"


def _alarm_arn(env: str) -> str:
    return f"arn:aws:cloudwatch:{REGION}:{ACCOUNTS[env]}:alarm:{ALARM}"


def _bus_arn(env: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNTS[env]}:event-bus/default"


def _pipeline_arn() -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNTS['dev']}:pipeline/{PIPELINE}"


def _pattern(*alarm_arns: str) -> dict:
    return {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
            "resources": list(alarm_arns), "detail": {"state": {"value": ["ALARM"]}}}


def _forwarding(env: str, to: str) -> dict:
    """What AlarmForwarding synthesizes: a rule on ``env``'s alarm's change to ALARM, targeting another account's
    bus."""
    return {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "events.amazonaws.com"}}]}}},
        "Forward": {"Type": "AWS::Events::Rule", "Properties": {
            "EventPattern": _pattern(_alarm_arn(env)), "State": "ENABLED",
            "Targets": [{"Id": "TrainingEventBus", "Arn": _bus_arn(to), "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]}}]}},
    }


def _bus_policy(*senders: str) -> dict:
    """What AlarmBusAccess synthesizes."""
    return {"Policy": {"Type": "AWS::Events::EventBusPolicy", "Properties": {
        "EventBusName": "default", "StatementId": "ServingAccountsForwardAlarms",
        "Statement": {"Effect": "Allow", "Action": "events:PutEvents",
                      "Principal": {"AWS": [{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                                                               f":iam::{ACCOUNTS[s]}:root"]]} for s in senders]},
                      "Resource": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":events:",
                                                     {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"},
                                                     ":event-bus/default"]]},
                      "Condition": {"ForAllValues:StringEquals": {"events:source": ["aws.cloudwatch"]},
                                    "StringEquals": {"events:detail-type": "CloudWatch Alarm State Change"}}}}}}


def _retraining() -> dict:
    """What Retraining synthesizes in dev: its pipeline started on dev's and prod's composite alarms."""
    return {"Retrain": {"Type": "AWS::Events::Rule", "Properties": {
        "EventPattern": _pattern(_alarm_arn("dev"), _alarm_arn("prod")), "State": "ENABLED",
        "Targets": [{"Id": "TrainingPipeline", "Arn": _pipeline_arn(),
                     "RoleArn": f"arn:aws:iam::{ACCOUNTS['dev']}:role/starter",
                     "SageMakerPipelineParameters": {"PipelineParameterList": [{"Name": "SnapshotId",
                                                                                 "Value": "latest"}]}}]}}}


@pytest.fixture
def accounts(monkeypatch, tmp_path):
    """Sessions in dev, staging and prod of an in-process moto; local mode's state and records point at them."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "MODELWERK_LOCAL_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("MODELWERK_STATE_DIR", str(tmp_path / "records"))
    with mock_aws():
        sessions = {"dev": boto3.Session(region_name=REGION)}
        for env in ("staging", "prod"):
            issued = sessions["dev"].client("sts").assume_role(
                RoleArn=f"arn:aws:iam::{ACCOUNTS[env]}:role/deployer", RoleSessionName=env)["Credentials"]
            sessions[env] = boto3.Session(aws_access_key_id=issued["AccessKeyId"], region_name=REGION,
                                          aws_secret_access_key=issued["SecretAccessKey"],
                                          aws_session_token=issued["SessionToken"])
        from modelwerk import local

        monkeypatch.setattr(local, "read_state", lambda root=None: SimpleNamespace(accounts=ACCOUNTS))
        monkeypatch.setattr(local, "session", lambda env, state=None: sessions[env])
        yield sessions


def _deploy(sessions, tmp_path, env: str, resources: dict) -> None:
    """Deploy ``resources`` as ``env``'s stage and keep its deployment record, as ``modelwerk local up`` does."""
    template = tmp_path / f"{env}.template.json"
    template.write_text(json.dumps({"Resources": resources}))
    stack = StackArtifact(name=f"{env}-Monitoring", template_file=template, assets_file=None, account=ACCOUNTS[env],
                          region=REGION, dependencies=())
    deployment = deploy_stack(sessions[env], stack)
    folder = tmp_path / "records" / "local" / "deployments"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{env}.json").write_text(json.dumps({"stage": env, "stacks": [
        {**deployment.to_dict(), "template_file": str(template), "assets_file": None}]}))


@pytest.fixture
def started(monkeypatch):
    calls = []
    monkeypatch.setattr(events, "_start_pipeline",
                        lambda name, parameters, stage: calls.append((name, parameters, stage)) or f"{stage}:{name}")
    return calls


def _alarm_event(env: str, source: str = "aws.cloudwatch") -> dict:
    return {"version": "0", "id": "e1", "detail-type": "CloudWatch Alarm State Change", "source": source,
            "account": ACCOUNTS[env], "time": "2024-06-05T10:02:00Z", "region": REGION,
            "resources": [_alarm_arn(env)], "detail": {"alarmName": ALARM, "state": {"value": "ALARM"}}}


def test_prods_alarm_reaches_devs_bus_and_starts_devs_pipeline(accounts, tmp_path, started):
    _deploy(accounts, tmp_path, "prod", _forwarding("prod", to="dev"))
    onward = _forwarding("dev", to="staging")  # a rule in dev that would pass prod's alarm on to staging
    onward["Forward"]["Properties"]["EventPattern"] = _pattern(_alarm_arn("prod"))
    _deploy(accounts, tmp_path, "dev", {**_bus_policy("staging", "prod"), **_retraining(), **onward})
    deliveries = events.put_event(_alarm_event("prod"), stage="prod", session=accounts["prod"])
    assert started == [(PIPELINE, {"SnapshotId": "latest"}, "dev")]
    by_target = {d.target_arn: d for d in deliveries}
    assert [d.target_arn for d in by_target[_bus_arn("dev")].result] == [
        _bus_arn("staging"), _pipeline_arn()]
    # dev's rule toward staging matches too, but an event that already crossed accounts goes no further.
    assert "not forwarded" in by_target[_bus_arn("staging")].result


def test_a_bus_whose_policy_does_not_name_the_sender_refuses_its_alarm(accounts, tmp_path, started):
    _deploy(accounts, tmp_path, "prod", _forwarding("prod", to="dev"))
    _deploy(accounts, tmp_path, "dev", {**_bus_policy("staging"), **_retraining()})
    (delivery,) = events.put_event(_alarm_event("prod"), stage="prod", session=accounts["prod"])
    assert isinstance(delivery.result, PermissionError) and started == []


@pytest.mark.parametrize("sender, source, admitted", [
    pytest.param("prod", "aws.cloudwatch", True, id="a-named-account's-alarm"),
    pytest.param("staging", "aws.cloudwatch", True, id="the-other-named-account"),
    pytest.param("prod", "modelwerk.custom", False, id="another-kind-of-event"),
    pytest.param("dev", "aws.cloudwatch", False, id="an-account-not-named"),
])
def test_the_bus_policy_admits_only_the_named_accounts_alarm_changes(accounts, tmp_path, sender, source, admitted):
    _deploy(accounts, tmp_path, "dev", _bus_policy("staging", "prod"))
    assert events.bus_admits(accounts["dev"], "default", ACCOUNTS[sender], _alarm_event(sender, source)) is admitted


def test_a_bus_without_a_policy_admits_no_other_account(accounts):
    assert not events.bus_admits(accounts["dev"], "default", ACCOUNTS["prod"], _alarm_event("prod"))
