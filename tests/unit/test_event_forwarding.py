"""The embedded EventBridge across accounts: prod's alarm forwarded to dev's default bus, admitted by that bus's
policy, starts dev's retraining pipeline; a bus that does not name the sender refuses it; an event that already
crossed accounts is not forwarded again."""

from __future__ import annotations

import json
import urllib.request
from types import SimpleNamespace

import boto3
import pytest
from moto_fresh import fresh_mock_aws

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
    """Sessions in dev, staging and prod of an in-process moto (for the bus policy alone)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "MODELWERK_LOCAL_ROOT"):
        monkeypatch.delenv(name, raising=False)
    _credentials(monkeypatch)
    with fresh_mock_aws():
        yield _sessions(boto3.Session(region_name=REGION))


def _credentials(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def _sessions(dev: boto3.Session) -> dict[str, boto3.Session]:
    sessions = {"dev": dev}
    for env in ("staging", "prod"):
        issued = dev.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{ACCOUNTS[env]}:role/deployer", RoleSessionName=env)["Credentials"]
        sessions[env] = boto3.Session(aws_access_key_id=issued["AccessKeyId"], region_name=REGION,
                                      aws_secret_access_key=issued["SecretAccessKey"],
                                      aws_session_token=issued["SessionToken"])
    return sessions


@pytest.fixture
def embedded(monkeypatch, tmp_path):
    """An embedded AWS of this test (its router delivers the rules' targets) and sessions in its three accounts;
    the pipelines the rules start are recorded instead of run."""
    from modelwerk.local.server import EmbeddedAWS, free_port
    from modelwerk.local.services.sagemaker import pipelines

    started = []
    monkeypatch.setattr(pipelines, "start_pipeline_execution", lambda context, **kwargs: started.append(kwargs)
                        or f"arn:aws:sagemaker:{kwargs['region']}:{kwargs['account']}:pipeline/{kwargs['pipeline']}"
                           "/execution/local")
    server = EmbeddedAWS(port=free_port(), state_dir=tmp_path / "state", region=REGION).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint_url)
    _credentials(monkeypatch)
    try:
        yield SimpleNamespace(url=server.endpoint_url, sessions=_sessions(boto3.Session(region_name=REGION)),
                              started=started)
    finally:
        server.stop()


def _deploy(sessions, tmp_path, env: str, resources: dict) -> None:
    """Deploy ``resources`` as ``env``'s stage, as ``modelwerk local up`` does."""
    template = tmp_path / f"{env}.template.json"
    template.write_text(json.dumps({"Resources": resources}))
    stack = StackArtifact(name=f"{env}-Monitoring", template_file=template, assets_file=None, account=ACCOUNTS[env],
                          region=REGION, dependencies=())
    deploy_stack(sessions[env], stack)


def _alarm_event(env: str, source: str = "aws.cloudwatch") -> dict:
    return {"version": "0", "id": "e1", "detail-type": "CloudWatch Alarm State Change", "source": source,
            "account": ACCOUNTS[env], "time": "2024-06-05T10:02:00Z", "region": REGION,
            "resources": [_alarm_arn(env)], "detail": {"alarmName": ALARM, "state": {"value": "ALARM"}}}


def _put_and_deliver(embedded, env: str) -> list[dict]:
    """PutEvents of prod's alarm change in ``env``'s account, and the deliveries it caused, once made."""
    event = _alarm_event(env)
    answer = embedded.sessions[env].client("events").put_events(Entries=[{
        "Source": event["source"], "DetailType": event["detail-type"], "Detail": json.dumps(event["detail"]),
        "Resources": event["resources"]}])
    assert answer["FailedEntryCount"] == 0
    request = urllib.request.Request(f"{embedded.url}/modelwerk-api/events/deliveries", method="POST", data=json.dumps(
        {"event_id": answer["Entries"][0]["EventId"], "wait": 30}).encode())
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["Deliveries"]


def test_prods_alarm_reaches_devs_bus_and_starts_devs_pipeline(embedded, tmp_path):
    _deploy(embedded.sessions, tmp_path, "prod", _forwarding("prod", to="dev"))
    onward = _forwarding("dev", to="staging")  # a rule in dev that would pass prod's alarm on to staging
    onward["Forward"]["Properties"]["EventPattern"] = _pattern(_alarm_arn("prod"))
    _deploy(embedded.sessions, tmp_path, "dev", {**_bus_policy("staging", "prod"), **_retraining(), **onward})
    deliveries = {d["target_arn"]: d for d in _put_and_deliver(embedded, "prod")}
    assert embedded.started == [{"account": ACCOUNTS["dev"], "region": REGION, "pipeline": PIPELINE,
                                 "parameters": {"SnapshotId": "latest"}, "display_name": None}]
    assert deliveries[_bus_arn("dev")]["outcome"] == "delivered"
    assert deliveries[_pipeline_arn()]["outcome"] == "delivered"
    # dev's rule toward staging matches too, but an event that already crossed accounts goes no further.
    assert deliveries[_bus_arn("staging")]["outcome"] == "skipped"


def test_a_bus_whose_policy_does_not_name_the_sender_refuses_its_alarm(embedded, tmp_path):
    _deploy(embedded.sessions, tmp_path, "prod", _forwarding("prod", to="dev"))
    _deploy(embedded.sessions, tmp_path, "dev", {**_bus_policy("staging"), **_retraining()})
    (delivery,) = _put_and_deliver(embedded, "prod")
    assert delivery["outcome"] == "failed" and delivery["error"]["code"] == "AccessDeniedException"
    assert embedded.started == []


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
