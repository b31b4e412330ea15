"""Retraining: a use case's training pipeline, started with ``SnapshotId=latest`` (the newest curated data) when one of
its endpoints' composite "needs retraining" alarms goes to ALARM.

The alarms may live in this account or in the serving accounts whose state changes ``AlarmForwarding`` sends to this
account's default event bus (admitted there by ``AlarmBusAccess``). A forwarded event keeps its alarm's ARN in
``resources``, and alarm names repeat in every account, so the rule matches alarms by ARN: account and name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.nag import acknowledge, acknowledge_checkov
from cdk_constructs.permissions import allow
from cdk_constructs.queues import DEAD_LETTER_QUEUE, SQS_MANAGED_REASON

DEAD_LETTER_RETENTION = Duration.days(14)
#: How long EventBridge retries a delivery (SageMaker throttles, the pipeline is being updated, the bus is busy).
MAXIMUM_EVENT_AGE = Duration.hours(6)
MAXIMUM_RETRY_ATTEMPTS = 8


def dead_letter_queue(scope: Construct, rule: str) -> sqs.Queue:
    """The dead-letter queue (``DeadLetterQueue``) of ``rule``'s target: events it could not deliver wait there."""
    queue = sqs.Queue(scope, "DeadLetterQueue", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
                      retention_period=DEAD_LETTER_RETENTION, redrive_allow_policy=DEAD_LETTER_QUEUE)
    acknowledge_checkov(queue, "CKV_AWS_27", SQS_MANAGED_REASON)
    acknowledge(queue, "AwsSolutions-SQS3", f"This queue is the dead-letter queue of the {rule} rule's target.")
    return queue


def delivery(queue: sqs.Queue) -> dict:
    """A rule target's retry policy and dead-letter queue, as ``CfnRule.TargetProperty`` arguments."""
    return {"dead_letter_config": events.CfnRule.DeadLetterConfigProperty(arn=queue.queue_arn),
            "retry_policy": events.CfnRule.RetryPolicyProperty(
                maximum_event_age_in_seconds=int(MAXIMUM_EVENT_AGE.to_seconds()),
                maximum_retry_attempts=MAXIMUM_RETRY_ATTEMPTS)}


def admit_rule(queue: sqs.Queue, rule: events.CfnRule) -> None:
    """Let EventBridge put ``rule``'s undeliverable events into ``queue``, and nothing else's."""
    queue.add_to_resource_policy(iam.PolicyStatement(
        sid="RuleDeliversUndeliverableEvents", actions=["sqs:SendMessage"],
        principals=[iam.ServicePrincipal("events.amazonaws.com")], resources=[queue.queue_arn],
        conditions={"ArnEquals": {"aws:SourceArn": rule.attr_arn}}))


def alarm_state_change_pattern(alarm_arns: Sequence[str], state: str = "ALARM") -> dict:
    """EventBridge's pattern for the named alarms' changes to ``state`` (what CloudWatch emits, and what a
    forwarding rule passes on unchanged)."""
    return {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
            "resources": list(alarm_arns), "detail": {"state": {"value": [state]}}}


@dataclass(frozen=True)
class RetrainingProps:
    """use_case: names the rule's purpose in its description.
    pipeline_arn: the use case's training pipeline in this account.
    alarm_arns: the composite alarms (in this or another account) whose change to ALARM starts it; at least one.
    """

    use_case: str
    pipeline_arn: str
    alarm_arns: tuple[str, ...]


class Retraining(Construct):
    """Attributes: ``rule``, ``role`` (may start this one pipeline), ``dead_letter_queue`` (events the pipeline could
    not be started for)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: RetrainingProps) -> None:
        super().__init__(scope, construct_id)
        if not props.alarm_arns:
            raise ValueError(f"{self.node.path}: retraining needs at least one alarm to start from")
        self.dead_letter_queue = dead_letter_queue(self, "retraining")
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                             description=f"Starts the {props.use_case} training pipeline when an endpoint needs "
                                         "retraining")
        allow(self.role, actions=["sagemaker:StartPipelineExecution"], resources=[props.pipeline_arn])
        self.rule = events.CfnRule(
            self, "Rule",
            description=f"Retrain {props.use_case} when a composite alarm of its endpoints goes to ALARM",
            event_pattern=alarm_state_change_pattern(props.alarm_arns),
            state="ENABLED",
            targets=[events.CfnRule.TargetProperty(
                id="TrainingPipeline", arn=props.pipeline_arn, role_arn=self.role.role_arn,
                sage_maker_pipeline_parameters=events.CfnRule.SageMakerPipelineParametersProperty(
                    pipeline_parameter_list=[events.CfnRule.SageMakerPipelineParameterProperty(
                        name="SnapshotId", value="latest")]),
                **delivery(self.dead_letter_queue))],
        )
        admit_rule(self.dead_letter_queue, self.rule)
