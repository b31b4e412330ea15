"""An endpoint's monitoring alarms: data drift, model quality, no data; a composite that pages on-call and retrains.

The metrics are the drift monitor's (``naming.MONITORING_NAMESPACE``, per ``EndpointName``), one data point per
monitor run, so an alarm's period is the run's window. The composite alarm (drift or quality in ALARM) notifies the
environment's on-call topic; its change to ALARM starts retraining through EventBridge (``Retraining`` where the
use case's pipeline runs, ``AlarmForwarding`` from an environment that only serves). The no-data alarm pages on-call
when a window held no requests and the use case treats that as breaching; it does not retrain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_constructs.nag import acknowledge_control
from modelwerk import naming
from modelwerk.settings import QUALITY_ALARMS

_TREATMENTS = {
    "notBreaching": cloudwatch.TreatMissingData.NOT_BREACHING,
    "breaching": cloudwatch.TreatMissingData.BREACHING,
    "ignore": cloudwatch.TreatMissingData.IGNORE,
    "missing": cloudwatch.TreatMissingData.MISSING,
}


@dataclass(frozen=True)
class MonitoringAlarmsProps:
    """endpoint_name: the monitored endpoint; alarm names come from ``naming.monitoring_alarm_name``.
    window_minutes: the monitor's window (the alarms' period). max_psi, drift_periods, no_data, quality: the use
    case's ``MonitoringConfig``.
    """

    endpoint_name: str
    window_minutes: int
    max_psi: float
    drift_periods: int = 1
    no_data: str = "notBreaching"
    quality: Mapping[str, float] = field(default_factory=dict)


class MonitoringAlarms(Construct):
    """Attributes: ``drift``, ``no_data``, ``quality`` (metric name -> alarm), ``composite``."""

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
        else:
            acknowledge_control(self.no_data, "cloudwatch_alarm_action_check",
                                "This use case treats a monitor window without requests as normal (its no_data "
                                "setting is not 'breaching'): the alarm records the state and pages nobody.")
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
        for alarm in (self.drift, *self.quality.values()):
            acknowledge_control(alarm, "cloudwatch_alarm_action_check",
                                "An input of the composite 'needs retraining' alarm, which carries the actions "
                                "(on-call topic, retraining): one notification per incident, not one per input.")
        self.composite.add_ok_action(notify)
