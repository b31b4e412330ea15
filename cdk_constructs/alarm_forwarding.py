"""Alarm forwarding: in an environment that serves endpoints but does not train (staging, prod), the composite "needs
retraining" alarms' changes to ALARM go to the training environment's default event bus, whose retraining rules
(``Retraining``) start the use cases' pipelines there.

The event arrives as CloudWatch emitted it (source ``aws.cloudwatch``, the alarm's ARN in ``resources``, this account
in ``account``). The rule's role may put events on that one bus and nothing else; the bus admits this account through
its policy (``AlarmBusAccess`` in the training environment). Events the bus does not take wait in a dead-letter queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk_constructs.permissions import allow
from cdk_constructs.retraining import admit_rule, alarm_state_change_pattern, dead_letter_queue, delivery


@dataclass(frozen=True)
class AlarmForwardingProps:
    """alarm_arns: the composite alarms whose change to ALARM is forwarded; at least one.
    event_bus_arn: the training environment's default event bus (``arn:<partition>:events:<region>:<account>:
    event-bus/default``).
    """

    alarm_arns: tuple[str, ...]
    event_bus_arn: str


class AlarmForwarding(Construct):
    """Attributes: ``rule``, ``role`` (events:PutEvents on the one bus), ``dead_letter_queue``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: AlarmForwardingProps) -> None:
        super().__init__(scope, construct_id)
        if not props.alarm_arns:
            raise ValueError(f"{self.node.path}: alarm forwarding needs at least one alarm")
        self.dead_letter_queue = dead_letter_queue(self, "alarm forwarding")
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                             description="Forwards the needs-retraining alarms to the training environment's bus")
        allow(self.role, actions=["events:PutEvents"], resources=[props.event_bus_arn])
        self.rule = events.CfnRule(
            self, "Rule",
            description="Forward the endpoints' needs-retraining alarms to the training environment",
            event_pattern=alarm_state_change_pattern(props.alarm_arns),
            state="ENABLED",
            targets=[events.CfnRule.TargetProperty(
                id="TrainingEventBus", arn=props.event_bus_arn, role_arn=self.role.role_arn,
                **delivery(self.dead_letter_queue))],
        )
        admit_rule(self.dead_letter_queue, self.rule)
