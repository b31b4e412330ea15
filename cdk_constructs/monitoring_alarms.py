"""An endpoint's monitoring alarms: data drift, model quality, no data; a composite that pages on-call and retrains.

The metrics are the drift monitor's (``naming.MONITORING_NAMESPACE``, per ``EndpointName``), one data point per
monitor run, so an alarm's period is the run's window. The composite alarm (drift or quality in ALARM) notifies the
environment's on-call topic; where the use case's pipeline runs (training environments), an EventBridge rule on the
composite's change to ALARM starts it with ``SnapshotId=latest``: retraining on the newest curated data. The no-data
alarm pages on-call when a window held no requests and the use case treats that as breaching; it does not retrain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.nag import acknowledge
from cdk_constructs.permissions import allow
from modelwerk import naming
from modelwerk.settings import QUALITY_ALARMS

_TREATMENTS = {
    "notBreaching": cloudwatch.TreatMissingData.NOT_BREACHING,
    "breaching": cloudwatch.TreatMissingData.BREACHING,
    "ignore": cloudwatch.TreatMissingData.IGNORE,
    "missing": cloudwatch.TreatMissingData.MISSING,
}
DEAD_LETTER_RETENTION = Duration.days(14)


@dataclass(frozen=True)
class MonitoringAlarmsProps:
    """endpoint_name: the monitored endpoint; alarm names come from ``naming.monitoring_alarm_name``.
    window_minutes: the monitor's window (the alarms' period). max_psi, drift_periods, no_data, quality: the use
    case's ``MonitoringConfig``. retraining_pipeline_arn: start this pipeline when the composite alarm fires (None:
    no retraining from this environment).
    """

    endpoint_name: str
    window_minutes: int
    max_psi: float
    drift_periods: int = 1
    no_data: str = "notBreaching"
    quality: Mapping[str, float] = field(default_factory=dict)
    retraining_pipeline_arn: str | None = None


class MonitoringAlarms(Construct):
    """Attributes: ``drift``, ``no_data``, ``quality`` (metric name -> alarm), ``composite``, ``retraining_rule``
    and ``retraining_dead_letter_queue`` (when retraining)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: MonitoringAlarmsProps,
                 topic: sns.ITopic) -> None:
        super().__init__(scope, construct_id)
        endpoint = props.endpoint_name
        period = Duration.minutes(props.window_minutes)

        def metric(name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace=naming.MONITORING_NAMESPACE, metric_name=name,
                                     dimensions_map={"EndpointName": endpoint}, statistic="Maximum", period=period)

        notify = actions.SnsAction(topic)
        self.drift = cloudwatch.Alarm(
            self, "Drift", alarm_name=naming.monitoring_alarm_name(endpoint, "drift"),
            alarm_description=f"{endpoint}: the worst feature's PSI reached {props.max_psi} in "
                              f"{props.drift_periods} monitor run(s)",
            metric=metric("WorstPSI"), threshold=props.max_psi,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=props.drift_periods, datapoints_to_alarm=props.drift_periods,
            treat_missing_data=_TREATMENTS[props.no_data])
        self.no_data = cloudwatch.Alarm(
            self, "NoData", alarm_name=naming.monitoring_alarm_name(endpoint, "no-data"),
            alarm_description=f"{endpoint}: a monitor window held no requests",
            metric=metric("NoData"), threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1, treat_missing_data=_TREATMENTS[props.no_data])
        if props.no_data == "breaching":
            self.no_data.add_alarm_action(notify)
        self.quality: dict[str, cloudwatch.Alarm] = {}
        for setting, value in sorted(props.quality.items()):
            name = QUALITY_ALARMS[setting]
            below = setting.startswith("min_")
            self.quality[name] = cloudwatch.Alarm(
                self, f"Quality{name}", alarm_name=f"{naming.monitoring_alarm_name(endpoint, 'quality')}-{name.lower()}",
                alarm_description=f"{endpoint}: {name} from ground truth {'below' if below else 'above'} {value}",
                metric=metric(name), threshold=value,
                comparison_operator=(cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD if below
                                     else cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD),
                evaluation_periods=1, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
        rule = cloudwatch.AlarmRule.any_of(*[cloudwatch.AlarmRule.from_alarm(a, cloudwatch.AlarmState.ALARM)
                                             for a in (self.drift, *self.quality.values())])
        self.composite = cloudwatch.CompositeAlarm(
            self, "NeedsRetraining", composite_alarm_name=naming.monitoring_alarm_name(endpoint, "composite"),
            alarm_description=f"{endpoint}: data drift or model quality; on-call is told and the model retrains",
            alarm_rule=rule)
        self.composite.add_alarm_action(notify)
        self.composite.add_ok_action(notify)
        self.retraining_rule: events.CfnRule | None = None
        self.retraining_dead_letter_queue: sqs.Queue | None = None
        if props.retraining_pipeline_arn:
            self._retraining(props.retraining_pipeline_arn)

    def _retraining(self, pipeline_arn: str) -> None:
        queue = sqs.Queue(self, "RetrainingDeadLetterQueue", encryption=sqs.QueueEncryption.SQS_MANAGED,
                          enforce_ssl=True, retention_period=DEAD_LETTER_RETENTION)
        acknowledge(queue, "AwsSolutions-SQS3", "This queue is the dead-letter queue of the retraining rule's target.")
        starter = iam.Role(self, "RetrainingRole", assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                           description="Starts the training pipeline when the endpoint needs retraining")
        allow(starter, actions=["sagemaker:StartPipelineExecution"], resources=[pipeline_arn])
        self.retraining_rule = events.CfnRule(
            self, "RetrainingRule",
            description=f"Retrain when {self.composite.node.id} goes to ALARM",
            event_pattern={"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
                           "resources": [self.composite.alarm_arn], "detail": {"state": {"value": ["ALARM"]}}},
            state="ENABLED",
            targets=[events.CfnRule.TargetProperty(
                id="TrainingPipeline", arn=pipeline_arn, role_arn=starter.role_arn,
                sage_maker_pipeline_parameters=events.CfnRule.SageMakerPipelineParametersProperty(
                    pipeline_parameter_list=[events.CfnRule.SageMakerPipelineParameterProperty(
                        name="SnapshotId", value="latest")]),
                dead_letter_config=events.CfnRule.DeadLetterConfigProperty(arn=queue.queue_arn),
                retry_policy=events.CfnRule.RetryPolicyProperty(maximum_event_age_in_seconds=6 * 3600,
                                                                maximum_retry_attempts=8))],
        )
        queue.add_to_resource_policy(iam.PolicyStatement(
            sid="RuleDeliversUndeliverableEvents", actions=["sqs:SendMessage"],
            principals=[iam.ServicePrincipal("events.amazonaws.com")], resources=[queue.queue_arn],
            conditions={"ArnEquals": {"aws:SourceArn": self.retraining_rule.attr_arn}}))
        self.retraining_dead_letter_queue = queue
