"""MonitoringStack: an environment's drift monitor, its endpoints' monitoring alarms, the on-call topic, and how their
"needs retraining" alarms reach the training pipelines."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_constructs.alarm_bus_access import AlarmBusAccess, AlarmBusAccessProps
from cdk_constructs.alarm_forwarding import AlarmForwarding, AlarmForwardingProps
from cdk_constructs.drift_monitor import DriftMonitor, DriftMonitorProps
from cdk_constructs.ids import pascal
from cdk_constructs.monitoring_alarms import MonitoringAlarms, MonitoringAlarmsProps
from cdk_constructs.parameters import PlatformParameters
from cdk_constructs.retraining import Retraining, RetrainingProps
from modelwerk import naming
from modelwerk.settings import EnvironmentConfig, PlatformConfig
from stacks.serving_stack import scored_endpoints


class MonitoringStack(Stack):
    """Attributes: ``monitor`` (``DriftMonitor``), ``topic``, ``parameters`` (None without single-model endpoints),
    ``alarms`` (endpoint -> ``MonitoringAlarms``), ``retraining`` (use case -> ``Retraining``), ``bus_access`` and
    ``forwarding`` (or None).

    Single-model endpoints that capture requests are monitored; a multi-model endpoint serves many versions, each with
    its own baseline, and is not compared as a whole; a serverless endpoint captures nothing (SageMaker Serverless
    Inference has no data capture), so it has no drift monitor and no monitoring alarms (its serving alarms stay).
    A training environment starts each use case's pipeline on its own composite alarms and on those the environments
    retraining in it forward (``PlatformConfig.retraining_alarms``), and admits their accounts to its default bus; an
    environment that only serves forwards its composite alarms there.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig,
                 environment: EnvironmentConfig, vpc: ec2.IVpc, workload_security_group: ec2.ISecurityGroup,
                 serving_bucket_name: str, serving_key_arn: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        project, env, registry = config.project, environment.name, config.registry
        monitored = {name: e for name, e in environment.endpoints.items() if e.captures and not e.multi_model}
        settings = {name: config.use_case(e.use_case).monitoring for name, e in monitored.items()}
        self.monitor: DriftMonitor | None = None
        self.topic: sns.Topic | None = None
        self.alarms: dict[str, MonitoringAlarms] = {}
        self.parameters: PlatformParameters | None = None
        batch = tuple(sorted(scored_endpoints(environment)))  # use cases whose inference pipelines' batches it judges
        if monitored or batch:
            self.monitor = DriftMonitor(
                self, "DriftMonitor",
                props=DriftMonitorProps(
                    project=project, env_name=env, source_root=config.root,
                    endpoints={name: (s.schedule, s.window_minutes) for name, s in settings.items()},
                    serving_bucket_name=serving_bucket_name, serving_key_arn=serving_key_arn,
                    registry_account=registry.account,
                    artifact_bucket_name=naming.bucket_name(project, registry.name, "model-artifacts", registry.account,
                                                            registry.region),
                    artifact_key_alias=f"alias/{project}/{registry.name}/model-artifacts",
                    group_names=tuple(sorted({naming.model_package_group_name(project, u)
                                              for u in [*(e.use_case for e in monitored.values()), *batch]})),
                    batch_use_cases=batch,
                    destroy_on_removal=environment.destroy_on_removal),
                vpc=vpc, security_group=workload_security_group)
            key = self.monitor.key
            key.add_to_resource_policy(iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToNotify", actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")], resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}}))
            self.topic = sns.Topic(self, "OnCall", topic_name=f"{project}-{env}-on-call", master_key=key,
                                   enforce_ssl=True, display_name=f"{project} {env} model monitoring")
            for name, endpoint in sorted(monitored.items()):
                s = settings[name]
                self.alarms[name] = MonitoringAlarms(
                    self, f"{pascal(name)}Monitoring",
                    props=MonitoringAlarmsProps(endpoint_name=name, window_minutes=s.window_minutes, max_psi=s.max_psi,
                                                drift_periods=s.drift_periods, no_data=s.no_data, quality=s.quality),
                    topic=self.topic)
            self.parameters = PlatformParameters(
                self, "Parameters", prefix=naming.ssm_prefix(project, env),
                values={"monitoring/topic-arn": self.topic.topic_arn,
                        "monitoring/function-name": self.monitor.function.function_name})
        self.retraining: dict[str, Retraining] = {}
        self.bus_access: AlarmBusAccess | None = None
        self.forwarding: AlarmForwarding | None = None
        training = config.retraining_environment(env)
        if environment.training:
            forwarding_accounts: set[str] = set()
            for use_case, sources in config.retraining_alarms(env).items():
                self.retraining[use_case] = Retraining(
                    self, f"{pascal(use_case)}Retraining",
                    props=RetrainingProps(
                        use_case=use_case,
                        pipeline_arn=self.format_arn(service="sagemaker", resource="pipeline",
                                                     resource_name=naming.training_pipeline_name(project, env,
                                                                                                 use_case)),
                        alarm_arns=tuple(self._composite_arn(env, source, endpoint) for source, endpoint in sources)))
                forwarding_accounts |= {source.account for source, _ in sources if source.name != env}
            if forwarding_accounts:
                self.bus_access = AlarmBusAccess(self, "ForwardedAlarms",
                                                 props=AlarmBusAccessProps(accounts=tuple(sorted(forwarding_accounts))))
        elif training is not None and self.alarms:
            self.forwarding = AlarmForwarding(
                self, "AlarmForwarding",
                props=AlarmForwardingProps(
                    alarm_arns=tuple(a.composite.alarm_arn for _, a in sorted(self.alarms.items())),
                    event_bus_arn=self.format_arn(service="events", resource="event-bus", resource_name="default",
                                                  account=training.account, region=training.region)))

    def _composite_arn(self, env: str, source: EnvironmentConfig, endpoint: str) -> str:
        """An endpoint's composite alarm: this stack's own (a reference), or another account's (by name)."""
        if source.name == env:
            return self.alarms[endpoint].composite.alarm_arn
        return self.format_arn(service="cloudwatch", resource="alarm", arn_format=ArnFormat.COLON_RESOURCE_NAME,
                               resource_name=naming.monitoring_alarm_name(endpoint, "composite"),
                               account=source.account, region=source.region)
