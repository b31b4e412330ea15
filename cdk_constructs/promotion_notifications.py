"""What the promotion tells people: a version waits for approval, or an execution failed.

Two KMS-encrypted topics in the registry account, named so people can subscribe to them without a deployment
output: ``approvals`` (the pipelines' manual approval actions publish there, with the gate's summary and report
link) and ``failures`` (an EventBridge rule on any promotion pipeline's execution ending in FAILED, a rejection
included). The key also encrypts the promotion's log groups and dead-letter queues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_constructs.encryption import allow_eventbridge_topics, allow_log_group_encryption, platform_key
from modelwerk import naming

EXECUTION_STATE_CHANGE = "CodePipeline Pipeline Execution State Change"


@dataclass(frozen=True)
class PromotionNotificationsProps:
    """project, env_name: name the topics (``naming.promotion_topic_name``) and the key alias.
    pipeline_names: the promotion pipelines whose failed executions are announced.
    destroy_on_removal: delete the key with the stack (default False).
    """

    project: str
    env_name: str
    pipeline_names: Sequence[str]
    destroy_on_removal: bool = False


class PromotionNotifications(Construct):
    """Attributes: ``key``, ``approvals`` and ``failures`` (topics), ``failure_rule``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: PromotionNotificationsProps) -> None:
        super().__init__(scope, construct_id)
        if not props.pipeline_names:
            raise ValueError("PromotionNotifications needs the pipelines whose failures it announces")
        destroy = props.destroy_on_removal
        self.key = platform_key(self, "Key", alias=f"alias/{props.project}/{props.env_name}/promotion",
                                description="Promotion: approval and failure topics, logs, dead letters",
                                destroy_on_removal=destroy)
        allow_log_group_encryption(self.key)
        allow_eventbridge_topics(self.key)
        self.approvals = sns.Topic(
            self,
            "Approvals",
            topic_name=naming.promotion_topic_name(props.project, "approvals"),
            display_name="Model promotion: a version waits for approval",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.failures = sns.Topic(
            self,
            "Failures",
            topic_name=naming.promotion_topic_name(props.project, "failures"),
            display_name="Model promotion: an execution failed",
            master_key=self.key,
            enforce_ssl=True,
        )
        # L1 rule and a topic statement of its own: the SNS target would allow every rule of every account to publish.
        self.failure_rule = events.CfnRule(
            self,
            "FailureRule",
            description="Announce a failed (or rejected) promotion execution",
            event_pattern={"source": ["aws.codepipeline"], "detail-type": [EXECUTION_STATE_CHANGE],
                           "detail": {"pipeline": sorted(props.pipeline_names), "state": ["FAILED"]}},
            state="ENABLED",
            targets=[events.CfnRule.TargetProperty(
                id="FailuresTopic",
                arn=self.failures.topic_arn,
                input_transformer=events.CfnRule.InputTransformerProperty(
                    input_paths_map={"pipeline": "$.detail.pipeline", "execution": "$.detail.execution-id",
                                     "region": "$.region"},
                    input_template='"Promotion pipeline <pipeline> execution <execution> failed (a stage failed or '
                                   'the approval was rejected); see it in the CodePipeline console of <region>."'),
            )],
        )
        self.failures.add_to_resource_policy(iam.PolicyStatement(
            sid="FailureRulePublishes",
            actions=["sns:Publish"],
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            resources=[self.failures.topic_arn],
            conditions={"ArnEquals": {"aws:SourceArn": self.failure_rule.attr_arn}},
        ))
