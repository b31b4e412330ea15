"""The platform's customer managed keys, and the key policies that let AWS services use them, scoped to this
account's resources."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

#: A key deleted with its stack waits this long, the shortest KMS allows, before it is gone.
DESTROYED_KEY_PENDING_WINDOW = Duration.days(7)


def platform_key(scope: Construct, construct_id: str, *, alias: str, description: str,
                 destroy_on_removal: bool) -> kms.Key:
    """A rotating key kept when its stack is deleted, or deleted with it (after the shortest pending window) where
    the environment destroys on removal."""
    key = kms.Key(
        scope,
        construct_id,
        alias=alias,
        description=description,
        enable_key_rotation=True,
        removal_policy=RemovalPolicy.DESTROY if destroy_on_removal else RemovalPolicy.RETAIN,
        pending_window=DESTROYED_KEY_PENDING_WINDOW if destroy_on_removal else None,
    )
    limit_grants_to_aws_services(key)
    return key


def limit_grants_to_aws_services(key: kms.Key) -> None:
    """Grants on the key are created only by or for AWS services (SageMaker volumes, Lambda, Logs), never handed
    from one principal to another (Control Tower CT.KMS.PR.3): a Deny whatever the identity policies allow."""
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="DenyGrantsNotForAWSServices",
            effect=iam.Effect.DENY,
            actions=["kms:CreateGrant"],
            principals=[iam.AnyPrincipal()],
            resources=["*"],
            conditions={"BoolIfExists": {"kms:GrantIsForAWSResource": "false", "aws:PrincipalIsAWSService": "false"}},
        )
    )


def allow_log_group_encryption(key: kms.IKey) -> None:
    """CloudWatch Logs (the regional service principal) may use the key for this account's log groups only."""
    stack = Stack.of(key)
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AllowCloudWatchLogs",
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                }
            },
        )
    )


def allow_eventbridge_dead_letters(key: kms.IKey) -> None:
    """EventBridge may encrypt undeliverable events into a dead-letter queue under this key, for this account's rules."""
    _allow_eventbridge(key, "AllowEventBridgeDeadLetters")


def allow_eventbridge_topics(key: kms.IKey) -> None:
    """EventBridge may publish to topics encrypted under this key (and deliver a rule's dead letters into queues
    under it), for this account's rules."""
    _allow_eventbridge(key, "AllowEventBridgeTopics")


def _allow_eventbridge(key: kms.IKey, sid: str) -> None:
    """The one statement behind both: EventBridge, acting for this account's rules, may use the key for data keys."""
    stack = Stack.of(key)
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid=sid,
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            resources=["*"],
            conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
        )
    )
