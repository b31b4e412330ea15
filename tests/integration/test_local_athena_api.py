"""The embedded Athena runs SQL: boto3 and awswrangler against the embedded AWS, over a partitioned Parquet table
of the Glue catalog, with an enforced workgroup that writes SSE-KMS results."""

from __future__ import annotations

import io
import time

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

BUCKET = "lake"
RESULTS = "athena-results"
DATABASE = "sales"
WORKGROUP = "analysts"


def _readings(day: str, start: int) -> pd.DataFrame:
    return pd.DataFrame({
        "pump_id": [f"p{start + i}" for i in range(3)],
        "pressure": [1.5 + start + i for i in range(3)],
        "cycles": pd.array([10 * (start + i) for i in range(3)], dtype="int64"),
        "ok": [True, False, True],
        "note": ["a,b", 'say "hi"', None],
    }).assign(day=day)


@pytest.fixture(scope="module")
def lake(embedded_aws):
    """A bucket with a table partitioned by ``day`` (two partitions), its Glue entry, and an enforced workgroup."""
    s3, glue, athena, kms = (embedded_aws.client(s) for s in ("s3", "glue", "athena", "kms"))
    for bucket in (BUCKET, RESULTS):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name})
    frames = [_readings("2024-01-01", 0), _readings("2024-01-02", 3)]
    for frame in frames:
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame.drop(columns="day"), preserve_index=False), buffer)
        s3.put_object(Bucket=BUCKET, Key=f"readings/day={frame['day'][0]}/part-0.parquet", Body=buffer.getvalue())
    s3.put_object(Bucket=BUCKET, Key="readings/_SUCCESS", Body=b"")
    glue.create_database(DatabaseInput={"Name": DATABASE})
    glue.create_table(DatabaseName=DATABASE, TableInput={
        "Name": "readings", "TableType": "EXTERNAL_TABLE", "Parameters": {"classification": "parquet"},
        "PartitionKeys": [{"Name": "day", "Type": "string"}],
        "StorageDescriptor": {
            "Columns": [{"Name": "pump_id", "Type": "string"}, {"Name": "pressure", "Type": "double"},
                        {"Name": "cycles", "Type": "bigint"}, {"Name": "ok", "Type": "boolean"},
                        {"Name": "note", "Type": "string"}],
            "Location": f"s3://{BUCKET}/readings/",
            "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"}}})
    key = kms.create_key()["KeyMetadata"]["Arn"]
    account = embedded_aws.client("sts").get_caller_identity()["Account"]
    athena.create_work_group(Name=WORKGROUP, Configuration={  # as cdk_constructs/data_catalog.py configures it
        "EnforceWorkGroupConfiguration": True, "PublishCloudWatchMetricsEnabled": True,
        "BytesScannedCutoffPerQuery": 10 * 1024**3,
        "EngineVersion": {"SelectedEngineVersion": "Athena engine version 3"},
        "ResultConfiguration": {"OutputLocation": f"s3://{RESULTS}/results/", "ExpectedBucketOwner": account,
                                "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": key}}})
    return {"frame": pd.concat(frames, ignore_index=True), "key": key}


@pytest.fixture
def aws_env(embedded_aws, monkeypatch):
    """awswrangler's own clients reach the embedded AWS through the standard variables."""
    for name, value in embedded_aws.env.items():
        monkeypatch.setenv(name, value)
    return boto3.Session(region_name=embedded_aws.env["AWS_DEFAULT_REGION"])


