"""Monitoring of a prod endpoint locally, as on-call meets it: the version trained in dev and promoted to prod serves
drifted traffic; prod's own drift monitor (its Lambda, in prod's account, on prod's capture) raises prod's alarms,
pages prod's on-call topic, and the composite alarm, forwarded to dev's default event bus, starts dev's training
pipeline, which registers the next version.

One embedded AWS for the module; pump-health trains one version, which is approved and promoted to prod. Traffic
has as many rows as training had: the generator sizes its fleet of pumps by the row count.
"""

from __future__ import annotations

import json
import time

import pytest

from local_cli import cli_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local-mode")]

USE_CASE = ENDPOINT = "pump-health"
#: The fewest rows (with this seed) whose pump-health model passes the quality gate (f1 >= 0.3) locally: fewer give
#: too few failures to learn, and retraining on the same snapshot must pass the gate again to register a version.
ROWS = 12_000
SEED = 1
ENV = "prod"


@pytest.fixture(scope="module", autouse=True)
def wall_time():
    """The module's wall time, local mode's start and end included (autouse: set up before the others)."""
    started = time.monotonic()
    yield
    print(f"\n{__name__} wall time: {time.monotonic() - started:.0f} s")


@pytest.fixture(scope="module")
def promoted(local_mode, cli_env, tmp_path_factory):
    """The version dev trained, approved and promoted through staging and its gate to prod."""
    path = tmp_path_factory.mktemp("data") / "train.csv"
    cli_json("data", "generate", "--use-case", USE_CASE, "--rows", str(ROWS), "--seed", str(SEED), "--out", str(path),
             env=cli_env)
    cli_json("data", "ingest", "--use-case", USE_CASE, str(path), env=cli_env)
    cli_json("data", "prepare", "--use-case", USE_CASE, env=cli_env)
    run = cli_json("pipeline", "run", "--use-case", USE_CASE, "--wait", env=cli_env)
    assert run["status"] == "Succeeded", run
    version = int(run["model_package_arn"].rsplit("/", 1)[-1])
    cli_json("models", "approve", "--use-case", USE_CASE, str(version), env=cli_env)
    result = run_cli("promote", "--use-case", USE_CASE, str(version), "--to", ENV, "--approve", "--json",
                     env=cli_env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["status"] == "Succeeded"
    return version


@pytest.fixture(scope="module")
def sessions(promoted):
    """Sessions in prod's and dev's accounts of the module's embedded AWS, and its endpoint."""
    from modelwerk import local

    state = local.read_state()
    return {"prod": local.session("prod", state), "dev": local.session("dev", state), "url": state.endpoint_url,
            "accounts": state.accounts}


@pytest.fixture(scope="module")
def prod_on_call(sessions):
    """An SQS queue in prod's account subscribed to prod's on-call topic: what prod's pager would receive."""
    prod, url = sessions["prod"], sessions["url"]
    topic = prod.client("ssm", endpoint_url=url).get_parameter(
        Name=f"/modelwerk/{ENV}/monitoring/topic-arn")["Parameter"]["Value"]
    assert topic.split(":")[4] == sessions["accounts"][ENV]
    sqs = prod.client("sqs", endpoint_url=url)
    queue = sqs.create_queue(QueueName="prod-on-call-pager")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    prod.client("sns", endpoint_url=url).subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return sqs, queue


def _send(cli_env, tmp_path, *, seed: int, drift: float, requests: int = 4) -> int:
    path = tmp_path / f"traffic-{seed}.csv"
    cli_json("data", "generate", "--use-case", USE_CASE, "--rows", str(ROWS), "--seed", str(seed), "--drift",
             str(drift), "--out", str(path), env=cli_env)
    header, *body = path.read_text().splitlines()
    size = len(body) // requests
    for index in range(requests):
        part = tmp_path / f"part-{seed}-{index}.csv"
        part.write_text("\n".join([header, *body[index * size:(index + 1) * size]]) + "\n")
        cli_json("predict", "--endpoint", ENDPOINT, "--env", ENV, str(part), "--inference-id", f"s{seed}-{index}",
                 env=cli_env)
    return size * requests


def _monitor_until(cli_env, rows: int) -> list[dict]:
    """Every run until the window holds ``rows`` (the capture is flushed off the request path), the last one last."""
    deadline = time.monotonic() + 60
    results = []
    while True:
        results.append(cli_json("monitor", "run", "--endpoint", ENDPOINT, "--env", ENV, env=cli_env))
        if results[-1]["rows"] >= rows or time.monotonic() > deadline:
            return results
        time.sleep(2)


def _pages(prod_on_call) -> list[dict]:
    sqs, queue = prod_on_call
    messages = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return messages
        messages += [json.loads(json.loads(m["Body"])["Message"]) for m in batch]


def test_quiet_prod_traffic_is_judged_in_prod_and_starts_nothing(promoted, sessions, prod_on_call, cli_env,
                                                                  tmp_path):
    sent = _send(cli_env, tmp_path, seed=101, drift=0.0)
    runs = _monitor_until(cli_env, sent)
    result = runs[-1]
    assert result["rows"] == sent and result["bad_lines"] == 0
    assert max(f["psi"] for f in result["features"].values() if f["psi"] is not None) < 0.2
    states = {a["name"]: a["state"] for a in result["alarms"]}
    assert states[f"{ENDPOINT}-data-drift"] == "OK" and states[f"{ENDPOINT}-needs-retraining"] == "OK"
    assert all(r["retraining_execution_arn"] is None for r in runs)
    # Prod's function published into prod's CloudWatch and wrote its report to prod's serving bucket.
    url = sessions["url"]
    published = sessions["prod"].client("cloudwatch", endpoint_url=url).list_metrics(
        Namespace="Modelwerk/Monitoring", MetricName="WorstPSI")["Metrics"]
    assert [d["Value"] for m in published for d in m["Dimensions"]] == [ENDPOINT]
    assert not sessions["dev"].client("cloudwatch", endpoint_url=url).list_metrics(
        Namespace="Modelwerk/Monitoring")["Metrics"]
    assert f"-{ENV}-serving-{sessions['accounts'][ENV]}-" in result["report_uri"]
    assert all(page["NewStateValue"] == "OK" for page in _pages(prod_on_call))


def test_drifted_prod_traffic_pages_prods_on_call_and_retrains_in_dev(promoted, sessions, prod_on_call, cli_env,
                                                                       tmp_path):
    from modelwerk.local.alarms import AlarmEvaluator

    sent = _send(cli_env, tmp_path, seed=202, drift=1.0)
    runs = _monitor_until(cli_env, 2 * sent)  # the window holds the quiet traffic too
    result = runs[-1]
    assert [n for n, f in result["features"].items() if f["psi"] is not None and f["psi"] >= 0.2], result["features"]
    states = {a["name"]: a["state"] for a in result["alarms"]}
    assert states[f"{ENDPOINT}-data-drift"] == "ALARM" and states[f"{ENDPOINT}-needs-retraining"] == "ALARM"

    pages = _pages(prod_on_call)
    composite = [p for p in pages if p["AlarmName"] == f"{ENDPOINT}-needs-retraining" and p["NewStateValue"] == "ALARM"]
    assert len(composite) == 1 and composite[0]["AWSAccountId"] == sessions["accounts"][ENV], pages
    # The alarm of the same name in dev is another alarm: prod's transition left it alone.
    dev_alarms = AlarmEvaluator(sessions["dev"])
    assert dev_alarms.state(f"{ENDPOINT}-needs-retraining") != "ALARM"

    started = [r["retraining_execution_arn"] for r in runs if r["retraining_execution_arn"]]
    assert len(started) == 1, runs  # the run whose composite went to ALARM; later runs find it in ALARM already
    arn = started[0]
    assert arn.split(":")[4] == sessions["accounts"]["dev"] and ":pipeline/modelwerk-dev-pump-health-training/" in arn
    deadline = time.monotonic() + 900
    while True:
        execution = cli_json("pipeline", "describe", "--use-case", USE_CASE, arn, env=cli_env)
        if execution["status"] not in ("Executing", "Starting") or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert execution["status"] == "Succeeded", execution
    assert execution["parameters"].get("SnapshotId", "latest") == "latest"
    retrained = int(execution["model_package_arn"].rsplit("/", 1)[-1])
    assert retrained == promoted + 1
    listed = cli_json("models", "list", "--use-case", USE_CASE, env=cli_env)
    assert {int(v["version"]) for v in listed} == {promoted, retrained}


def test_ground_truth_for_the_prod_endpoint_goes_to_prods_serving_bucket(promoted, sessions, cli_env, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("inference_id,row,label\n" + "".join(f"s101-0,{row},0\n" for row in range(5)))
    uploaded = cli_json("feedback", "--endpoint", ENDPOINT, "--env", ENV, str(labels), env=cli_env)
    bucket, _, key = uploaded["uri"].removeprefix("s3://").partition("/")
    assert f"-{ENV}-serving-{sessions['accounts'][ENV]}-" in bucket and key.startswith(f"ground-truth/{ENDPOINT}/")
    stored = sessions["prod"].client("s3", endpoint_url=sessions["url"]).get_object(Bucket=bucket, Key=key)
    assert stored["Body"].read() == labels.read_bytes()
