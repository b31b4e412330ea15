"""Benchmark: the embedded AWS as ``local up`` starts it, side by side with moto's own server and with DuckDB, one run.

What it shows
    What local mode's one code path costs: calls that go on to moto, through the middleware that takes the
    operations Modelwerk runs itself (and beside the services' background loops), against moto's own server; and an
    Athena query through the API (start, poll, results; the engine reads the table from the embedded S3 and writes
    Athena's result files) against DuckDB reading the same Parquet files from disk.

Method
    1. Pass-through: the same boto3 calls, alternately against ``moto.server.ThreadedMotoServer`` (the peer) and
       ``EmbeddedAWS`` (what ``local up`` runs: moto behind the services' middleware, their background loops running),
       each on its own loopback port: S3 PutObject + GetObject of 1 KB, SageMaker ListModelPackageGroups, SSM
       GetParameter. Best of ``--repeat`` rounds of ``--calls`` calls each.
    2. Athena: a Glue table over ``--rows`` rows of Parquet (8 daily partitions) in the embedded S3 and an enforced
       workgroup; ``SELECT day, count(*), avg(x) ... GROUP BY day`` through boto3 (StartQueryExecution,
       GetQueryExecution until it ends, GetQueryResults), against DuckDB over the same files on local disk.

    python benchmarks/embedded_aws.py
    python benchmarks/embedded_aws.py --calls 200 --rows 100000 --repeat 1   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelwerk.local.ports import free_port, moto_answers, wait_healthy  # noqa: E402

REGION = "eu-central-1"
BUCKET = "benchmark-bucket"


def _session() -> boto3.Session:
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


def _pass_through(url: str, calls: int) -> dict[str, float]:
    """Seconds per call of each pass-through operation against the server at ``url``."""
    session = _session()
    s3, sagemaker, ssm = (session.client(name, endpoint_url=url) for name in ("s3", "sagemaker", "ssm"))
    try:  # both servers share moto's state in this process: the bucket may be there already
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        pass
    ssm.put_parameter(Name="/benchmark/name", Value="value", Type="String", Overwrite=True)
    body = b"x" * 1024
    timings = {}
    for name, call in {
        "s3 put+get 1 KB": lambda i: s3.get_object(Bucket=BUCKET, Key=f"k{i % 50}")["Body"].read()
        if s3.put_object(Bucket=BUCKET, Key=f"k{i % 50}", Body=body) else None,
        "sagemaker list groups": lambda i: sagemaker.list_model_package_groups(),
        "ssm get parameter": lambda i: ssm.get_parameter(Name="/benchmark/name"),
    }.items():
        call(0)
        started = time.perf_counter()
        for i in range(calls):
            call(i)
        timings[name] = (time.perf_counter() - started) / calls
    return timings


def _moto_server() -> tuple[str, object]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    assert wait_healthy(url, check=moto_answers)
    return url, server


def _embedded(state_dir: Path) -> tuple[str, object]:
    from modelwerk.local.server import EmbeddedAWS

    server = EmbeddedAWS(port=free_port(), state_dir=state_dir, region=REGION).start()
    return server.endpoint_url, server


def _table(rows: int, folder: Path) -> list[Path]:
    rng = np.random.default_rng(7)
    files = []
    for day in range(8):
        part = folder / f"day=2026-01-0{day + 1}"
        part.mkdir(parents=True)
        n = rows // 8
        table = pa.table({"asset": rng.integers(0, 500, n), "x": rng.normal(size=n), "y": rng.random(n)})
        pq.write_table(table, part / "part-0.parquet")
        files.append(part / "part-0.parquet")
    return files


def _lake(url: str, folder: Path, files: list[Path]) -> None:
    """The files as a partitioned Glue table in the embedded S3, and an enforced workgroup."""
    session = _session()
    s3, glue, athena = (session.client(name, endpoint_url=url) for name in ("s3", "glue", "athena"))
    s3.create_bucket(Bucket="benchmark-lake", CreateBucketConfiguration={"LocationConstraint": REGION})
    for file in files:
        s3.upload_file(str(file), "benchmark-lake", f"readings/{file.relative_to(folder).as_posix()}")
    glue.create_database(DatabaseInput={"Name": "benchmark"})
    glue.create_table(DatabaseName="benchmark", TableInput={
        "Name": "readings", "PartitionKeys": [{"Name": "day", "Type": "string"}],
        "StorageDescriptor": {"Location": "s3://benchmark-lake/readings/", "Columns": [
            {"Name": "asset", "Type": "bigint"}, {"Name": "x", "Type": "double"}, {"Name": "y", "Type": "double"}],
            "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"}}})
    athena.create_work_group(Name="benchmark", Configuration={
        "EnforceWorkGroupConfiguration": True,
        "ResultConfiguration": {"OutputLocation": "s3://benchmark-lake/results/"}})


def _athena(url: str) -> float:
    """Seconds from StartQueryExecution to the result rows, through boto3."""
    athena = _session().client("athena", endpoint_url=url)
    started = time.perf_counter()
    query = athena.start_query_execution(
        QueryString="SELECT day, count(*) AS n, avg(x) AS x FROM readings GROUP BY day ORDER BY day",
        QueryExecutionContext={"Database": "benchmark"}, WorkGroup="benchmark")["QueryExecutionId"]
    while True:
        state = athena.get_query_execution(QueryExecutionId=query)["QueryExecution"]["Status"]["State"]
        if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            break
        time.sleep(0.02)
    assert state == "SUCCEEDED", state
    rows = athena.get_query_results(QueryExecutionId=query)["ResultSet"]["Rows"]
    seconds = time.perf_counter() - started
    assert len(rows) == 9, rows
    return seconds


def _duckdb(folder: Path) -> float:
    import duckdb

    started = time.perf_counter()
    result = duckdb.sql(f"SELECT day, count(*) AS n, avg(x) AS x FROM read_parquet('{folder}/*/*.parquet', "
                        "hive_partitioning = true) GROUP BY day ORDER BY day").fetchall()
    seconds = time.perf_counter() - started
    assert len(result) == 8
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.pop("AWS_ENDPOINT_URL", None)

    peer_url, peer = _moto_server()
    rounds: dict[str, dict[str, list[float]]] = {"moto server": {}, "embedded AWS": {}}
    with tempfile.TemporaryDirectory() as state:
        ours_url, ours = _embedded(Path(state))
        for _ in range(args.repeat):  # alternate, so a noisy moment hits both
            for label, url in (("moto server", peer_url), ("embedded AWS", ours_url)):
                for name, seconds in _pass_through(url, args.calls).items():
                    rounds[label].setdefault(name, []).append(seconds)
        print(f"pass-through, {args.calls} calls per round, best of {args.repeat} (ms per call):")
        print(f"{'operation':<24} {'moto server':>12} {'embedded AWS':>13} {'ratio':>6}")
        for name in rounds["moto server"]:
            peer_ms, ours_ms = (min(rounds[label][name]) * 1000 for label in ("moto server", "embedded AWS"))
            print(f"{name:<24} {peer_ms:>12.2f} {ours_ms:>13.2f} {ours_ms / peer_ms:>5.2f}x")

        with tempfile.TemporaryDirectory() as data:
            folder = Path(data)
            files = _table(args.rows, folder)
            _lake(ours_url, folder, files)
            athena = [_athena(ours_url) for _ in range(args.repeat)]
            duck = [_duckdb(folder) for _ in range(args.repeat)]
        print(f"\nAthena on {args.rows:,} rows (GROUP BY over 8 partitions), best of {args.repeat}:")
        print(f"  embedded AWS (start, poll, results): {min(athena):.3f} s  (median {statistics.median(athena):.3f})")
        print(f"  DuckDB over the same files:          {min(duck):.3f} s")
        print(f"  ratio: {min(athena) / min(duck):.2f}x")
        ours.stop()
    peer.stop()


if __name__ == "__main__":
    main()
