"""CodeBuild's errors in AWS's shapes (botocore's codebuild model names the ones each operation may raise)."""

from __future__ import annotations

from modelwerk.local.services._routing import AwsError


def invalid_input(message: str) -> AwsError:
    return AwsError("InvalidInputException", message)


def project_not_found(name: str) -> AwsError:
    return AwsError("ResourceNotFoundException", f"Project cannot be found: {name}")


def build_not_found(build_id: str) -> AwsError:
    return AwsError("ResourceNotFoundException", f"Build {build_id} does not exist")
