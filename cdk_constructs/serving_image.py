"""The serving image in the registry account: an ECR repository, the CodeBuild project that builds it, and the
custom resource that starts a build whenever the build context changes.

No Docker runs at synth: the build context (``cdk_constructs.serving_context``) is an S3 asset, and CodeBuild builds
``containers/serving/Dockerfile`` from it and pushes ``<repository>:<tag>``, the tag being the context's content hash.
Tags are immutable, so a version names one image for good: the build skips the push when the tag exists already.
The workload accounts (their endpoints and the training pipelines that register versions) may pull, nobody else; only
the build role may push.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk_constructs.encryption import allow_log_group_encryption, platform_key
from cdk_constructs.nag import acknowledge, acknowledge_checkov, acknowledge_control, acknowledge_function
from cdk_constructs.permissions import LOG_WRITE, S3_READ, allow, allow_objects
from cdk_constructs.serving_context import DOCKERFILE, TAG_PREFIX
from modelwerk import naming

#: What a workload account may do with the repository: pull an image.
PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")
#: What the build needs: ``docker push``, and the look-up that skips a tag already pushed.
PUSH_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
                "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:DescribeImages")


@dataclass(frozen=True)
class ServingImageProps:
    """project, env_name: name the repository (``naming.serving_repository_name``), the build project and the key alias.
    source: the build context as an S3 asset (a folder staged by ``serving_context.stage``).
    tag: the image tag the build pushes (``serving_context.serving_image_tag`` of the same context).
    puller_accounts: the workload accounts allowed to pull (dev, staging, prod); never a wildcard.
    keep_images: the lifecycle rule keeps this many most recent images (default 50). An older image is deleted even
        if a registered version still names it; such a version must be retrained (or the image rebuilt) before it
        is deployed again.
    build_timeout: a build running longer is stopped (default 60 minutes).
    log_retention: the build's logs are kept this long (default one year).
    start_build: start a build when the tag changes (default True).
    destroy_on_removal: delete the repository, its images and the key with the stack (default False).
    """

    project: str
    env_name: str
    source: s3_assets.Asset
    tag: str
    puller_accounts: Sequence[str]
    keep_images: int = 50
    build_timeout: Duration = Duration.minutes(60)
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR
    start_build: bool = True
    destroy_on_removal: bool = False


class ServingImage(Construct):
    """Attributes: ``key``, ``repository``, ``build_role``, ``log_group``, ``project`` (CodeBuild), ``image_uri``,
    ``start_build`` (the custom resource, when ``props.start_build``)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ServingImageProps) -> None:
        super().__init__(scope, construct_id)
        if not props.puller_accounts:
            raise ValueError("ServingImage needs the workload accounts that pull the image")
        if not props.tag.startswith(TAG_PREFIX):
            raise ValueError(f"tag {props.tag!r} is not a build context hash ({TAG_PREFIX}<sha256>)")
        if props.keep_images < 1:
            raise ValueError("keep_images must be at least 1")
        stack = Stack.of(self)
        destroy = props.destroy_on_removal
        removal = RemovalPolicy.DESTROY if destroy else RemovalPolicy.RETAIN

        self.key = platform_key(self, "Key", alias=f"alias/{props.project}/{props.env_name}/serving-image",
                                description="Serving image: repository layers, build artifacts and build logs",
                                destroy_on_removal=destroy)
        allow_log_group_encryption(self.key)

        self.repository = ecr.Repository(
            self,
            "Repository",
            repository_name=naming.serving_repository_name(props.project),
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            encryption=ecr.RepositoryEncryption.KMS,
            encryption_key=self.key,
            lifecycle_rules=[ecr.LifecycleRule(
                description=f"keep the {props.keep_images} most recent images",
                max_image_count=props.keep_images,
                tag_status=ecr.TagStatus.ANY,
            )],
            removal_policy=removal,
            empty_on_delete=destroy or None,
        )
        self.repository.add_to_resource_policy(iam.PolicyStatement(
            sid="WorkloadAccountsPull",
            actions=list(PULL_ACTIONS),
            principals=[iam.AccountPrincipal(a) for a in dict.fromkeys(props.puller_accounts)],
        ))
        self.image_uri = naming.serving_image_uri(stack.account, stack.region, props.project, props.tag)

        self.log_group = logs.LogGroup(self, "BuildLogs", encryption_key=self.key, retention=props.log_retention,
                                       removal_policy=removal)
        self.build_role = iam.Role(self, "BuildRole", assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
                                   description="Builds the serving image and pushes it to its repository")
        self._build_permissions(props)
        registry = f"{stack.account}.dkr.ecr.{stack.region}.{stack.url_suffix}"
        self.project = codebuild.Project(
            self,
            "Build",
            project_name=naming.serving_build_project_name(props.project),
            description=f"Builds {DOCKERFILE} and pushes it as {naming.serving_repository_name(props.project)}:<tag>",
            source=codebuild.Source.s3(bucket=props.source.bucket, path=props.source.s3_object_key),
            # The role is complete as written above: CDK's own grants (wildcard S3 reads, default log groups) stay off.
            role=self.build_role.without_policy_updates(),
            encryption_key=self.key,
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.SMALL,
                privileged=True,
            ),
            environment_variables={
                "REGISTRY": codebuild.BuildEnvironmentVariable(value=registry),
                "REPOSITORY_NAME": codebuild.BuildEnvironmentVariable(value=self.repository.repository_name),
                "REPOSITORY_URI": codebuild.BuildEnvironmentVariable(value=self.repository.repository_uri),
                "IMAGE_TAG": codebuild.BuildEnvironmentVariable(value=props.tag),
            },
            build_spec=codebuild.BuildSpec.from_object(_build_spec()),
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=self.log_group)),
            timeout=props.build_timeout,
        )
        self.project.node.add_dependency(self.build_role)
        privileged = ("The project runs docker build and docker push, which need the Docker daemon that privileged "
                      "mode provides; it builds only the serving image from the platform's own build context.")
        acknowledge(self.project, "AwsSolutions-CB3", privileged)
        acknowledge_control(self.project, "codebuild_project_environment_privileged_check", privileged)

        self.start_build: cr.AwsCustomResource | None = None
        if props.start_build:
            self.start_build = self._start_build_on_change(props, removal)

    def _build_permissions(self, props: ServingImageProps) -> None:
        role = self.build_role
        source = props.source
        allow_objects(role, source.bucket, prefixes=[source.s3_object_key], actions=S3_READ,
                      reason="one asset object, named exactly")
        allow(role, actions=["s3:GetBucketAcl", "s3:GetBucketLocation"], resources=[source.bucket.bucket_arn])
        allow(role, actions=LOG_WRITE, resources=[self.log_group.log_group_arn],
              wildcard_reason="CodeBuild writes one log stream per build into the project's own log group.")
        allow(role, actions=("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"),
              resources=[self.key.key_arn])
        allow(role, actions=PUSH_ACTIONS, resources=[self.repository.repository_arn])
        allow(role, actions=["ecr:GetAuthorizationToken"], resources=["*"],
              wildcard_reason="ecr:GetAuthorizationToken has no resource to scope to.")

    def _start_build_on_change(self, props: ServingImageProps, removal: RemovalPolicy) -> cr.AwsCustomResource:
        """``codebuild:StartBuild`` on create and whenever the tag changes (the tag is the call's parameter, so a
        new build context updates the resource); deleting the stack starts nothing. The build runs asynchronously:
        a deployment does not wait for the image."""
        log_group = logs.LogGroup(self, "StartBuildLogs", encryption_key=self.key, retention=props.log_retention,
                                  removal_policy=removal)
        role = iam.Role(self, "StartBuildRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description="Starts the serving image build when its build context changes")
        allow(role, actions=LOG_WRITE, resources=[log_group.log_group_arn],
              wildcard_reason="Lambda writes one log stream per execution environment into the function's log group.")
        call = cr.AwsSdkCall(
            service="CodeBuild",
            action="startBuild",
            parameters={
                "projectName": self.project.project_name,
                "environmentVariablesOverride": [{"name": "IMAGE_TAG", "value": props.tag, "type": "PLAINTEXT"}],
            },
            physical_resource_id=cr.PhysicalResourceId.of(props.tag),
        )
        start = cr.AwsCustomResource(
            self,
            "StartBuild",
            on_create=call,
            on_update=call,
            # The project's ARN written out from its name (not its GetAtt): the policy then needs no attribute of a
            # resource an environment without CodeBuild (local mode) cannot create.
            policy=cr.AwsCustomResourcePolicy.from_statements([iam.PolicyStatement(
                actions=["codebuild:StartBuild"],
                resources=[Stack.of(self).format_arn(service="codebuild", resource="project",
                                                     resource_name=naming.serving_build_project_name(props.project))],
            )]),
            role=role,
            log_group=log_group,
            install_latest_aws_sdk=False,
            timeout=Duration.minutes(2),
        )
        start.node.add_dependency(self.project)
        # AwsCustomResource runs one function per stack, created beside the stack's other constructs.
        provider = Stack.of(self).node.find_child("AWS" + cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", ""))
        acknowledge_function(provider, in_vpc=False, environment=False,
                             bounded_by="CloudFormation invokes it once per change of the tag.")
        acknowledge_checkov(provider, "CKV_AWS_116",
                            "CloudFormation invokes it and waits for its answer; a failure fails the deployment, "
                            "so no event is left to keep.", resource_type="AWS::Lambda::Function")
        return start


def _build_spec() -> dict:
    """Log in, then build and push the tag unless the repository holds it already (tags are immutable)."""
    build = (
        'if aws ecr describe-images --repository-name "$REPOSITORY_NAME" --image-ids imageTag="$IMAGE_TAG" '
        '> /dev/null 2>&1; then\n'
        '  echo "$REPOSITORY_URI:$IMAGE_TAG exists (tags are immutable): nothing to build"\n'
        'else\n'
        f'  docker build --file {DOCKERFILE} --tag "$REPOSITORY_URI:$IMAGE_TAG" . && '
        'docker push "$REPOSITORY_URI:$IMAGE_TAG"\n'
        'fi\n'
    )
    return {
        "version": "0.2",
        "phases": {
            "pre_build": {"commands": [
                'aws ecr get-login-password --region "$AWS_DEFAULT_REGION" | '
                'docker login --username AWS --password-stdin "$REGISTRY"',
            ]},
            "build": {"commands": [build]},
        },
    }
