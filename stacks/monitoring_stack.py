"""MonitoringStack: an environment's drift monitor, its endpoints' monitoring alarms and the on-call topic."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_constructs.drift_monitor import DriftMonitor, DriftMonitorProps
from cdk_constructs.ids import pascal
from cdk_constructs.monitoring_alarms import MonitoringAlarms, MonitoringAlarmsProps
from cdk_constructs.parameters import PlatformParameters
from modelwerk import naming
from modelwerk.settings import EnvironmentConfig, PlatformConfig


class MonitoringStack(Stack):
    """Attributes: ``monitor`` (``DriftMonitor``), ``topic``, ``alarms`` (endpoint -> ``MonitoringAlarms``).

    Single-model endpoints are monitored; a multi-model endpoint serves many versions, each with its own baseline,
    and is not compared as a whole. Retraining starts from environments that run the pipelines (``training``).
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig,
                 environment: EnvironmentConfig, vpc: ec2.IVpc, workload_security_group: ec2.ISecurityGroup,
                 serving_bucket_name: str, serving_key_arn: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        project, env, registry = config.project, environment.name, config.registry
        monitored = {name: e for name, e in environment.endpoints.items() if not e.multi_model}
        settings = {name: config.use_case(e.use_case).monitoring for name, e in monitored.items()}
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
                group_names=tuple(sorted({naming.model_package_group_name(project, e.use_case)
                                          for e in monitored.values()})),
                destroy_on_removal=environment.destroy_on_removal),
            vpc=vpc, security_group=workload_security_group)
        key = self.monitor.key
        key.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowCloudWatchAlarmsToNotify", actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")], resources=["*"],
            conditions={"StringEquals": {"aws:SourceAccount": self.account}}))
        self.topic = sns.Topic(self, "OnCall", topic_name=f"{project}-{env}-on-call", master_key=key,
                               enforce_ssl=True, display_name=f"{project} {env} model monitoring")
        self.alarms: dict[str, MonitoringAlarms] = {}
        for name, endpoint in sorted(monitored.items()):
            s = settings[name]
            pipeline = (f"arn:{self.partition}:sagemaker:{self.region}:{self.account}:pipeline/"
                        f"{naming.training_pipeline_name(project, env, endpoint.use_case)}"
                        if environment.training else None)
            self.alarms[name] = MonitoringAlarms(
                self, f"{pascal(name)}Monitoring",
                props=MonitoringAlarmsProps(endpoint_name=name, window_minutes=s.window_minutes, max_psi=s.max_psi,
                                            drift_periods=s.drift_periods, no_data=s.no_data, quality=s.quality,
                                            retraining_pipeline_arn=pipeline),
                topic=self.topic)
        self.parameters = PlatformParameters(
            self, "Parameters", prefix=naming.ssm_prefix(project, env),
            values={"monitoring/topic-arn": self.topic.topic_arn,
                    "monitoring/function-name": self.monitor.function.function_name})
