"""Glue's errors in AWS's shapes (botocore's glue model names each one an operation may raise)."""

from __future__ import annotations

from modelwerk.local.services._routing import AwsError


def job_not_found(job_name: str) -> AwsError:
    return AwsError("EntityNotFoundException", f"Job {job_name} not found.")


def job_run_not_found(job_name: str, run_id: str) -> AwsError:
    return AwsError("EntityNotFoundException", f"Job run {run_id} of job {job_name} not found.")


def concurrent_runs_exceeded(job_name: str) -> AwsError:
    return AwsError("ConcurrentRunsExceededException", f"Concurrent runs exceeded for {job_name}")


def invalid_input(message: str) -> AwsError:
    return AwsError("InvalidInputException", message)
