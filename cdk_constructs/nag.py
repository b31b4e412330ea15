"""The guardrails a security team runs over the app, and their findings acknowledged on the narrowest construct,
one rule and one reason at a time.

Three tools read the synthesized templates: cdk-nag (AWS Solutions pack) and the AWS Control Tower proactive controls
(cfn-guard, through ``cdklabs.cdk_validator_cfnguard``) run as CDK policy validation plugins at synth and fail it on
a finding; checkov reads the assembly afterwards (``scripts/checkov.sh``). A finding is either fixed or acknowledged
where the resource is defined: cdk-nag and Control Tower findings with ``Validations.acknowledge``, checkov findings
with the ``checkov`` skip metadata on the CloudFormation resource, which checkov reads from the template.

cdk-nag 3 names an IAM wildcard finding after the resource as it appears in the template
(``AwsSolutions-IAM5[Resource::<RawBucket1234.Arn>/*]``). ``wildcard_findings`` derives those ids from the same
policy values the construct wrote, so an acknowledgment never goes stale when a logical id changes. The resources
must live in the policy's own stack: a cross-stack reference is rendered as an import and would not match.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aws_cdk import Acknowledgment, App, CfnResource, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from cdklabs.cdk_validator_cfnguard import CfnGuardValidator
from constructs import IConstruct

PACK = "AwsSolutions"
#: The Control Tower plugin's name: its acknowledgments are ``cdk-validator-cfnguard::<guard rule name>``.
CONTROL_TOWER = "cdk-validator-cfnguard"
#: Where checkov reads a resource's skipped checks (``Metadata.checkov.skip``: ``id`` and ``comment``).
CHECKOV_METADATA = "checkov"


def add_guardrails(app: App) -> None:
    """cdk-nag and the Control Tower proactive controls, both failing synth on an unacknowledged finding."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), CfnGuardValidator())


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge one finding (``AwsSolutions-SMG4``, ``AwsSolutions-IAM5[Resource::*]``) on ``scope`` and below.

    Recorded under the pack's prefix (``AwsSolutions::...``), the id cdk-nag itself prints for an acknowledgment.
    """
    if not reason.strip():
        raise ValueError(f"acknowledging {finding} needs a reason")
    rule_id = f"{PACK}::{finding}" if finding.startswith(f"{PACK}-") else finding
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def acknowledge_control(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one Control Tower proactive control, by the guard rule name the plugin prints
    (``s3_bucket_object_lock_enabled_check`` for CT.S3.PR.9), on ``scope`` and below."""
    if not reason.strip():
        raise ValueError(f"acknowledging {rule} needs a reason")
    Validations.of(scope).acknowledge(Acknowledgment(id=f"{CONTROL_TOWER}::{rule}", reason=reason))


def acknowledge_checkov(scope: IConstruct, check: str, reason: str, *, resource_type: str | None = None) -> None:
    """Skip one checkov check (``CKV_AWS_115``) on every CloudFormation resource at or under ``scope`` (of
    ``resource_type``, when given), with the reason as checkov's comment."""
    if not reason.strip():
        raise ValueError(f"acknowledging {check} needs a reason")
    resources = [c for c in scope.node.find_all() if isinstance(c, CfnResource)
                 and (resource_type is None or c.cfn_resource_type == resource_type)]
    if not resources:
        raise ValueError(f"{scope.node.path}: no resource to acknowledge {check} on")
    for resource in resources:
        metadata = resource.get_metadata(CHECKOV_METADATA) or {"skip": []}
        skips = [s for s in metadata["skip"] if s["id"] != check]
        resource.add_metadata(CHECKOV_METADATA, {"skip": [*skips, {"id": check, "comment": reason}]})


#: Why a function of the platform reserves no concurrency (checkov CKV_AWS_115).
UNRESERVED_CONCURRENCY = ("No reserved concurrency: Lambda keeps 100 of an account's concurrency unreserved, so a "
                          "reservation fails to deploy in an account still at a new account's lower limit, and every "
                          "reservation is taken from the other functions. ")
#: Why a function's environment needs no customer key (checkov CKV_AWS_173).
PLAIN_ENVIRONMENT = ("The environment holds resource names and settings, never a secret (a secret is read from "
                     "Secrets Manager at run time, by ARN); Lambda encrypts it at rest with its AWS managed key.")
#: Why a function in the environment's VPC still fails Control Tower's CT.LAMBDA.PR.3.
IMPORTED_VPC = ("The function runs in the environment's VPC: its subnets and security group are imported from the "
                "Network stack (Fn::ImportValue), which the control, reading one template, cannot resolve.")
#: Why a registry function is in no VPC (CT.LAMBDA.PR.3, checkov CKV_AWS_117).
NO_VPC = ("The registry account has no VPC: the function only calls AWS APIs over their TLS endpoints, holds no data "
          "and serves no network.")

#: Why a serverless endpoint's model has no network isolation (checkov CKV_AWS_370), no VPC and no data capture.
SERVERLESS_INFERENCE = ("A serverless endpoint (its cdk.json 'serverless' setting): SageMaker Serverless Inference "
                        "supports no network isolation, no VPC configuration and no data capture, so its model has "
                        "none (and the endpoint no drift monitor); instance endpoints keep all three.")


def acknowledge_function(function: IConstruct, *, bounded_by: str, in_vpc: bool, environment: bool = True) -> None:
    """The findings the platform's functions share, acknowledged on ``function``: no reserved concurrency
    (``bounded_by`` says what bounds its invocations), a plain environment (where it has one), and the VPC control
    (``in_vpc``: it runs in the environment's VPC, from imported subnets; otherwise it is a registry function in
    none)."""
    acknowledge_checkov(function, "CKV_AWS_115", UNRESERVED_CONCURRENCY + bounded_by,
                        resource_type="AWS::Lambda::Function")
    if environment:
        acknowledge_checkov(function, "CKV_AWS_173", PLAIN_ENVIRONMENT, resource_type="AWS::Lambda::Function")
    acknowledge_control(function, "lambda_inside_vpc_check", IMPORTED_VPC if in_vpc else NO_VPC)
    if not in_vpc:
        acknowledge_checkov(function, "CKV_AWS_117", NO_VPC, resource_type="AWS::Lambda::Function")


def flatten_reference(node: Any) -> str:
    """The flat string cdk-nag renders for a (resolved) CloudFormation value; mirrors its ``flattenCfnReference``."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(flatten_reference(item) for item in items)
        if "Fn::Sub" in node:
            return flatten_reference(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{flatten_reference(resource)}.{flatten_reference(attribute)}>"
        if "Fn::ImportValue" in node:
            return flatten_reference(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{flatten_reference(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


def wildcard_findings(scope: IConstruct, *, actions: Iterable[str], resources: Iterable[str]) -> list[str]:
    """The ``AwsSolutions-IAM5`` finding ids a statement with these actions and resources raises in ``scope``'s stack."""
    stack = Stack.of(scope)
    findings = [f"AwsSolutions-IAM5[Action::{a}]" for a in actions if "*" in a]
    for resource in resources:
        flat = flatten_reference(stack.resolve(resource))
        if "*" in flat:
            findings.append(f"AwsSolutions-IAM5[Resource::{flat}]")
    return findings
