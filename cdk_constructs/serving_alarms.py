"""The two CloudWatch alarms an endpoint's blue/green deployment rolls back on: server errors and model latency.

They are deployed with the environment (the serving stack), not with the endpoint: an endpoint deployment names them
(``AutoRollbackConfiguration``) before the endpoint exists, and local mode, which deploys the environment but not the
endpoint stacks, evaluates the same alarms. Names come from ``naming.endpoint_alarm_name``; metrics are SageMaker's
own (``AWS/SageMaker``, per endpoint and variant), so no data is missing but the quiet minutes, which do not breach.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from cdk_constructs.nag import acknowledge_control
from modelwerk import naming

NAMESPACE = "AWS/SageMaker"
PERIOD = Duration.seconds(60)
#: SageMaker reports ModelLatency in microseconds; the setting is in milliseconds.
MICROSECONDS_PER_MILLISECOND = 1000


@dataclass(frozen=True)
class EndpointAlarmsProps:
    """endpoint_name: the endpoint (its alarms are ``<endpoint>-invocation-5xx`` and ``<endpoint>-model-latency``).
    max_5xx_errors: the error alarm fires at this many Invocation5XXErrors in a minute (Sum, >=).
    max_latency_ms: the latency alarm fires when a minute's p99 ModelLatency exceeds this many milliseconds.
    variant_name: the production variant the metrics are reported for (default ``AllTraffic``).
    """

    endpoint_name: str
    max_5xx_errors: int
    max_latency_ms: int
    variant_name: str = naming.ENDPOINT_VARIANT


class EndpointAlarms(Construct):
    """Attributes: ``errors`` and ``latency`` (``cloudwatch.Alarm``), ``alarm_names`` (errors first)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: EndpointAlarmsProps) -> None:
        super().__init__(scope, construct_id)
        if props.max_5xx_errors < 1 or props.max_latency_ms < 1:
            raise ValueError("max_5xx_errors and max_latency_ms must be at least 1")
        dimensions = {"EndpointName": props.endpoint_name, "VariantName": props.variant_name}

        def metric(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace=NAMESPACE, metric_name=name, dimensions_map=dimensions,
                                     statistic=statistic, period=PERIOD)

        self.errors = cloudwatch.Alarm(
            self,
            "Errors",
            alarm_name=naming.endpoint_alarm_name(props.endpoint_name, "5xx"),
            alarm_description=f"{props.endpoint_name}: {props.max_5xx_errors} or more 5xx responses in a minute; "
                              "a blue/green deployment rolls back on it",
            metric=metric("Invocation5XXErrors", "Sum"),
            threshold=props.max_5xx_errors,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.latency = cloudwatch.Alarm(
            self,
            "Latency",
            alarm_name=naming.endpoint_alarm_name(props.endpoint_name, "latency"),
            alarm_description=f"{props.endpoint_name}: p99 model latency above {props.max_latency_ms} ms over a "
                              "minute; a blue/green deployment rolls back on it",
            metric=metric("ModelLatency", "p99"),
            threshold=props.max_latency_ms * MICROSECONDS_PER_MILLISECOND,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.alarm_names = [naming.endpoint_alarm_name(props.endpoint_name, kind) for kind in ("5xx", "latency")]
        for alarm in (self.errors, self.latency):
            acknowledge_control(alarm, "cloudwatch_alarm_action_check",
                                "A blue/green deployment's rollback alarm: SageMaker reads its state "
                                "(AutoRollbackConfiguration) and rolls back, which is the action; the monitoring "
                                "alarms page on-call.")
