"""What every service of the embedded AWS shares: where it runs, clients into any account, events, background work."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("modelwerk.local")

#: The secret every embedded account accepts (moto checks no signatures); access keys choose the account.
_SECRET = "testing"


def _isolated(region: str, credentials: dict[str, str]) -> Any:
    """A boto3 session with exactly these credentials and region, blind to this process's AWS configuration (in a
    notebook, ``modelwerk.local.start()`` points ``AWS_PROFILE`` at the profiles the services themselves serve)."""
    import boto3
    import botocore.session
    from botocore.configprovider import ConstantProvider

    core = botocore.session.Session()
    store = core.get_component("config_store")
    for name, value in (("profile", None), ("config_file", os.devnull), ("credentials_file", os.devnull)):
        store.set_config_provider(name, ConstantProvider(value))
    return boto3.Session(botocore_session=core, aws_access_key_id=credentials["AccessKeyId"],
                         aws_secret_access_key=credentials["SecretAccessKey"],
                         aws_session_token=credentials.get("SessionToken"), region_name=region)


def ensure_log_stream(logs: Any, group: str, stream: str) -> None:
    """The CloudWatch Logs group and stream a service writes a job's or function's output into, created if missing."""
    for create, args in ((logs.create_log_group, {"logGroupName": group}),
                         (logs.create_log_stream, {"logGroupName": group, "logStreamName": stream})):
        try:
            create(**args)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass


@dataclass
class ServiceContext:
    """The running embedded AWS as its services see it.

    ``root`` is the checkout local mode runs for (its ``cdk.out`` holds the deployed assets), ``state_dir`` where the
    services keep what must survive them (execution records, job logs); both are None for a bare server in a test.
    """

    endpoint_url: str
    root: Path | None = None
    state_dir: Path | None = None
    default_region: str = "us-east-1"
    stopping: threading.Event = field(default_factory=threading.Event)
    _sessions: dict[tuple[str, str], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    # -- clients ----------------------------------------------------------------------------------------------------
    def session(self, account: str, region: str | None = None) -> Any:
        """A boto3 session of ``account`` against this server: the default account's keys, or keys that the
        embedded STS issued for a role in ``account`` (as a service-linked role acts for a service on AWS)."""
        from moto.core import DEFAULT_ACCOUNT_ID

        region = region or self.default_region
        with self._lock:
            cached = self._sessions.get((account, region))
            if cached is not None:
                return cached
        if account == DEFAULT_ACCOUNT_ID:
            credentials = {"AccessKeyId": "testing", "SecretAccessKey": _SECRET}
        else:
            sts = _isolated(region, {"AccessKeyId": "testing", "SecretAccessKey": _SECRET}).client(
                "sts", endpoint_url=self.endpoint_url)
            credentials = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/AWSServiceRoleForModelwerkLocal",
                                          RoleSessionName="embedded-aws")["Credentials"]
        session = _isolated(region, credentials)
        with self._lock:
            self._sessions[(account, region)] = session
        return session

    def client(self, service: str, account: str, region: str | None = None) -> Any:
        return self.session(account, region).client(service, endpoint_url=self.endpoint_url)

    def credentials(self, account: str, region: str | None = None) -> dict[str, str]:
        """``AWS_*`` variables for a process acting in ``account`` (a job, a function, a container)."""
        frozen = self.session(account, region).get_credentials().get_frozen_credentials()
        variables = {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_ACCESS_KEY_ID": frozen.access_key,
                     "AWS_SECRET_ACCESS_KEY": frozen.secret_key,
                     "AWS_DEFAULT_REGION": region or self.default_region, "AWS_REGION": region or self.default_region}
        if frozen.token:
            variables["AWS_SESSION_TOKEN"] = frozen.token
        return variables

    # -- state ------------------------------------------------------------------------------------------------------
    def folder(self, *parts: str) -> Path:
        """A folder of the services' own state (``<state_dir>/<parts>``), created on first use."""
        if self.state_dir is None:
            import tempfile

            self.state_dir = Path(tempfile.mkdtemp(prefix="modelwerk-embedded-aws-"))
        path = self.state_dir.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- events -----------------------------------------------------------------------------------------------------
    def emit_event(self, account: str, region: str, *, source: str, detail_type: str, detail: dict[str, Any],
                   resources: list[str] | None = None) -> None:
        """An event an AWS service emits itself (``aws.sagemaker``, ``aws.glue``, ``aws.cloudwatch``) onto the
        account's default bus, where the deployed rules match it."""
        from moto.events.models import events_backends

        entry = {"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail, default=str),
                 "Resources": resources or []}
        try:
            events_backends[account][region].put_events([entry])
        except Exception as error:  # noqa: BLE001 - as on AWS, a failed delivery never fails the emitting call
            log.warning("event %s from %s in %s/%s not delivered: %s", detail_type, source, account, region, error)

    # -- background work --------------------------------------------------------------------------------------------
    def spawn(self, name: str, target: Callable[..., Any], *args: Any) -> threading.Thread:
        """Run ``target(*args)`` on a daemon thread of the server (a job run, an execution, a loop)."""

        def run() -> None:
            try:
                target(*args)
            except Exception:  # noqa: BLE001 - logged; the work records its own failure
                log.exception("background work %s failed", name)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def every(self, name: str, seconds: float, tick: Callable[[], Any]) -> threading.Thread:
        """Call ``tick()`` every ``seconds`` until the server stops."""

        def loop() -> None:
            while not self.stopping.wait(seconds):
                try:
                    tick()
                except Exception:  # noqa: BLE001 - one failed tick is logged; the loop goes on
                    log.exception("%s failed", name)

        return self.spawn(name, loop)

    def join(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        for thread in list(self._threads):
            thread.join(timeout=timeout)
