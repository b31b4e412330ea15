"""Deploy a synthesized stage into the embedded AWS, the way ``cdk deploy`` deploys it into an account.

Assets are published to the bootstrap bucket, then each template is deployed in dependency-ordered waves: the
resource types moto's CloudFormation creates go through its CloudFormation (``create_stack``/``update_stack``);
the types it lacks are created through the ordinary APIs by the handlers below; ``Custom::*`` resources and anything
else are recorded as not emulated. Names therefore come only from the templates: there is no second list.

Parameters are applied as CloudFormation applies them (:func:`resolve_parameters`). A deployer given the record of
the stack's previous deployment updates it as CloudFormation does: unchanged resources are kept, the types with an
update (:data:`API_UPDATES`) are updated in place, the immutable ones (:data:`REPLACED_ON_UPDATE`) are replaced by a
new resource, and after success the replaced and removed resources are deleted (the cleanup phase). A failure deletes
what this deployment created (the rollback) before the error is raised.
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import string
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import boto3

from modelwerk.errors import LocalModeError
from modelwerk.local.assembly import StackArtifact
from modelwerk.local.intrinsics import SUB_VARIABLE, Resolver, Unresolvable, references, substitute

log = logging.getLogger(__name__)

BOOTSTRAP_QUALIFIER = "hnb659fds"
BOOTSTRAP_VERSION = "30"

#: Types moto's CloudFormation lists but cannot finish here (custom resources wait for a Lambda it cannot run).
_NOT_THROUGH_MOTO_CFN = ("Custom::", "AWS::CloudFormation::CustomResource", "AWS::CDK::Metadata")

#: Handled by the local runtime itself rather than deployed (say why in the record).
_LOCAL_RUNTIME = {
    "Custom::S3BucketNotifications": "S3 sends its events to EventBridge when the bucket's notification "
                                     "configuration enables it (applied with the bucket)",
    "AWS::Lambda::Permission": "the embedded EventBridge invokes functions without checking their resource policies",
}


def _kms_key_tags(properties: dict[str, Any]) -> dict[str, Any]:
    """moto's KMS model reads tags as the API spells them (TagKey/TagValue), CloudFormation spells them Key/Value."""
    tags = properties.get("Tags")
    if tags:
        properties = {**properties, "Tags": [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in tags]}
    return properties


