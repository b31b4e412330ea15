"""codepipeline: StartPipelineExecution runs the stored pipeline structure (S3 source, CloudFormation deploy,
CodeBuild, Lambda invoke and manual approval actions); executions, action executions, the state view, approvals,
job results, stop and stage rollback answered as CodePipeline answers them."""

from modelwerk.local.services._routing import Service
from modelwerk.local.services.codepipeline import responses
from modelwerk.local.services.codepipeline.actions import RUNNERS
from modelwerk.local.services.codepipeline.models import Executions


def _start(context):
    responses._state["executions"] = Executions(context, RUNNERS)


def _stop():
    responses._state.pop("executions", None)


SERVICE = Service(name="codepipeline", handlers=responses.HANDLERS, start=_start, stop=_stop)
