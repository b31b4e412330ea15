"""SageMaker endpoints: local fleets of the serving container, blue/green with rollback alarms, the Runtime's URL.

moto stores models, endpoint configs and endpoints but runs none of them. These operations go to moto for what it
stores and then run it (:mod:`.endpoint_models`): ``CreateEndpoint`` starts the fleets, ``UpdateEndpoint`` deploys
blue/green (:mod:`.endpoint_deployment`), ``DeleteEndpoint`` stops them, ``DescribeEndpoint`` answers complete
(status, variants, data capture, deployments). The SageMaker Runtime is a process of its own
(:mod:`.endpoint_runtime`).

Controls (``POST /modelwerk-api/sagemaker/<name>``):

- ``runtime`` ``{}`` -> ``{"url"}``: the local SageMaker Runtime, for ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``.
- ``account-of`` ``{"access_key"}`` -> ``{"account"}``: whose access key it is, as the embedded AWS resolves it.
"""

from __future__ import annotations

from typing import Any

from modelwerk.local.services._routing import Call
from modelwerk.local.services.sagemaker.endpoint_models import EndpointFleets, endpoint_arn, validation
from modelwerk.local.services.sagemaker.endpoint_runtime import RuntimeProcess

_state: dict[str, Any] = {}


def _fleets() -> EndpointFleets:
    if "fleets" not in _state:
        raise validation("the embedded SageMaker's endpoints are not running (the server has not started them)")
    return _state["fleets"]


def _stored(call: Call, name: str) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[call.account][call.region].endpoints.get(name)


def _not_found(call: Call, name: str) -> Exception:
    return validation(f'Could not find endpoint "{endpoint_arn(call.account, call.region, name)}".')


def create_endpoint(call: Call) -> dict[str, Any]:
    name = call.params["EndpointName"]
    if _stored(call, name) is not None:
        raise validation(f'Cannot create already existing endpoint "{endpoint_arn(call.account, call.region, name)}".')
    config = call.params["EndpointConfigName"]
    fleets = _fleets()
    fleets.endpoint_config(call.account, call.region, config)  # refused before moto stores an endpoint it cannot run
    answer = call.forward_json()
    fleets.create(call.account, call.region, name, config, call.params.get("DeploymentConfig"))
    return answer


def update_endpoint(call: Call) -> dict[str, Any]:
    name = call.params["EndpointName"]
    endpoint = _fleets().get(call.account, call.region, name)
    if endpoint is None:
        raise _not_found(call, name)
    deployment = call.params.get("DeploymentConfig")
    if deployment is None and call.params.get("RetainDeploymentConfig"):
        deployment = endpoint.last_deployment_config
    _fleets().update(endpoint, call.params["EndpointConfigName"], deployment)
    return {"EndpointArn": endpoint.arn}


def delete_endpoint(call: Call) -> dict[str, Any]:
    name = call.params["EndpointName"]
    endpoint = _fleets().get(call.account, call.region, name)
    if endpoint is None and _stored(call, name) is None:
        raise _not_found(call, name)
    call.forward_json()
    if endpoint is not None:
        _fleets().delete(endpoint)
    return {}


def describe_endpoint(call: Call) -> dict[str, Any]:
    name = call.params["EndpointName"]
    endpoint = _fleets().get(call.account, call.region, name)
    if endpoint is not None:
        return _fleets().describe(endpoint)
    stored = _stored(call, name)
    if stored is None:
        raise _not_found(call, name)
    # stored without CreateEndpoint (moto's CloudFormation creates it in its backend): nothing runs it
    return {"EndpointName": name, "EndpointArn": stored.arn, "EndpointConfigName": stored.endpoint_config_name,
            "EndpointStatus": "Failed", "CreationTime": stored.creation_time,
            "LastModifiedTime": stored.last_modified_time,
            "FailureReason": "this endpoint was stored without CreateEndpoint (by CloudFormation in the embedded AWS): "
                             "no fleet runs it; create it through the SageMaker API to run it locally"}


def update_endpoint_weights_and_capacities(call: Call) -> dict[str, Any]:
    name = call.params["EndpointName"]
    endpoint = _fleets().get(call.account, call.region, name)
    if endpoint is None:
        raise _not_found(call, name)
    _fleets().update_weights(endpoint, call.params["DesiredWeightsAndCapacities"])
    return {"EndpointArn": endpoint.arn}


def runtime_url(body: dict[str, Any]) -> dict[str, Any]:
    if "runtime" not in _state:
        raise validation("the local SageMaker Runtime is not running (the server has not started it)")
    return {"url": _state["runtime"].wait()}


def account_of(body: dict[str, Any]) -> dict[str, Any]:
    from moto.iam.models import get_account_id_from

    return {"account": get_account_id_from(str(body["access_key"]))}


HANDLERS: dict[str, Any] = {
    "CreateEndpoint": create_endpoint,
    "UpdateEndpoint": update_endpoint,
    "DeleteEndpoint": delete_endpoint,
    "DescribeEndpoint": describe_endpoint,
    "UpdateEndpointWeightsAndCapacities": update_endpoint_weights_and_capacities,
}
CONTROLS: dict[str, Any] = {"runtime": runtime_url, "account-of": account_of}


def start(context: Any) -> None:
    """The endpoints' fleets and the SageMaker Runtime live as long as the server. moto keeps its state per process,
    so a process runs one embedded AWS at a time: what an earlier one left running stops."""
    stop()
    _state["fleets"] = EndpointFleets(context)
    _state["runtime"] = RuntimeProcess(context)
    _state["runtime"].start()


def stop() -> None:
    """Stop every fleet and the runtime."""
    fleets, runtime = _state.pop("fleets", None), _state.pop("runtime", None)
    if fleets is not None:
        fleets.stop_all()
    if runtime is not None:
        runtime.stop()
