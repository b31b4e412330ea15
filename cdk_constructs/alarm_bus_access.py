"""The training environment's default event bus admits the alarms that serving environments forward to it
(``AlarmForwarding``): exactly the named accounts, only events:PutEvents, only CloudWatch alarm state changes.

A default bus takes events from its own account alone until its policy names others; naming the accounts (never a
wildcard principal) and the one kind of event keeps a serving account from putting anything else here.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_events as events
from constructs import Construct

STATEMENT_ID = "ServingAccountsForwardAlarms"


@dataclass(frozen=True)
class AlarmBusAccessProps:
    """accounts: the 12-digit ids of the accounts that forward their alarms here; at least one, not this account."""

    accounts: tuple[str, ...]


class AlarmBusAccess(Construct):
    """Attributes: ``policy`` (the default bus's statement for the forwarding accounts), ``event_bus_arn``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: AlarmBusAccessProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        accounts = sorted(set(props.accounts))
        if not accounts or any(not (len(a) == 12 and a.isdigit()) for a in accounts):
            raise ValueError(f"{self.node.path}: name the forwarding accounts by their 12-digit ids, not {accounts}")
        if stack.account in accounts:
            raise ValueError(f"{self.node.path}: the bus's own account {stack.account} needs no policy")
        self.event_bus_arn = stack.format_arn(service="events", resource="event-bus", resource_name="default")
        self.policy = events.CfnEventBusPolicy(
            self, "Policy",
            event_bus_name="default",
            statement_id=STATEMENT_ID,
            statement={
                "Effect": "Allow",
                "Principal": {"AWS": [f"arn:{stack.partition}:iam::{account}:root" for account in accounts]},
                "Action": "events:PutEvents",
                "Resource": self.event_bus_arn,
                "Condition": {"ForAllValues:StringEquals": {"events:source": ["aws.cloudwatch"]},
                              "StringEquals": {"events:detail-type": "CloudWatch Alarm State Change"}},
            },
        )