def _ssm_parameter_tags(properties: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation gives an SSM parameter's tags as a map; moto's model expects the API's Key/Value list."""
    tags = properties.get("Tags")
    if isinstance(tags, dict):
        properties = {**properties, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
    return properties


#: Differences between what CloudFormation accepts and what moto's CloudFormation models read.
_MOTO_CFN_SHIMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "AWS::KMS::Key": _kms_key_tags,
    "AWS::SSM::Parameter": _ssm_parameter_tags,
}


def _complete_bucket(d: "StackDeployer", physical_id: str, p: dict[str, Any]) -> None:
    """Apply what moto's CloudFormation bucket model ignores: versioning, public access block, lifecycle, and
    S3's EventBridge notifications (moto's S3 then sends the bucket's object events to EventBridge)."""
    s3 = d.client("s3")
    eventbridge = ((p.get("NotificationConfiguration") or {}).get("EventBridgeConfiguration") or {})
    if str(eventbridge.get("EventBridgeEnabled", "false")).lower() == "true":
        s3.put_bucket_notification_configuration(Bucket=physical_id, NotificationConfiguration={
            "EventBridgeConfiguration": {}})
    if p.get("VersioningConfiguration"):
        s3.put_bucket_versioning(Bucket=physical_id, VersioningConfiguration={
            "Status": p["VersioningConfiguration"]["Status"]})
    if p.get("PublicAccessBlockConfiguration"):
        s3.put_public_access_block(Bucket=physical_id,
                                   PublicAccessBlockConfiguration=p["PublicAccessBlockConfiguration"])
    rules = (p.get("LifecycleConfiguration") or {}).get("Rules")
    if rules:
        s3.put_bucket_lifecycle_configuration(Bucket=physical_id, LifecycleConfiguration={
            "Rules": [_lifecycle_rule(i, rule) for i, rule in enumerate(rules)]})


def _lifecycle_rule(index: int, rule: dict[str, Any]) -> dict[str, Any]:
    """One lifecycle rule from CloudFormation's shape to the API's."""
    out: dict[str, Any] = {"ID": rule.get("Id", f"rule-{index}"), "Status": rule.get("Status", "Enabled"),
                           "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    noncurrent = rule.get("NoncurrentVersionExpiration") or (
        {"NoncurrentDays": rule["NoncurrentVersionExpirationInDays"]} if "NoncurrentVersionExpirationInDays" in rule else None)
    if noncurrent:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(noncurrent["NoncurrentDays"])}
    if rule.get("AbortIncompleteMultipartUpload"):
        out["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
    return out


def _complete_repository(d: "StackDeployer", physical_id: str, p: dict[str, Any]) -> None:
    """Apply what moto's CloudFormation repository model ignores: the repository policy and the lifecycle policy."""
    p = d.resolver.resolve({k: p[k] for k in ("RepositoryPolicyText", "LifecyclePolicy") if k in p})
    ecr = d.client("ecr")
    policy = p.get("RepositoryPolicyText")
    if policy:
        ecr.set_repository_policy(repositoryName=physical_id,
                                  policyText=policy if isinstance(policy, str) else json.dumps(policy))
    lifecycle = (p.get("LifecyclePolicy") or {}).get("LifecyclePolicyText")
    if lifecycle:
        ecr.put_lifecycle_policy(repositoryName=physical_id, lifecyclePolicyText=lifecycle)


#: Properties moto's CloudFormation models accept but do not apply, applied through the API after each wave.
_COMPLETIONS: dict[str, Callable[["StackDeployer", str, dict[str, Any]], None]] = {
    "AWS::S3::Bucket": _complete_bucket,
    "AWS::ECR::Repository": _complete_repository,
}


class ParameterError(LocalModeError):
    """The stack's parameters were refused, with CloudFormation's message; nothing was deployed."""


_SSM_VALUE_TYPE = re.compile(r"^AWS::SSM::Parameter::Value<(.+)>$")


def resolve_parameters(template: dict[str, Any], given: dict[str, str],
                       ssm_value: Callable[[str], str]) -> dict[str, Any]:
    """Each parameter's value as CloudFormation applies it: a given value overrides the default; a parameter without
    either is an error; ``AllowedPattern``/``AllowedValues``/lengths/bounds are checked with CloudFormation's
    messages; ``AWS::SSM::Parameter::Value<...>`` is read from SSM (``ssm_value(name)``) and list types become lists
    (what ``Ref`` gives)."""
    declared = template.get("Parameters", {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ParameterError(f"Parameters: [{', '.join(unknown)}] do not exist in the template")
    missing = sorted(name for name, p in declared.items() if name not in given and "Default" not in p)
    if missing:
        raise ParameterError(f"Parameters: [{', '.join(missing)}] must have values")
    values: dict[str, Any] = {}
    for name, parameter in declared.items():
        raw = str(given[name] if name in given else parameter["Default"])
        kind = parameter.get("Type", "String")
        _check_parameter(name, parameter, raw)
        ssm_type = _SSM_VALUE_TYPE.match(kind)
        if ssm_type:
            raw, kind = ssm_value(raw), ssm_type.group(1)
        values[name] = raw.split(",") if kind == "CommaDelimitedList" or kind.startswith("List<") else raw
    return values


def _check_parameter(name: str, parameter: dict[str, Any], value: str) -> None:
    """CloudFormation's constraints on one value; its ConstraintDescription replaces the message when given."""
    problem = None
    if parameter.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            problem = f"Parameter '{name}' must be a number"
        else:
            if "MinValue" in parameter and number < float(parameter["MinValue"]):
                problem = f"Parameter '{name}' must be a number not less than {parameter['MinValue']}"
            elif "MaxValue" in parameter and number > float(parameter["MaxValue"]):
                problem = f"Parameter '{name}' must be a number not greater than {parameter['MaxValue']}"
    if problem is None and "AllowedValues" in parameter and value not in [str(v) for v in parameter["AllowedValues"]]:
        problem = f"Parameter '{name}' must be one of AllowedValues"
    if problem is None and "AllowedPattern" in parameter and not re.fullmatch(parameter["AllowedPattern"], value):
        problem = f"Parameter '{name}' must match pattern {parameter['AllowedPattern']}"
    if problem is None and "MinLength" in parameter and len(value) < int(parameter["MinLength"]):
        problem = f"Parameter '{name}' must contain at least {parameter['MinLength']} characters"
    if problem is None and "MaxLength" in parameter and len(value) > int(parameter["MaxLength"]):
        problem = f"Parameter '{name}' must contain at most {parameter['MaxLength']} characters"
    if problem is not None:
        if parameter.get("ConstraintDescription"):
            problem = f"Parameter {name} failed to satisfy constraint: {parameter['ConstraintDescription']}"
        raise ParameterError(problem)


def moto_cfn_types() -> set[str]:
    from moto.cloudformation.parsing import get_model_map

    return set(get_model_map())


@dataclass
class DeployedResource:
    logical_id: str
    type: str
    via: str  # cloudformation | api | local-runtime | not-emulated
    physical_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    #: The resolved properties an ordinary-API resource was deployed with (what an update compares against).
    properties: dict[str, Any] | None = None


@dataclass
class StackDeployment:
    stack_name: str
    account: str
    region: str
    resources: dict[str, DeployedResource] = field(default_factory=dict)

    def to_dict(self, *, properties: bool = False) -> dict[str, Any]:
        """The record; with ``properties``, each resource's resolved properties too (what a later update needs)."""
        return {
            "stack_name": self.stack_name,
            "account": self.account,
            "region": self.region,
            "resources": {k: {name: value for name, value in vars(v).items() if properties or name != "properties"}
                          for k, v in self.resources.items()},
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "StackDeployment":
        return cls(record["stack_name"], record["account"], record["region"],
                   {k: DeployedResource(**v) for k, v in record.get("resources", {}).items()})

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for resource in self.resources.values():
            counts[resource.via] = counts.get(resource.via, 0) + 1
        return counts


def _zip_directory(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                info = zipfile.ZipInfo(str(file.relative_to(folder)), date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                archive.writestr(info, file.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def bootstrap(session: boto3.Session, account: str, region: str) -> str:
    """What ``cdk bootstrap`` leaves in an account: the assets bucket and the version parameter."""
    bucket = f"cdk-{BOOTSTRAP_QUALIFIER}-assets-{account}-{region}"
    s3 = session.client("s3", region_name=region)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    session.client("ssm", region_name=region).put_parameter(
        Name=f"/cdk-bootstrap/{BOOTSTRAP_QUALIFIER}/version", Value=BOOTSTRAP_VERSION, Type="String", Overwrite=True
    )
    return bucket


def publish_assets(session: boto3.Session, stack: StackArtifact) -> int:
    """Upload the stack's file assets where its template expects them; container images are not built here."""
    manifest = stack.assets
    base = stack.assets_file.parent if stack.assets_file else stack.template_file.parent
    s3 = session.client("s3", region_name=stack.region)
    published = 0
    for asset in manifest.get("files", {}).values():
        source = base / asset["source"]["path"]
        if source.name == stack.template_file.name:
            continue  # the template itself is sent as the stack body
        body = _zip_directory(source) if asset["source"].get("packaging") == "zip" and source.is_dir() else source.read_bytes()
        for destination in asset["destinations"].values():
            bucket = destination["bucketName"].replace("${AWS::AccountId}", stack.account).replace("${AWS::Region}", stack.region)
            s3.put_object(Bucket=bucket, Key=destination["objectKey"], Body=body)
            published += 1
    return published


class StackDeployer:
    """Deploys one stack template into one account of the embedded AWS.

    ``template`` replaces the artifact's file (a template handed over by a pipeline); ``parameters`` are the given
    values (strings, as CloudFormation takes them); ``tags`` the stack's tags, propagated to the resources that take
    them (:data:`STACK_TAGGED`); ``previous`` the record of the stack's last deployment (with properties), which makes
    this deployment an update; ``endpoint_url`` the embedded AWS (None: the session's own configuration);
    ``progress`` is told what happens, one line at a time.
    """

    def __init__(self, session: boto3.Session, stack: StackArtifact, *, template: dict[str, Any] | None = None,
                 parameters: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
                 previous: StackDeployment | None = None, endpoint_url: str | None = None,
                 progress: Callable[[str], None] | None = None):
        self.session = session
        self.stack = stack
        self.endpoint_url = endpoint_url
        self.template = template if template is not None else stack.template
        self.resources: dict[str, dict[str, Any]] = self.template.get("Resources", {})
        self.deployment = StackDeployment(stack.name, stack.account, stack.region)
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.previous = previous
        self.progress = progress
        self._clients: dict[str, Any] = {}
        self.cfn_types = moto_cfn_types()
        self.cfn = self.client("cloudformation")
        self._cfn_deployed: set[str] = set()
        self._outputs: dict[str, Any] = {}
        #: Resources this deployment created (deleted again if it fails) and the old ones it replaced.
        self.created: list[DeployedResource] = []
        self.replaced: list[DeployedResource] = []
        self.given = {str(k): str(v) for k, v in (parameters or {}).items()}
        self.parameters = resolve_parameters(self.template, self.given, self._ssm_value)
        self.resolver = Resolver(account=stack.account, region=stack.region, stack_name=stack.name,
                                 parameters=self.parameters, lookup=self._lookup, imports=self._import)

    def client(self, service: str):
        """One client per service for the deployment (clients are thread-safe; making them from a shared session
        is not)."""
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.stack.region,
                                                         endpoint_url=self.endpoint_url)
        return self._clients[service]

    def report(self, message: str) -> None:
        log.info("%s: %s", self.stack.name, message)
        if self.progress is not None:
            self.progress(message)

    def resource_tags(self, own: list[dict[str, Any]] | None) -> list[dict[str, str]]:
        """The stack's tags with the resource's own (which win on the same key), as CloudFormation propagates them."""
        merged = {**self.tags, **{str(t["Key"]): str(t["Value"]) for t in own or []}}
        return [{"Key": key, "Value": value} for key, value in merged.items()]

    def _ssm_value(self, name: str) -> str:
        try:
            return self.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
        except self.client("ssm").exceptions.ParameterNotFound:
            raise ParameterError(f"Unable to fetch parameters [{name}] from parameter store for this account.") \
                from None

    # -- classification -------------------------------------------------------------------------------------------
    def _route(self, resource_type: str, logical_id: str | None = None) -> str:
        if resource_type in _LOCAL_RUNTIME or resource_type in LOCAL_RECORDS:
            return "local-runtime"
        if resource_type in API_HANDLERS:
            return "api"
        if resource_type in self.cfn_types and not resource_type.startswith(_NOT_THROUGH_MOTO_CFN):
            return "cloudformation"
        return "not-emulated"

    def _dependencies(self, logical_id: str) -> set[str]:
        resource = self.resources[logical_id]
        depends = resource.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        return (references(resource.get("Properties", {})) | set(depends)) & set(self.resources)

    # -- lookups for the resolver ---------------------------------------------------------------------------------
    @staticmethod
    def _output_key(logical_id: str, attribute: str | None) -> str:
        suffix = "Ref" if attribute is None else "Att" + "".join(ch for ch in attribute if ch.isalnum())
        return f"{''.join(ch for ch in logical_id if ch.isalnum())}{suffix}"

    def _lookup(self, logical_id: str, attribute: str | None) -> Any:
        record = self.deployment.resources.get(logical_id)
        if record is None:
            raise Unresolvable(logical_id)
        if record.via == "cloudformation":
            key = self._output_key(logical_id, attribute)
            if key not in self._outputs:
                raise Unresolvable(f"{logical_id}.{attribute}")
            return self._outputs[key]
        if attribute is None:
            return record.physical_id or logical_id
        if attribute in record.attributes:
            return record.attributes[attribute]
        raise Unresolvable(f"{logical_id}.{attribute}")

    def _import(self, export_name: str) -> Any:
        for page in self.cfn.get_paginator("list_exports").paginate():
            for export in page["Exports"]:
                if export["Name"] == export_name:
                    return export["Value"]
        raise Unresolvable(f"export {export_name}")

    def _literal_for_cfn(self, logical_id: str, attribute: str | None) -> Any | None:
        """Inside a template sent to moto: references to resources moto does not hold become literals."""
        record = self.deployment.resources.get(logical_id)
        if logical_id not in self.resources or (record and record.via == "cloudformation"):
            return None
        if logical_id in self.resources and self._route(self.resources[logical_id]["Type"], logical_id) == "cloudformation":
            return None
        try:
            return self._lookup(logical_id, attribute)
        except Unresolvable:
            return f"local-not-emulated-{logical_id}"

    # -- deployment -----------------------------------------------------------------------------------------------
    def deploy(self) -> StackDeployment:
        """Deploy (or update) the stack; on failure, delete what this deployment created and raise."""
        try:
            self._deploy_waves()
        except BaseException:
            self._roll_back()
            raise
        self._clean_up()
        return self.deployment

    def outputs(self) -> dict[str, Any]:
        """The template's outputs, resolved (a list joined by commas, as CloudFormation gives it)."""
        values: dict[str, Any] = {}
        for name, output in self.template.get("Outputs", {}).items():
            try:
                value = self.resolver.resolve(output.get("Value"))
            except Unresolvable:
                value = self._outputs.get(name)
            values[name] = ",".join(map(str, value)) if isinstance(value, list) else value
        return values

    def _deploy_waves(self) -> None:
        pending = set(self.resources)
        routes = {lid: self._route(r["Type"], lid) for lid, r in self.resources.items()}
        if self.previous is not None and (
                "cloudformation" in routes.values()
                or any(r.via == "cloudformation" for r in self.previous.resources.values())):
            raise LocalModeError(f"{self.stack.name}: the local deployer updates only stacks whose resources it "
                                 "created through the ordinary APIs; this one holds resources of moto's "
                                 "CloudFormation (deploy it again from scratch: 'modelwerk local down --discard', then 'up')")
        while pending:
            done = set(self.resources) - pending
            ready = {lid for lid in pending if self._dependencies(lid) <= done}
            # Let moto's CloudFormation take every resource whose dependencies it can reach within one wave.
            wave = {lid for lid in pending if routes[lid] == "cloudformation"}
            changed = True
            while changed:
                changed = False
                for lid in list(wave):
                    if not self._dependencies(lid) <= (done | wave):
                        wave.discard(lid)
                        changed = True
            if wave:
                self._deploy_cfn_wave(wave)
                pending -= wave
                continue
            if not ready:
                raise LocalModeError(f"{self.stack.name}: circular references among {sorted(pending)[:5]}")
            for lid in sorted(ready):
                self._deploy_other(lid, routes[lid])
                pending.discard(lid)

    def _cfn_template(self, logical_ids: set[str]) -> dict[str, Any]:
        resources = {}
        for lid in sorted(logical_ids):
            resource = dict(self.resources[lid])
            depends = resource.get("DependsOn")
            if depends is not None:
                depends = [depends] if isinstance(depends, str) else depends
                depends = [d for d in depends if d in logical_ids]
                if depends:
                    resource["DependsOn"] = depends
                else:
                    resource.pop("DependsOn")
            properties = substitute(resource.get("Properties", {}), self._literal_for_cfn)
            shim = _MOTO_CFN_SHIMS.get(resource["Type"])
            resource["Properties"] = shim(properties) if shim else properties
            resources[lid] = resource
        # Expose every Ref/GetAtt target as an output, so the ordinary-API resources can resolve them.
        outputs = {}
        wanted: set[tuple[str, str | None]] = set()
        for lid, resource in self.resources.items():
            if lid in logical_ids:
                continue
            _collect_targets(resource.get("Properties", {}), wanted)
        for lid in logical_ids:
            wanted.add((lid, None))
        for target, attribute in sorted(wanted, key=lambda t: (t[0], t[1] or "")):
            if target in logical_ids:
                value = {"Ref": target} if attribute is None else {"Fn::GetAtt": [target, attribute]}
                outputs[self._output_key(target, attribute)] = {"Value": value}
        # The stack's own outputs (exports other stacks import) once what they name is deployed.
        for name, output in self.template.get("Outputs", {}).items():
            if references(output.get("Value")) <= logical_ids:
                outputs[name] = output
        template = {k: v for k, v in self.template.items() if k not in ("Resources", "Outputs", "Rules", "Conditions")}
        template["Resources"] = resources
        template["Outputs"] = outputs
        return template

    def _deploy_cfn_wave(self, wave: set[str]) -> None:
        logical_ids = self._cfn_deployed | wave
        body = json.dumps(self._cfn_template(logical_ids))
        capabilities = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
        given = [{"ParameterKey": k, "ParameterValue": v} for k, v in self.given.items()]
        if self._cfn_deployed:
            self.cfn.update_stack(StackName=self.stack.name, TemplateBody=body, Capabilities=capabilities,
                                  Parameters=given)
        else:
            self.cfn.create_stack(StackName=self.stack.name, TemplateBody=body, Capabilities=capabilities,
                                  Parameters=given)
        stack = self.cfn.describe_stacks(StackName=self.stack.name)["Stacks"][0]
        if stack["StackStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            raise LocalModeError(f"{self.stack.name}: the embedded CloudFormation ended in {stack['StackStatus']}")
        self._outputs = {o["OutputKey"]: o.get("OutputValue") for o in stack.get("Outputs", [])}
        physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId")
                    for r in self.cfn.describe_stack_resources(StackName=self.stack.name)["StackResources"]}
        for lid in wave:
            self.deployment.resources[lid] = DeployedResource(
                lid, self.resources[lid]["Type"], "cloudformation", physical.get(lid)
            )
        self._cfn_deployed = logical_ids
        for lid in sorted(wave):
            complete = _COMPLETIONS.get(self.resources[lid]["Type"])
            if complete:
                complete(self, physical[lid], self.resources[lid].get("Properties", {}))

    def _deploy_other(self, logical_id: str, route: str) -> None:
        resource_type = self.resources[logical_id]["Type"]
        if route == "api":
            self._deploy_api(logical_id, resource_type)
        elif route == "local-runtime" and resource_type in LOCAL_RECORDS:
            properties = self.resolver.resolve(self.resources[logical_id].get("Properties", {}))
            physical_id, attributes, note = LOCAL_RECORDS[resource_type](self, logical_id, properties)
            self.deployment.resources[logical_id] = DeployedResource(
                logical_id, resource_type, route, physical_id=physical_id, attributes=attributes, note=note)
        elif route == "local-runtime":
            note = _LOCAL_RUNTIME[resource_type]
            attributes = {}
            if resource_type == "AWS::Events::Rule":
                name = self.resources[logical_id].get("Properties", {}).get("Name") or logical_id
                attributes["Arn"] = f"arn:aws:events:{self.stack.region}:{self.stack.account}:rule/{name}"
                try:  # what the rule would match and start
                    resolved = self.resolver.resolve(self.resources[logical_id].get("Properties", {}))
                    attributes.update({k: resolved[k] for k in ("EventPattern", "ScheduleExpression", "Targets",
                                                                  "State") if k in resolved})
                except (Unresolvable, ValueError, KeyError, TypeError) as error:
                    log.debug("%s: rule %s kept without its properties: %s", self.stack.name, logical_id, error)
            self.deployment.resources[logical_id] = DeployedResource(
                logical_id, resource_type, route, physical_id=attributes.get("Arn"), attributes=attributes, note=note)
        else:
            note = "no local equivalent; deployed only on AWS"
            if resource_type in NOT_EMULATED_NOTES:
                try:
                    properties = self.resolver.resolve(self.resources[logical_id].get("Properties", {}))
                    note = NOT_EMULATED_NOTES[resource_type](properties) or note
                except (Unresolvable, ValueError, KeyError, TypeError) as error:
                    log.debug("%s: no specific note for %s: %s", self.stack.name, logical_id, error)
            log.info("%s: %s (%s) is not emulated locally: %s", self.stack.name, logical_id, resource_type, note)
            self.deployment.resources[logical_id] = DeployedResource(logical_id, resource_type, route, note=note)

    def _deploy_api(self, logical_id: str, resource_type: str) -> None:
        """Create the resource through its API, or, in an update, keep, update or replace it."""
        properties = self.resolver.resolve(self.resources[logical_id].get("Properties", {}))
        if resource_type in STACK_TAGGED:
            tags = self.resource_tags(properties.get("Tags"))
            properties = {**properties, "Tags": tags} if tags else {k: v for k, v in properties.items() if k != "Tags"}
        properties = json.loads(json.dumps(properties))  # as a record reads back, so that comparisons hold
        old = self.previous.resources.get(logical_id) if self.previous is not None else None
        if old is not None and old.type != resource_type:
            old = None
            self.replaced.append(self.previous.resources[logical_id])
        if old is not None and old.properties == properties:
            self.deployment.resources[logical_id] = old
            return
        if old is None:
            self.report(f"creating {logical_id} ({resource_type})")
            physical_id, attributes = API_HANDLERS[resource_type](self, logical_id, properties)
            replaced = False
        elif resource_type in REPLACED_ON_UPDATE and _only_tags_differ(old.properties or {}, properties):
            self.report(f"tagging {logical_id} ({resource_type})")
            _retag_sagemaker(self, str(old.physical_id), old.properties or {}, properties)
            physical_id, attributes, replaced = old.physical_id, old.attributes, False
        elif resource_type in REPLACED_ON_UPDATE:
            self.report(f"replacing {logical_id} ({resource_type}): {REPLACED_ON_UPDATE[resource_type]}")
            physical_id, attributes = API_HANDLERS[resource_type](self, logical_id, properties)
            replaced = True
        elif resource_type in API_UPDATES:
            self.report(f"updating {logical_id} ({resource_type})")
            physical_id, attributes, replaced = API_UPDATES[resource_type](self, logical_id, properties, old)
        else:
            raise LocalModeError(f"{self.stack.name}/{logical_id}: a change to a {resource_type} is not applied by "
                                 f"the local deployer (it updates {', '.join(sorted(API_UPDATES))} and replaces "
                                 f"{', '.join(sorted(REPLACED_ON_UPDATE))})")
        record = DeployedResource(logical_id, resource_type, "api", physical_id, attributes, properties=properties)
        self.deployment.resources[logical_id] = record
        if old is None or replaced:
            self.created.append(record)
        if replaced and old is not None:
            self.replaced.append(old)

    def _roll_back(self) -> None:
        """CloudFormation's rollback: what this deployment created is deleted, newest first."""
        for record in reversed(self.created):
            self._delete(record, "rolling back")

    def _clean_up(self) -> None:
        """CloudFormation's cleanup phase: the replaced resources and those the template no longer holds, deleted
        in the reverse of the order they were created in."""
        if self.previous is None:
            return
        replaced = {(r.logical_id, r.physical_id) for r in self.replaced}
        for record in reversed(list(self.previous.resources.values())):
            if record.logical_id not in self.resources or (record.logical_id, record.physical_id) in replaced:
                self._delete(record, "cleaning up")

    def _delete(self, record: DeployedResource, why: str) -> None:
        delete = API_DELETES.get(record.type)
        if delete is None or record.via != "api":
            log.info("%s: %s kept while %s: the local deployer does not delete a %s", self.stack.name,
                     record.logical_id, why, record.type)
            return
        self.report(f"{why}: deleting {record.logical_id} ({record.type} {record.physical_id})")
        try:
            delete(self, record)
        except Exception as error:  # noqa: BLE001 - as CloudFormation, a failed deletion is reported, not fatal
            log.warning("%s: %s could not be deleted while %s: %s", self.stack.name, record.logical_id, why, error)


def _only_tags_differ(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return {k: v for k, v in old.items() if k != "Tags"} == {k: v for k, v in new.items() if k != "Tags"}


def _collect_targets(value: Any, wanted: set[tuple[str, str | None]]) -> None:
    if isinstance(value, list):
        for item in value:
            _collect_targets(item, wanted)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                wanted.add((arg, None))
            elif key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                wanted.add((logical, attribute))
            elif key == "Fn::Sub":
                template = arg if isinstance(arg, str) else arg[0]
                for name in SUB_VARIABLE.findall(template):
                    logical, _, attribute = name.partition(".")
                    wanted.add((logical, attribute or None))
                if not isinstance(arg, str):
                    _collect_targets(arg[1], wanted)
            else:
                _collect_targets(arg, wanted)


# -- the ordinary-API handlers: (deployer, logical id, resolved properties) -> (physical id, attributes) --------------
Handler = Callable[[StackDeployer, str, dict[str, Any]], tuple[str | None, dict[str, Any]]]


def _requires_tls(statement: dict[str, Any]) -> bool:
    condition = statement.get("Condition", {}).get("Bool", {})
    return statement.get("Effect") == "Deny" and str(condition.get("aws:SecureTransport")).lower() == "false"


def _bucket_policy(d: StackDeployer, lid: str, p: dict[str, Any]):
    """The policy as deployed, less its TLS-only denial: the embedded AWS listens on plain HTTP on loopback."""
    document = dict(p["PolicyDocument"])
    statements = document.get("Statement", [])
    document["Statement"] = [s for s in statements if not _requires_tls(s)]
    if document["Statement"]:
        d.client("s3").put_bucket_policy(Bucket=p["Bucket"], Policy=json.dumps(document))
    dropped = len(statements) - len(document["Statement"])
    return f"{p['Bucket']}-policy", {"note": f"{dropped} TLS-only statement(s) not applied locally" if dropped else ""}


def _queue_policy(d: StackDeployer, lid: str, p: dict[str, Any]):
    sqs = d.client("sqs")
    for url in p["Queues"]:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(p["PolicyDocument"])})
    return lid, {}


def _secret(d: StackDeployer, lid: str, p: dict[str, Any]):
    generate = p.get("GenerateSecretString") or {}
    if "SecretString" in p:
        value = p["SecretString"]
    else:
        alphabet = string.ascii_letters + string.digits
        if not generate.get("ExcludePunctuation"):
            alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
        excluded = set(generate.get("ExcludeCharacters", ""))
        alphabet = "".join(ch for ch in alphabet if ch not in excluded)
        value = "".join(secrets.choice(alphabet) for _ in range(int(generate.get("PasswordLength", 32))))
        if generate.get("SecretStringTemplate") and generate.get("GenerateStringKey"):
            value = json.dumps({**json.loads(generate["SecretStringTemplate"]), generate["GenerateStringKey"]: value})
    args = {"Name": p.get("Name") or f"{d.stack.name}-{lid}", "SecretString": value}
    if p.get("KmsKeyId"):
        args["KmsKeyId"] = p["KmsKeyId"]
    if p.get("Description"):
        args["Description"] = p["Description"]
    arn = d.client("secretsmanager").create_secret(**args)["ARN"]
    return arn, {"Id": arn}


def _glue_database(d: StackDeployer, lid: str, p: dict[str, Any]):
    d.client("glue").create_database(DatabaseInput=p["DatabaseInput"])
    return p["DatabaseInput"]["Name"], {}


def _glue_table(d: StackDeployer, lid: str, p: dict[str, Any]):
    d.client("glue").create_table(DatabaseName=p["DatabaseName"], TableInput=p["TableInput"])
    return p["TableInput"]["Name"], {}


def _glue_job(d: StackDeployer, lid: str, p: dict[str, Any]):
    allowed = {"Name", "Description", "Role", "ExecutionProperty", "Command", "DefaultArguments", "MaxRetries",
               "Timeout", "GlueVersion", "WorkerType", "NumberOfWorkers", "SecurityConfiguration", "Tags",
               "MaxCapacity", "NotificationProperty", "ExecutionClass"}
    args = {k: v for k, v in p.items() if k in allowed}
    args["Name"] = p.get("Name") or f"{d.stack.name}-{lid}"
    d.client("glue").create_job(**args)
    return args["Name"], {}


def _glue_trigger(d: StackDeployer, lid: str, p: dict[str, Any]):
    allowed = {"Name", "Type", "Schedule", "Predicate", "Actions", "Description", "StartOnCreation", "Tags"}
    args = {k: v for k, v in p.items() if k in allowed}
    args["Name"] = p.get("Name") or f"{d.stack.name}-{lid}"
    d.client("glue").create_trigger(**args)
    return args["Name"], {}


def _glue_security_configuration(d: StackDeployer, lid: str, p: dict[str, Any]):
    config = dict(p["EncryptionConfiguration"])
    if "S3Encryptions" in config:  # CloudFormation's plural, the API's singular
        config["S3Encryption"] = config.pop("S3Encryptions")
    d.client("glue").create_security_configuration(Name=p["Name"], EncryptionConfiguration=config)
    return p["Name"], {}


def _athena_workgroup(d: StackDeployer, lid: str, p: dict[str, Any]):
    config = dict(p.get("WorkGroupConfiguration") or {})
    d.client("athena").create_work_group(Name=p["Name"], Configuration=config, Description=p.get("Description", ""))
    return p["Name"], {}


def _lf_settings(d: StackDeployer, lid: str, p: dict[str, Any]):
    settings = {"DataLakeAdmins": [{"DataLakePrincipalIdentifier": a["DataLakePrincipalIdentifier"]}
                                   for a in p.get("Admins", [])]}
    d.client("lakeformation").put_data_lake_settings(DataLakeSettings=settings)
    return lid, {}


def _lf_resource(d: StackDeployer, lid: str, p: dict[str, Any]):
    args = {"ResourceArn": p["ResourceArn"], "UseServiceLinkedRole": bool(p.get("UseServiceLinkedRole", False))}
    if p.get("RoleArn"):
        args["RoleArn"] = p["RoleArn"]
    d.client("lakeformation").register_resource(**args)
    return p["ResourceArn"], {}


def _lf_principal_permissions(d: StackDeployer, lid: str, p: dict[str, Any]):
    resource = _capitalize_lf(p["Resource"])
    d.client("lakeformation").grant_permissions(
        Principal={"DataLakePrincipalIdentifier": p["Principal"]["DataLakePrincipalIdentifier"]},
        Resource=resource,
        Permissions=p["Permissions"],
        PermissionsWithGrantOption=p.get("PermissionsWithGrantOption", []),
    )
    return lid, {}


def _lf_permissions(d: StackDeployer, lid: str, p: dict[str, Any]):
    resource = _capitalize_lf(p["Resource"])
    d.client("lakeformation").grant_permissions(
        Principal={"DataLakePrincipalIdentifier": p["DataLakePrincipal"]["DataLakePrincipalIdentifier"]},
        Resource=resource,
        Permissions=p.get("Permissions", []),
        PermissionsWithGrantOption=p.get("PermissionsWithGrantOption", []),
    )
    return lid, {}


_LF_KEYS = {"DatabaseResource": "Database", "TableResource": "Table", "DataLocationResource": "DataLocation",
            "TableWithColumnsResource": "TableWithColumns"}


def _capitalize_lf(resource: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's LakeFormation shapes differ a little from the API's (``DatabaseResource``, ``S3Resource``)."""
    out: dict[str, Any] = {}
    for key, value in resource.items():
        key = _LF_KEYS.get(key, key)
        if isinstance(value, dict):
            value = {("ResourceArn" if k == "S3Resource" else k): v for k, v in value.items()}
            if "TableWildcard" in value:
                value["TableWildcard"] = {}
        out[key] = value
    return out


def _pipeline(d: StackDeployer, lid: str, p: dict[str, Any]):
    """The pipeline with its definition (``PipelineDefinitionBody``, placeholders already substituted), so the local
    executor reads back what was deployed, as ``DescribePipeline`` returns it on AWS."""
    definition = p.get("PipelineDefinition") or {}
    body = definition.get("PipelineDefinitionBody")
    if body is None:
        raise LocalModeError(f"{lid}: only an inline PipelineDefinitionBody is deployed locally")
    args = {"PipelineName": p["PipelineName"], "PipelineDefinition": body, "RoleArn": p["RoleArn"]}
    for key in ("PipelineDisplayName", "PipelineDescription"):
        if p.get(key):
            args[key] = p[key]
    arn = d.client("sagemaker").create_pipeline(**args)["PipelineArn"]
    return p["PipelineName"], {"PipelineArn": arn}


def _event_bus_policy(d: StackDeployer, lid: str, p: dict[str, Any]):
    """One statement of a bus's policy (PutPermission with a policy document): the local event router honours it when
    a rule forwards an event to this bus from another account."""
    if "Statement" not in p:
        raise LocalModeError(f"{d.stack.name}/{lid}: only an EventBusPolicy given as a Statement is deployed locally")
    statement = p["Statement"] if isinstance(p["Statement"], dict) else json.loads(p["Statement"])
    bus = p.get("EventBusName") or "default"
    d.client("events").put_permission(EventBusName=bus, Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [{**statement, "Sid": p["StatementId"]}]}))
    return f"{bus}/{p['StatementId']}", {}


def _model_package_group(d: StackDeployer, lid: str, p: dict[str, Any]):
    """The group and its resource policy (a document or its JSON text), as CloudFormation creates them: the embedded
    SageMaker answers the accounts the policy admits when they read the group's versions by ARN."""
    sagemaker = d.client("sagemaker")
    name = p["ModelPackageGroupName"]
    args = {"ModelPackageGroupName": name}
    if p.get("ModelPackageGroupDescription"):
        args["ModelPackageGroupDescription"] = p["ModelPackageGroupDescription"]
    arn = sagemaker.create_model_package_group(**args)["ModelPackageGroupArn"]
    policy = p.get("ModelPackageGroupPolicy")
    if policy:
        sagemaker.put_model_package_group_policy(
            ModelPackageGroupName=name, ResourcePolicy=policy if isinstance(policy, str) else json.dumps(policy))
    return name, {"ModelPackageGroupArn": arn}


#: PutMetricAlarm's parameters, which CloudFormation's AWS::CloudWatch::Alarm properties spell the same way.
_ALARM_PARAMETERS = {"AlarmName", "AlarmDescription", "ActionsEnabled", "OKActions", "AlarmActions",
                     "InsufficientDataActions", "MetricName", "Namespace", "Statistic", "ExtendedStatistic",
                     "Dimensions", "Period", "Unit", "EvaluationPeriods", "DatapointsToAlarm", "Threshold",
                     "ComparisonOperator", "TreatMissingData", "EvaluateLowSampleCountPercentile", "Metrics", "Tags",
                     "ThresholdMetricId"}
_METRIC_QUERY_KEYS = {"Id", "MetricStat", "Expression", "Label", "ReturnData", "Period", "AccountId"}


def _alarm_name(d: StackDeployer, lid: str, p: dict[str, Any]) -> tuple[str, str]:
    """The alarm's name (CloudFormation's generated one when the template sets none) and its ARN."""
    name = p.get("AlarmName") or f"{d.stack.name}-{lid}"
    return name, f"arn:aws:cloudwatch:{d.stack.region}:{d.stack.account}:alarm:{name}"


def _metric_alarm(d: StackDeployer, lid: str, p: dict[str, Any]):
    """The alarm through PutMetricAlarm; the embedded CloudWatch judges it at its period's end."""
    name, arn = _alarm_name(d, lid, p)
    unknown = sorted(set(p) - _ALARM_PARAMETERS)
    if unknown:
        raise LocalModeError(f"{d.stack.name}/{lid}: AWS::CloudWatch::Alarm properties {unknown} are not deployed "
                             "locally")
    args = {**p, "AlarmName": name}
    for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        if key in args:
            args[key] = int(args[key])
    if "Threshold" in args:
        args["Threshold"] = float(args["Threshold"])
        _raise_to_local_latency_floor(args)
    if "Metrics" in args:
        queries = []
        for query in args["Metrics"]:
            query = {k: v for k, v in query.items() if k in _METRIC_QUERY_KEYS}
            if "MetricStat" in query:
                query["MetricStat"] = {**query["MetricStat"], "Period": int(query["MetricStat"]["Period"])}
            if "Period" in query:
                query["Period"] = int(query["Period"])
            queries.append(query)
        args["Metrics"] = queries
    d.client("cloudwatch").put_metric_alarm(**args)
    return name, {"Arn": arn}


def _raise_to_local_latency_floor(args: dict[str, Any]) -> None:
    """A ModelLatency alarm (microseconds) fires locally only above ``LOCAL_LATENCY_FLOOR_MS``: this machine's shared
    cores, not the version, would otherwise decide a blue/green deployment."""
    from modelwerk.local.endpoint_metrics import LOCAL_LATENCY_FLOOR_MS, NAMESPACE

    if args.get("Namespace") != NAMESPACE or args.get("MetricName") != "ModelLatency":
        return
    floor = LOCAL_LATENCY_FLOOR_MS * 1000.0
    if args["Threshold"] < floor:
        log.info("alarm %s: ModelLatency threshold %.0f us raised to %.0f us locally", args["AlarmName"],
                 args["Threshold"], floor)
        args["Threshold"] = floor


def _composite_alarm(d: StackDeployer, lid: str, p: dict[str, Any]):
    """The alarm through PutCompositeAlarm; the embedded CloudWatch judges its rule over the other alarms' states."""
    from botocore.exceptions import ClientError

    name, arn = _alarm_name(d, lid, p)
    args = {"AlarmName": name, "AlarmRule": p["AlarmRule"], "ActionsEnabled": p.get("ActionsEnabled", True),
            **{key: p[key] for key in ("AlarmDescription", "AlarmActions", "OKActions", "InsufficientDataActions",
                                       "ActionsSuppressor") if p.get(key)}}
    for key in ("ActionsSuppressorWaitPeriod", "ActionsSuppressorExtensionPeriod"):
        if key in p:
            args[key] = int(p[key])
    try:
        d.client("cloudwatch").put_composite_alarm(**args)
    except ClientError as error:
        raise LocalModeError(f"{d.stack.name}/{lid}: the composite alarm was refused: "
                             f"{error.response['Error']['Message']}") from None
    return name, {"Arn": arn}


def _generated_name(lid: str, limit: int = 63) -> str:
    """CloudFormation's name for a resource the template leaves unnamed: the logical id and a random suffix of 12
    letters and digits (a new one per creation, so a replacement never takes the name of what it replaces)."""
    suffix = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(12))
    return f"{lid[:limit - 13]}-{suffix}"


def _sagemaker_arn(d: StackDeployer, kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{d.stack.region}:{d.stack.account}:{kind}/{name.lower()}"


_MODEL_PARAMETERS = ("ExecutionRoleArn", "PrimaryContainer", "Containers", "InferenceExecutionConfig", "VpcConfig",
                     "EnableNetworkIsolation", "Tags")
_ENDPOINT_CONFIG_PARAMETERS = ("ProductionVariants", "DataCaptureConfig", "KmsKeyId", "AsyncInferenceConfig",
                               "ExplainerConfig", "ShadowProductionVariants", "ExecutionRoleArn", "VpcConfig",
                               "EnableNetworkIsolation", "Tags")
#: How long a deployment waits for an endpoint to be InService (CloudFormation waits hours; local fleets, seconds).
ENDPOINT_WAIT_SECONDS = 900.0
ENDPOINT_POLL_SECONDS = 1.0


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _sagemaker_resource(d: StackDeployer, lid: str, p: dict[str, Any], *, kind: str, name_key: str,
                        parameters: Any, create: str):
    """Create a SageMaker model or endpoint config through the API (a generated name unless the template names it), so
    that the embedded SageMaker runs it behind an endpoint (moto's CloudFormation would store it where no fleet
    starts)."""
    name = p.get(name_key) or _generated_name(lid)
    args = {name_key: name, **{k: p[k] for k in parameters if p.get(k) is not None}}
    if "EnableNetworkIsolation" in args:
        args["EnableNetworkIsolation"] = _flag(args["EnableNetworkIsolation"])
    getattr(d.client("sagemaker"), create)(**args)
    return _sagemaker_arn(d, kind, name), {name_key: name}


def _sagemaker_model(d: StackDeployer, lid: str, p: dict[str, Any]):
    return _sagemaker_resource(d, lid, p, kind="model", name_key="ModelName", parameters=_MODEL_PARAMETERS,
                               create="create_model")


def _sagemaker_endpoint_config(d: StackDeployer, lid: str, p: dict[str, Any]):
    return _sagemaker_resource(d, lid, p, kind="endpoint-config", name_key="EndpointConfigName",
                               parameters=_ENDPOINT_CONFIG_PARAMETERS, create="create_endpoint_config")


def _sagemaker_endpoint(d: StackDeployer, lid: str, p: dict[str, Any]):
    """CreateEndpoint, then wait until it is InService as CloudFormation does; a failed endpoint is deleted again
    (CloudFormation's rollback) and its FailureReason raised."""
    name = p.get("EndpointName") or _generated_name(lid)
    sagemaker = d.client("sagemaker")
    args = {"EndpointName": name, "EndpointConfigName": p["EndpointConfigName"],
            **{k: p[k] for k in ("DeploymentConfig", "Tags") if p.get(k)}}
    sagemaker.create_endpoint(**args)
    try:
        _wait_for_endpoint(d, name, p["EndpointConfigName"])
    except BaseException:
        sagemaker.delete_endpoint(EndpointName=name)
        raise
    return _sagemaker_arn(d, "endpoint", name), {"EndpointName": name}


def _update_sagemaker_endpoint(d: StackDeployer, lid: str, p: dict[str, Any], old: DeployedResource):
    """A new name replaces the endpoint; a new config is deployed with UpdateEndpoint and the template's
    DeploymentConfig (blue/green, rollback alarms), waited for; tags are changed in place."""
    before = old.properties or {}
    name = old.attributes["EndpointName"]
    if (p.get("EndpointName") or name) != name:
        return (*_sagemaker_endpoint(d, lid, p), True)
    changed = {k for k in set(before) | set(p) if k != "Tags" and before.get(k) != p.get(k)}
    if changed:
        args: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": p["EndpointConfigName"]}
        if p.get("DeploymentConfig"):
            args["DeploymentConfig"] = p["DeploymentConfig"]
        for key in ("RetainAllVariantProperties", "RetainDeploymentConfig"):
            if key in p:
                args[key] = _flag(p[key])
        if p.get("ExcludeRetainedVariantProperties"):
            args["ExcludeRetainedVariantProperties"] = p["ExcludeRetainedVariantProperties"]
        d.client("sagemaker").update_endpoint(**args)
        _wait_for_endpoint(d, name, p["EndpointConfigName"])
    if before.get("Tags") != p.get("Tags"):
        _retag_sagemaker(d, str(old.physical_id), before, p)
    return old.physical_id, old.attributes, False


def _wait_for_endpoint(d: StackDeployer, name: str, config: str) -> None:
    """Until the endpoint serves ``config`` InService; Failed, or InService on another config (SageMaker rolled the
    update back), raises the endpoint's FailureReason."""
    sagemaker = d.client("sagemaker")
    deadline, seen = time.monotonic() + ENDPOINT_WAIT_SECONDS, None
    while True:
        described = sagemaker.describe_endpoint(EndpointName=name)
        status = described["EndpointStatus"]
        reason = described.get("FailureReason") or "no reason given"
        if status == "InService" and described["EndpointConfigName"] == config:
            return
        if status == "InService":
            raise LocalModeError(f"Endpoint {name} was not updated to {config}: {reason}")
        if status == "Failed":
            raise LocalModeError(f"Endpoint {name} failed: {reason}")
        if status != seen:
            d.report(f"endpoint {name}: {status}")
            seen = status
        if time.monotonic() > deadline:
            raise LocalModeError(f"Endpoint {name} was still {status} after {ENDPOINT_WAIT_SECONDS:.0f} s")
        time.sleep(ENDPOINT_POLL_SECONDS)


def _retag_sagemaker(d: StackDeployer, arn: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Tags changed in place (AddTags/DeleteTags), as CloudFormation updates them without replacement."""
    sagemaker = d.client("sagemaker")
    before = {t["Key"]: t["Value"] for t in old.get("Tags") or []}
    after = {t["Key"]: t["Value"] for t in new.get("Tags") or []}
    removed = sorted(set(before) - set(after))
    if removed:
        sagemaker.delete_tags(ResourceArn=arn, TagKeys=removed)
    if after and after != before:
        sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in after.items()])


def _scalable_target_id(p: dict[str, Any]) -> str:
    """What ``Ref`` gives for a scalable target: ``<resource id>|<scalable dimension>|<service namespace>``."""
    return f"{p['ResourceId']}|{p['ScalableDimension']}|{p['ServiceNamespace']}"


def _scalable_target(d: StackDeployer, lid: str, p: dict[str, Any]):
    """RegisterScalableTarget (which also updates a registered one) and the target's scheduled actions."""
    client = d.client("application-autoscaling")
    args: dict[str, Any] = {"ServiceNamespace": p["ServiceNamespace"], "ResourceId": p["ResourceId"],
                            "ScalableDimension": p["ScalableDimension"], "MinCapacity": int(p["MinCapacity"]),
                            "MaxCapacity": int(p["MaxCapacity"])}
    if p.get("RoleARN"):
        args["RoleARN"] = p["RoleARN"]
    if p.get("SuspendedState"):
        args["SuspendedState"] = {k: _flag(v) for k, v in p["SuspendedState"].items()}
    if p.get("Tags"):
        args["Tags"] = {t["Key"]: t["Value"] for t in p["Tags"]}
    client.register_scalable_target(**args)
    for action in p.get("ScheduledActions") or []:
        scheduled = {"ServiceNamespace": p["ServiceNamespace"], "ResourceId": p["ResourceId"],
                     "ScalableDimension": p["ScalableDimension"], "Schedule": action["Schedule"],
                     "ScheduledActionName": action["ScheduledActionName"]}
        if action.get("ScalableTargetAction"):
            scheduled["ScalableTargetAction"] = {k: int(v) for k, v in action["ScalableTargetAction"].items()}
        if action.get("Timezone"):
            scheduled["Timezone"] = action["Timezone"]
        client.put_scheduled_action(**scheduled)
    target = _scalable_target_id(p)
    return target, {"Id": target}


def _policy_target(p: dict[str, Any]) -> tuple[str, str, str]:
    """(resource id, scalable dimension, service namespace) of a scaling policy: its ScalingTargetId, or its own."""
    if p.get("ScalingTargetId"):
        resource_id, dimension, namespace = str(p["ScalingTargetId"]).split("|")
        return resource_id, dimension, namespace
    return p["ResourceId"], p["ScalableDimension"], p["ServiceNamespace"]


def _scaling_policy(d: StackDeployer, lid: str, p: dict[str, Any]):
    """PutScalingPolicy (which also updates a policy of the same name); ``Ref`` gives its ARN."""
    resource_id, dimension, namespace = _policy_target(p)
    args = {"PolicyName": p["PolicyName"], "ServiceNamespace": namespace, "ResourceId": resource_id,
            "ScalableDimension": dimension, "PolicyType": p["PolicyType"],
            **{k: p[k] for k in ("TargetTrackingScalingPolicyConfiguration", "StepScalingPolicyConfiguration")
               if p.get(k)}}
    arn = d.client("application-autoscaling").put_scaling_policy(**args)["PolicyARN"]
    return arn, {"Arn": arn}


def _put_again(handler: Handler, identity: Callable[[dict[str, Any]], Any]) -> "Updater":
    """An update by the same idempotent call that creates; a new identity (name, target) is a replacement."""

    def update(d: StackDeployer, lid: str, p: dict[str, Any], old: DeployedResource):
        physical_id, attributes = handler(d, lid, p)
        return physical_id, attributes, identity(p) != identity(old.properties or {})

    return update


def _delete_model(d: StackDeployer, record: DeployedResource) -> None:
    d.client("sagemaker").delete_model(ModelName=record.attributes["ModelName"])


def _delete_endpoint_config(d: StackDeployer, record: DeployedResource) -> None:
    d.client("sagemaker").delete_endpoint_config(EndpointConfigName=record.attributes["EndpointConfigName"])


def _delete_endpoint(d: StackDeployer, record: DeployedResource) -> None:
    d.client("sagemaker").delete_endpoint(EndpointName=record.attributes["EndpointName"])


def _deregister_scalable_target(d: StackDeployer, record: DeployedResource) -> None:
    resource_id, dimension, namespace = str(record.physical_id).split("|")
    d.client("application-autoscaling").deregister_scalable_target(
        ServiceNamespace=namespace, ResourceId=resource_id, ScalableDimension=dimension)


def _delete_scaling_policy(d: StackDeployer, record: DeployedResource) -> None:
    properties = record.properties or {}
    resource_id, dimension, namespace = _policy_target(properties)
    d.client("application-autoscaling").delete_scaling_policy(
        PolicyName=properties["PolicyName"], ServiceNamespace=namespace, ResourceId=resource_id,
        ScalableDimension=dimension)


def _delete_alarm(d: StackDeployer, record: DeployedResource) -> None:
    d.client("cloudwatch").delete_alarms(AlarmNames=[str(record.physical_id)])


#: CodeBuild's CreateProject parameters; CloudFormation spells them in PascalCase (see _codebuild_shape).
_CODEBUILD_PARAMETERS = {"name", "description", "source", "secondarySources", "sourceVersion",
                         "secondarySourceVersions", "artifacts", "secondaryArtifacts", "cache", "environment",
                         "serviceRole", "timeoutInMinutes", "queuedTimeoutInMinutes", "encryptionKey", "tags",
                         "vpcConfig", "badgeEnabled", "logsConfig", "fileSystemLocations", "buildBatchConfig",
                         "concurrentBuildLimit", "autoRetryLimit"}


#: The location given to the embedded CodeBuild for a CODEPIPELINE source or artifacts (AWS ignores it).
_PIPELINE_LOCATION = "codepipeline"


def _codebuild_shape(value: Any) -> Any:
    """CloudFormation's PascalCase CodeBuild properties in the API's camelCase (``BuildSpec`` is ``buildspec``)."""
    if isinstance(value, list):
        return [_codebuild_shape(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {("buildspec" if key == "BuildSpec" else key[:1].lower() + key[1:]): _codebuild_shape(v)
            for key, v in value.items()}


def _codebuild_project(d: StackDeployer, lid: str, p: dict[str, Any]):
    """The project through CreateProject; the embedded CodeBuild runs what StartBuild asks of it."""
    args = _codebuild_shape(p)
    args["name"] = args.get("name") or f"{d.stack.name}-{lid}"
    dropped = sorted(set(args) - _CODEBUILD_PARAMETERS)
    args = {k: v for k, v in args.items() if k in _CODEBUILD_PARAMETERS}
    # A pipeline's project takes source and artifacts from CodePipeline and has no location; the embedded CodeBuild
    # insists on one for every type.
    from_pipeline = [key for key in ("source", "artifacts") if (args.get(key) or {}).get("type") == "CODEPIPELINE"
                     and not args[key].get("location")]
    for key in from_pipeline:
        args[key] = {**args[key], "location": _PIPELINE_LOCATION}
    project = d.client("codebuild").create_project(**args)["project"]
    note = "the embedded CodeBuild runs its builds as local processes (no Docker; no image is built)"
    if from_pipeline:
        note += f"; {' and '.join(from_pipeline)} come from the CodePipeline action that starts the build"
    if dropped:
        note += f"; not part of CreateProject, not applied locally: {', '.join(dropped)}"
    return args["name"], {"Arn": project.get("arn") or f"arn:aws:codebuild:{d.stack.region}:{d.stack.account}:"
                                                         f"project/{args['name']}", "note": note}


def _aws_custom_resource_note(p: dict[str, Any]) -> str:
    """What an ``AwsCustomResource`` would call on AWS (its Lambda cannot run in the embedded AWS)."""
    call = json.loads(p.get("Create") or p.get("Update") or "{}")
    if not call.get("service"):
        return ""
    note = f"calls {call['service']}:{call.get('action')} on deploy; not called locally"
    if call["service"].lower() == "codebuild" and call.get("action") == "startBuild":
        note += " (no image is built locally: local endpoints run the serving code as processes)"
    return note


def _pipeline_shape(value: Any, key: str = "") -> Any:
    """CloudFormation's PascalCase pipeline structure in the API's camelCase; an action's ``Configuration`` keeps its
    keys and carries its values as text, as CodePipeline stores them."""
    if key == "Configuration" and isinstance(value, dict):
        return {k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v).lower() if isinstance(v, bool)
                    else str(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_pipeline_shape(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {k[:1].lower() + k[1:]: _pipeline_shape(v, k) for k, v in value.items()}


#: Properties of AWS::CodePipeline::Pipeline that are not part of the pipeline structure.
_PIPELINE_STACK_ONLY = {"Tags", "RestartExecutionOnUpdate", "DisableInboundStageTransitions"}


def _code_pipeline(d: StackDeployer, lid: str, p: dict[str, Any]):
    """The pipeline through CreatePipeline (moto stores it; the embedded CodePipeline runs its executions)."""
    structure = _pipeline_shape({k: v for k, v in p.items() if k not in _PIPELINE_STACK_ONLY})
    structure["name"] = structure.get("name") or f"{d.stack.name}-{lid}"
    notes = []
    for stage in structure["stages"]:
        for action in stage["actions"]:
            action["runOrder"] = int(action.get("runOrder", 1))
            notes += _raise_gate_budget_to_local_floor(action)
    tags = [{"key": t["Key"], "value": t["Value"]} for t in p.get("Tags", [])]
    d.client("codepipeline").create_pipeline(pipeline=structure, **({"tags": tags} if tags else {}))
    name = structure["name"]
    return name, {"Version": "1", "Arn": f"arn:aws:codepipeline:{d.stack.region}:{d.stack.account}:{name}",
                  "note": "; ".join(notes)}


def _raise_gate_budget_to_local_floor(action: dict[str, Any]) -> list[str]:
    """A promotion gate's latency budget (the build's ``naming.GATE_BUDGET_VARIABLE``) is at least
    ``LOCAL_LATENCY_FLOOR_MS`` locally, as the endpoints' latency alarms are: this machine's shared cores, not the
    version, would otherwise decide the gate. The gate itself is the same code on AWS and here."""
    from modelwerk import naming
    from modelwerk.local.endpoint_metrics import LOCAL_LATENCY_FLOOR_MS

    configuration = action.get("configuration") or {}
    if action["actionTypeId"].get("provider") != "CodeBuild" or "EnvironmentVariables" not in configuration:
        return []
    variables = json.loads(configuration["EnvironmentVariables"])
    notes = []
    for variable in variables:
        if variable.get("name") == naming.GATE_BUDGET_VARIABLE and float(variable["value"]) < LOCAL_LATENCY_FLOOR_MS:
            notes.append(f"{action['name']}: latency budget {variable['value']} ms raised to "
                         f"{LOCAL_LATENCY_FLOOR_MS} ms locally")
            log.info("pipeline action %s", notes[-1])
            variable["value"] = str(LOCAL_LATENCY_FLOOR_MS)
    configuration["EnvironmentVariables"] = json.dumps(variables, separators=(",", ":"))
    return notes


#: Types recorded as not emulated, with a note read from their resolved properties.
NOT_EMULATED_NOTES: dict[str, Callable[[dict[str, Any]], str]] = {
    "Custom::AWS": _aws_custom_resource_note,
}


def _package_domain(d: StackDeployer, lid: str, p: dict[str, Any]):
    """The mirror's domain, its ARN as CodeArtifact forms it; there is no CodeArtifact in the embedded AWS."""
    name = p["DomainName"]
    arn = f"arn:aws:codeartifact:{d.stack.region}:{d.stack.account}:domain/{name}"
    return arn, {"Arn": arn, "Name": name, "Owner": d.stack.account}, _MIRROR_NOTE


def _package_repository(d: StackDeployer, lid: str, p: dict[str, Any]):
    """A mirror repository, its ARN as CodeArtifact forms it (the pipeline definition names it)."""
    name, domain = p["RepositoryName"], p["DomainName"]
    arn = f"arn:aws:codeartifact:{d.stack.region}:{d.stack.account}:repository/{domain}/{name}"
    return arn, {"Arn": arn, "Name": name, "DomainName": domain, "DomainOwner": d.stack.account}, _MIRROR_NOTE


_MIRROR_NOTE = ("package mirror recorded, not emulated: local jobs use this machine's environment, which holds the "
                "model frameworks' pins already")

LocalRecord = Callable[[StackDeployer, str, dict[str, Any]], tuple[str | None, dict[str, Any], str]]

#: Types the local runtime takes over from their resolved properties: (physical id, attributes, note).
LOCAL_RECORDS: dict[str, LocalRecord] = {
    "AWS::CodeArtifact::Domain": _package_domain,
    "AWS::CodeArtifact::Repository": _package_repository,
}


API_HANDLERS: dict[str, Handler] = {
    "AWS::ApplicationAutoScaling::ScalableTarget": _scalable_target,
    "AWS::ApplicationAutoScaling::ScalingPolicy": _scaling_policy,
    "AWS::SageMaker::Model": _sagemaker_model,
    "AWS::SageMaker::EndpointConfig": _sagemaker_endpoint_config,
    "AWS::SageMaker::Endpoint": _sagemaker_endpoint,
    "AWS::CloudWatch::Alarm": _metric_alarm,
    "AWS::CloudWatch::CompositeAlarm": _composite_alarm,
    "AWS::CodeBuild::Project": _codebuild_project,
    "AWS::CodePipeline::Pipeline": _code_pipeline,
    "AWS::Events::EventBusPolicy": _event_bus_policy,
    "AWS::SageMaker::ModelPackageGroup": _model_package_group,
    "AWS::SageMaker::Pipeline": _pipeline,
    "AWS::S3::BucketPolicy": _bucket_policy,
    "AWS::SQS::QueuePolicy": _queue_policy,
    "AWS::SecretsManager::Secret": _secret,
    "AWS::Glue::Database": _glue_database,
    "AWS::Glue::Table": _glue_table,
    "AWS::Glue::Job": _glue_job,
    "AWS::Glue::Trigger": _glue_trigger,
    "AWS::Glue::SecurityConfiguration": _glue_security_configuration,
    "AWS::Athena::WorkGroup": _athena_workgroup,
    "AWS::LakeFormation::DataLakeSettings": _lf_settings,
    "AWS::LakeFormation::Resource": _lf_resource,
    "AWS::LakeFormation::PrincipalPermissions": _lf_principal_permissions,
    "AWS::LakeFormation::Permissions": _lf_permissions,
}


#: An update: (deployer, logical id, resolved properties, the deployed record) -> (physical id, attributes, whether
#: it is a replacement, the old resource then deleted in the cleanup phase).
Updater = Callable[[StackDeployer, str, dict[str, Any], DeployedResource], tuple[str | None, dict[str, Any], bool]]

#: Types an update changes in place (or replaces, when their identity changes).
API_UPDATES: dict[str, Updater] = {
    "AWS::SageMaker::Endpoint": _update_sagemaker_endpoint,
    "AWS::ApplicationAutoScaling::ScalableTarget": _put_again(
        _scalable_target, lambda p: _scalable_target_id(p) if p else None),
    "AWS::ApplicationAutoScaling::ScalingPolicy": _put_again(
        _scaling_policy, lambda p: (p.get("PolicyName"), _policy_target(p) if p else None)),
    "AWS::CloudWatch::Alarm": _put_again(_metric_alarm, lambda p: p.get("AlarmName")),
}

#: Types whose every property but Tags requires a replacement (a new resource with a new name), and why.
REPLACED_ON_UPDATE: dict[str, str] = {
    "AWS::SageMaker::Model": "a SageMaker model is immutable",
    "AWS::SageMaker::EndpointConfig": "a SageMaker endpoint config is immutable",
}

#: How a resource is deleted in the rollback and the cleanup phase.
API_DELETES: dict[str, Callable[[StackDeployer, DeployedResource], None]] = {
    "AWS::SageMaker::Model": _delete_model,
    "AWS::SageMaker::EndpointConfig": _delete_endpoint_config,
    "AWS::SageMaker::Endpoint": _delete_endpoint,
    "AWS::ApplicationAutoScaling::ScalableTarget": _deregister_scalable_target,
    "AWS::ApplicationAutoScaling::ScalingPolicy": _delete_scaling_policy,
    "AWS::CloudWatch::Alarm": _delete_alarm,
}

#: Types to which the stack's tags propagate (merged with the resource's own Tags).
STACK_TAGGED = {"AWS::SageMaker::Model", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Endpoint",
                "AWS::ApplicationAutoScaling::ScalableTarget", "AWS::CloudWatch::Alarm"}


def deploy_stack(session: boto3.Session, stack: StackArtifact) -> StackDeployment:
    bootstrap(session, stack.account, stack.region)
    publish_assets(session, stack)
    return StackDeployer(session, stack).deploy()