def _run(athena, sql: str, **kwargs) -> dict:
    query_id = athena.start_query_execution(QueryString=sql, WorkGroup=WORKGROUP, **kwargs)["QueryExecutionId"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        if execution["Status"]["State"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return execution
        time.sleep(0.1)
    raise AssertionError(f"query {query_id} did not finish")


def test_select_answers_with_athena_types_header_and_pages(embedded_aws, lake):
    athena = embedded_aws.client("athena")
    execution = _run(athena, "SELECT day, count(*) AS n, sum(pressure) AS total, CAST(1.25 AS DECIMAL(5, 2)) AS d, "
                             "max(ok) AS any_ok, DATE '2024-01-01' AS first FROM readings "
                             "WHERE cycles >= ? GROUP BY day ORDER BY day",
                     QueryExecutionContext={"Database": DATABASE}, ExecutionParameters=["0"])
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"]
    assert execution["StatementType"] == "DML"
    location = execution["ResultConfiguration"]["OutputLocation"]
    assert location == f"s3://{RESULTS}/results/{execution['QueryExecutionId']}.csv"
    assert execution["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
    assert execution["Statistics"]["DataScannedInBytes"] > 0
    pages = list(athena.get_paginator("get_query_results").paginate(
        QueryExecutionId=execution["QueryExecutionId"], PaginationConfig={"PageSize": 2}))
    assert len(pages) == 2
    info = pages[0]["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
    assert [(c["Name"], c["Type"]) for c in info] == [("day", "varchar"), ("n", "bigint"), ("total", "double"),
                                                     ("d", "decimal"), ("any_ok", "boolean"), ("first", "date")]
    assert (info[3]["Precision"], info[3]["Scale"]) == (5, 2)
    rows = [[d.get("VarCharValue") for d in row["Data"]] for page in pages for row in page["ResultSet"]["Rows"]]
    assert rows == [["day", "n", "total", "d", "any_ok", "first"],
                    ["2024-01-01", "3", "7.5", "1.25", "true", "2024-01-01"],
                    ["2024-01-02", "3", "16.5", "1.25", "true", "2024-01-01"]]


def test_result_csv_is_quoted_with_unquoted_nulls_and_encrypted(embedded_aws, lake):
    athena, s3 = embedded_aws.client("athena"), embedded_aws.client("s3")
    execution = _run(athena, "SELECT pump_id, note FROM sales.readings WHERE pump_id IN ('p1', 'p2') ORDER BY 1")
    key = execution["ResultConfiguration"]["OutputLocation"].removeprefix(f"s3://{RESULTS}/")
    stored = s3.get_object(Bucket=RESULTS, Key=key)
    assert stored["Body"].read().decode() == '"pump_id","note"\n"p1","say ""hi"""\n"p2",\n'
    assert stored["ServerSideEncryption"] == "aws:kms"
    assert stored["SSEKMSKeyId"] == lake["key"]
    assert s3.head_object(Bucket=RESULTS, Key=f"{key}.metadata")["ContentLength"] > 0


def test_bad_sql_and_unknown_table_fail_with_reason(embedded_aws, lake):
    athena = embedded_aws.client("athena")
    bad = _run(athena, "SELEC 1")
    assert bad["Status"]["State"] == "FAILED"
    assert "syntax error" in bad["Status"]["StateChangeReason"]
    assert bad["Status"]["AthenaError"]["ErrorCategory"] == 2
    missing = _run(athena, "SELECT * FROM nowhere", QueryExecutionContext={"Database": DATABASE})
    assert missing["Status"]["StateChangeReason"] == (
        "TABLE_NOT_FOUND: Table 'awsdatacatalog.sales.nowhere' does not exist")
    with pytest.raises(athena.exceptions.InvalidRequestException, match="Query did not finish successfully"):
        athena.get_query_results(QueryExecutionId=missing["QueryExecutionId"])


def test_no_output_location_is_refused_as_athena_does(embedded_aws, lake):
    athena = embedded_aws.client("athena")
    with pytest.raises(athena.exceptions.InvalidRequestException, match="No output location provided"):
        athena.start_query_execution(QueryString="SELECT 1")


def test_awswrangler_without_ctas_reads_what_duckdb_reads_from_the_same_files(embedded_aws, lake, aws_env, tmp_path):
    import awswrangler as wr
    import duckdb

    s3 = embedded_aws.client("s3")
    for item in s3.list_objects_v2(Bucket=BUCKET, Prefix="readings/")["Contents"]:
        if item["Key"].endswith(".parquet"):
            (tmp_path / item["Key"]).parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(BUCKET, item["Key"], str(tmp_path / item["Key"]))
    sql = "SELECT pump_id, pressure, cycles, ok, day FROM {} WHERE day = '2024-01-02' AND cycles > 30 ORDER BY pump_id"
    frame = wr.athena.read_sql_query(sql.format("readings"), database=DATABASE, workgroup=WORKGROUP,
                                     ctas_approach=False, boto3_session=aws_env)
    files = f"read_parquet('{tmp_path}/readings/*/*.parquet', hive_types = {{'day': 'VARCHAR'}})"
    expected = duckdb.sql(sql.format(files)).df()
    assert len(frame) == len(expected) == 2
    assert frame.astype(object).values.tolist() == expected.astype(object).values.tolist()
    assert str(frame["cycles"].dtype) == "Int64"


def test_awswrangler_ctas_approach_writes_table_reads_and_drops_it(embedded_aws, lake, aws_env):
    import awswrangler as wr

    frame = wr.athena.read_sql_query("SELECT pump_id, cycles, day FROM readings ORDER BY pump_id", database=DATABASE,
                                     workgroup=WORKGROUP, boto3_session=aws_env)
    assert frame["pump_id"].tolist() == [f"p{i}" for i in range(6)]
    assert frame["cycles"].tolist() == [0, 10, 20, 30, 40, 50]
    tables = embedded_aws.client("glue").get_tables(DatabaseName=DATABASE)["TableList"]
    assert [t["Name"] for t in tables] == ["readings"]  # the temporary CTAS table is gone again


def test_awswrangler_unload_approach(embedded_aws, lake, aws_env):
    import awswrangler as wr

    frame = wr.athena.read_sql_query("SELECT pump_id, pressure FROM readings WHERE ok", database=DATABASE,
                                     workgroup=WORKGROUP, ctas_approach=False, unload_approach=True,
                                     s3_output=f"s3://{RESULTS}/unload/1/", boto3_session=aws_env)
    assert sorted(frame["pump_id"]) == ["p0", "p2", "p3", "p5"]


def test_request_token_list_batch_and_stop(embedded_aws, lake):
    athena = embedded_aws.client("athena")
    slow = "SELECT sum(a.range * b.range) AS s FROM range(30000) a, range(30000) b"
    token = "modelwerk-test-token-0000000000000001"
    first = athena.start_query_execution(QueryString=slow, WorkGroup=WORKGROUP, ClientRequestToken=token)
    again = athena.start_query_execution(QueryString=slow, WorkGroup=WORKGROUP, ClientRequestToken=token)
    query_id = first["QueryExecutionId"]
    assert again["QueryExecutionId"] == query_id
    athena.stop_query_execution(QueryExecutionId=query_id)
    status = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
    assert status["State"] == "CANCELLED"
    assert athena.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"][0] == query_id
    batch = athena.batch_get_query_execution(QueryExecutionIds=[query_id, "no-such-query"])
    assert [e["QueryExecutionId"] for e in batch["QueryExecutions"]] == [query_id]
    assert batch["UnprocessedQueryExecutionIds"][0]["QueryExecutionId"] == "no-such-query"
