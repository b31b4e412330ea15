"""The training pipeline's step scripts: preprocess -> train -> evaluate -> baseline, driven by the contract alone.

The chain runs the scripts as processes the way a container does: from a folder holding only the steps folder's
files, with ``modelwerk/core`` as the only importable part of the library, the /opt/ml paths mapped into the test's
folder by arguments, and S3 on an embedded moto server (a separate process cannot share ``mock_aws``). The shared
module's functions are also tested in-process, with ``mock_aws`` where they touch S3.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto_fresh import fresh_mock_aws

from modelwerk import settings, synthetic
from modelwerk.core import snapshot
from modelwerk.core.contract import Contract

ROOT = Path(__file__).resolve().parents[2]
STEPS = ROOT / "sagemaker_pipelines" / "steps"
CORE = ROOT / "modelwerk" / "core"
REGION = "eu-central-1"
BUCKET = "modelwerk-dev-curated-123456789012-eu-central-1"
SCRIPTS = ("preprocess.py", "train.py", "evaluate.py", "baseline.py")
#: Rows per use case: enough pumps that the newest 15 % hold failures, a few thousand plant-hours.
ROWS = {"pump-health": 60_000, "energy-forecast": 3_000}
ARROW_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def _load_step_common():
    spec = importlib.util.spec_from_file_location("step_common", STEPS / "step_common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["step_common"] = module
    spec.loader.exec_module(module)
    return module


sc = _load_step_common()


def drift_available() -> bool:
    try:
        from modelwerk.core import drift
    except ImportError:
        return False
    return hasattr(drift, "build_baseline")


# --------------------------------------------------------------------------------------------------------------------
# Curated data and snapshots, the way preparation writes them


def use_case(name: str):
    return settings.load(ROOT).use_case(name)


def curated_frame(contract: Contract, frame: pd.DataFrame) -> pd.DataFrame:
    """Synthetic rows as curated rows: personal columns pseudonymized, lineage columns, rolling features per asset."""
    frame = frame.sort_values([contract.asset, contract.timestamp], kind="mergesort").reset_index(drop=True)
    for name in contract.personal_columns:
        frame[name] = frame[name].map(lambda v: None if v is None else hashlib.sha256(str(v).encode()).hexdigest())
    frame["_ingested_at"] = pd.Timestamp("2025-06-01T00:00:00Z")
    frame["_source_key"] = f"s3://landing/{contract.use_case}/synthetic.csv"
    if contract.rolling:
        indexed = frame.set_index(contract.timestamp)
        for column in contract.rolling.columns:
            window = indexed.groupby(contract.asset, sort=True)[column].rolling(contract.rolling.window)
            for stat in contract.rolling.stats:
                frame[contract.rolling.feature_name(column, stat)] = getattr(window, stat)().to_numpy()
    return frame


def parquet_objects(contract: Contract, frame: pd.DataFrame) -> dict[str, bytes]:
    """One compacted Parquet object per ``dt`` partition, typed as ADR 0001 says."""
    fields = [(c.name, ARROW_TYPES[c.type]) for c in contract.columns]
    fields += [("_ingested_at", ARROW_TYPES["timestamp"]), ("_source_key", pa.string())]
    if contract.rolling:
        fields += [(name, pa.float64()) for name in contract.rolling.feature_names]
    schema = pa.schema(fields)
    days = frame[contract.timestamp].dt.strftime("%Y-%m-%d")
    objects = {}
    for day, rows in frame.groupby(days, sort=True):
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(rows[schema.names], schema=schema, preserve_index=False), buffer)
        objects[f"{contract.use_case}/dt={day}/part-00000.parquet"] = buffer.getvalue()
    return objects


def publish(s3, use_case_name: str, objects: dict[str, bytes], *, pinned: dict[str, bytes] | None = None) -> dict:
    """Put the objects into the versioned bucket and publish a manifest of the versions written.

    ``pinned`` records other bytes for some keys than those uploaded: a manifest whose sha256 the objects betray.
    """
    entries = []
    for key, data in objects.items():
        version = s3.put_object(Bucket=BUCKET, Key=key, Body=data)["VersionId"]
        entries.append(snapshot.manifest_entry(key, version, (pinned or {}).get(key, data)))
    manifest = snapshot.build_manifest(use_case_name, BUCKET, entries)
    prefix = f"_snapshots/{use_case_name}/"
    key = snapshot.manifest_key(prefix, manifest["snapshot_id"])
    s3.put_object(Bucket=BUCKET, Key=key, Body=snapshot.dumps(manifest))
    pointer = snapshot.dumps(snapshot.latest_pointer(manifest, key))
    s3.put_object(Bucket=BUCKET, Key=prefix + snapshot.LATEST, Body=pointer)
    return manifest


def stage_inputs(folder: Path, contract_folder: Path, manifest: dict) -> dict[str, Path]:
    """What a processing job stages into /opt/ml/processing/input: contract.json and the manifest object."""
    (folder / "contract").mkdir(parents=True)
    shutil.copy(contract_folder / "contract.json", folder / "contract" / "contract.json")
    (folder / "manifest").mkdir()
    (folder / "manifest" / f"{manifest['snapshot_id']}.json").write_bytes(snapshot.dumps(manifest))
    return {"contract": folder / "contract", "manifest": folder / "manifest"}


# --------------------------------------------------------------------------------------------------------------------
# Fixtures: the embedded S3, the container's code folder, running a script


@pytest.fixture(scope="module")
def aws(embedded_aws):
    s3 = embedded_aws.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return {"env": embedded_aws.env, "s3": s3}


@pytest.fixture(scope="module")
def container(tmp_path_factory, aws):
    """A folder as SageMaker ships it (``code``: the steps' files; ``dependencies``: modelwerk/core) and the env."""
    root = tmp_path_factory.mktemp("container")
    code = root / "code"
    code.mkdir()
    for file in STEPS.glob("*.py"):
        shutil.copy(file, code / file.name)
    package = root / "dependencies" / "modelwerk"
    shutil.copytree(CORE, package / "core", ignore=shutil.ignore_patterns("__pycache__"))
    (package / "__init__.py").write_text("")  # the library's own __init__ stays behind: the core stands alone
    # This checkout is installed in editable mode, whose import hook would still find the rest of the library; a
    # container has no such hook, so the processes run without it.
    isolation = root / "isolation"
    isolation.mkdir()
    (isolation / "sitecustomize.py").write_text(
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith('__editable__')"
        " and not getattr(f, '__module__', '').startswith('__editable__')]\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SM_", "PYTHON"))}
    pythonpath = os.pathsep.join([str(root / "dependencies"), str(isolation)])
    env.update(aws["env"], PYTHONPATH=pythonpath, PYTHONDONTWRITEBYTECODE="1")
    return {"code": code, "env": env}


def run_step(container, script: str, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(container["code"] / script), *map(str, args)],
        cwd=container["code"],
        env={**container["env"], **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def last_stderr_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module", params=["pump-health", "energy-forecast"])
def chain(request, aws, container, tmp_path_factory):
    """preprocess -> train -> evaluate -> baseline for one use case, paths mapped into a work folder."""
    config = use_case(request.param)
    contract = config.contract
    source = synthetic.generate(config, rows=ROWS[request.param], seed=2)
    manifest = publish(aws["s3"], contract.use_case, parquet_objects(contract, curated_frame(contract, source)))
    work = tmp_path_factory.mktemp(request.param)
    inputs = stage_inputs(work / "processing" / "input", config.folder, manifest)
    out = work / "processing" / "output"
    succeeded(
        run_step(
            container, "preprocess.py",
            "--contract", inputs["contract"], "--manifest", inputs["manifest"],
            "--train", out / "train", "--validation", out / "validation", "--test", out / "test",
            "--lineage", out / "lineage", "--snapshot-id", manifest["snapshot_id"],
        )
    )  # fmt: skip
    model_dir = work / "model"
    training_env = {
        "SM_CHANNEL_TRAIN": str(out / "train"),
        "SM_CHANNEL_VALIDATION": str(out / "validation"),
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(work / "output" / "data"),
        "SM_HPS": json.dumps({"max_iter": 200, "random_state": 0}),
    }
    training = succeeded(run_step(container, "train.py", "--learning_rate", "0.1", env=training_env))
    artifact = work / "artifact"  # what the evaluation job receives: the folder holding model.tar.gz
    artifact.mkdir()
    with tarfile.open(artifact / "model.tar.gz", "w:gz") as tar:
        for file in model_dir.iterdir():
            tar.add(file, arcname=file.name)
    succeeded(
        run_step(
            container, "evaluate.py", "--model", artifact, "--test", out / "test", "--evaluation", out / "evaluation"
        )
    )
    baseline = None
    if drift_available():
        baseline = run_step(container, "baseline.py", "--train", out / "train", "--baseline", out / "baseline")
        succeeded(baseline)
    return {
        "config": config, "contract": contract, "source": source, "manifest": manifest, "out": out,
        "model_dir": model_dir, "work": work, "training": training, "baseline": baseline,
    }  # fmt: skip


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


# --------------------------------------------------------------------------------------------------------------------
# The chain


@pytest.mark.slow
def test_container_folder_imports_only_the_core(container) -> None:
    probe = "import modelwerk, modelwerk.core.snapshot as s; print(s.__file__); import modelwerk.errors"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=container["code"], env=container["env"], capture_output=True, text=True
    )
    assert result.stdout.startswith(str(container["code"].parent / "dependencies"))
    assert "No module named 'modelwerk.errors'" in result.stderr


@pytest.mark.slow
def test_preprocess_splits_by_time_into_70_15_15(chain) -> None:
    contract, out = chain["contract"], chain["out"]
    parts = {name: read_csv(out / name / f"{name}.csv") for name in sc.SPLITS}
    total = sum(len(p) for p in parts.values())
    assert total == len(chain["source"])
    for name, share in (("train", 0.70), ("validation", 0.15), ("test", 0.15)):
        assert abs(len(parts[name]) / total - share) < 0.01, name
    # the newest rows are the test rows: the source in time order, cut where the splits say
    expected = chain["source"].sort_values([contract.timestamp, contract.asset], kind="mergesort")
    expected = expected[contract.input_schema + [contract.label]].reset_index(drop=True)
    start = 0
    for name in sc.SPLITS:
        piece = expected.iloc[start : start + len(parts[name])].reset_index(drop=True)
        pd.testing.assert_frame_equal(parts[name], piece, check_dtype=False, obj=name)
        start += len(parts[name])
    lineage = json.loads((out / "lineage" / "lineage.json").read_text())
    ranges = [lineage["split"][name] for name in sc.SPLITS]
    assert ranges[0]["last"] < ranges[1]["first"] and ranges[1]["last"] < ranges[2]["first"]
    assert [r["rows"] for r in ranges] == [len(parts[name]) for name in sc.SPLITS]


@pytest.mark.slow
def test_splits_carry_the_model_columns_and_their_schema(chain) -> None:
    contract, out = chain["contract"], chain["out"]
    for name in sc.SPLITS:
        assert read_csv(out / name / f"{name}.csv").columns.tolist() == contract.input_schema + [contract.label]
        schema = json.loads((out / name / "schema.json").read_text())
        assert schema["input_schema"] == [
        {"name": n, "type": contract.column(n).type, "required": contract.column(n).required}
        for n in contract.input_schema]
        assert (schema["label"], schema["task"]) == (contract.label, contract.task)
    personal_or_key = {*contract.personal_columns, *contract.key, contract.timestamp}
    assert not personal_or_key & set(read_csv(out / "train" / "train.csv").columns)


@pytest.mark.slow
def test_lineage_records_the_snapshot_and_the_object_versions(chain) -> None:
    manifest = chain["manifest"]
    lineage = json.loads((chain["out"] / "lineage" / "lineage.json").read_text())
    assert lineage["snapshot_id"] == manifest["snapshot_id"]
    assert [(o["key"], o["version_id"], o["sha256"]) for o in lineage["objects"]] == [
        (o["key"], o["version_id"], o["sha256"]) for o in manifest["objects"]
    ]
    assert lineage["rows_read"] == manifest["rows"]


@pytest.mark.slow
def test_model_predicts_from_the_input_schema_columns_only(chain) -> None:
    contract, model_dir = chain["contract"], chain["model_dir"]
    assert sorted(p.name for p in model_dir.iterdir()) == ["metadata.json", "model.joblib"]
    model = joblib.load(model_dir / "model.joblib")
    requests = chain["source"][contract.input_schema].head(50)
    predictions = model.predict(requests)
    assert len(predictions) == 50 and list(model.feature_names_in_) == contract.input_schema
    if contract.task == "classification":
        assert model.predict_proba(requests).shape == (50, 2)


@pytest.mark.slow
def test_metadata_is_the_serving_contract(chain) -> None:
    import sklearn

    contract = chain["contract"]
    metadata = json.loads((chain["model_dir"] / "metadata.json").read_text())
    assert metadata["input_schema"] == [
        {"name": n, "type": contract.column(n).type, "required": contract.column(n).required}
        for n in contract.input_schema]
    assert (metadata["label"], metadata["task"]) == (contract.label, contract.task)
    assert metadata["sklearn_version"] == sklearn.__version__
    assert metadata["trained_rows"] == len(read_csv(chain["out"] / "train" / "train.csv"))
    assert metadata["hyperparameters"]["max_iter"] == 200  # from SM_HPS
    if contract.task == "classification":
        assert metadata["classes"] == [0, 1] and set(metadata["validation_metrics"]) >= {"accuracy", "roc_auc"}
    else:
        assert "classes" not in metadata and set(metadata["validation_metrics"]) == {"rmse", "mae", "r2"}
    assert "validation:" in chain["training"].stdout


@pytest.mark.slow
def test_evaluation_is_a_property_file_with_sane_metrics(chain) -> None:
    evaluation = json.loads((chain["out"] / "evaluation" / "evaluation.json").read_text())
    metrics = {name: entry["value"] for name, entry in evaluation["metrics"].items()}
    assert evaluation["task"] == chain["contract"].task
    if evaluation["task"] == "classification":
        assert set(metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
        assert metrics["roc_auc"] > 0.7
    else:
        assert set(metrics) == {"rmse", "mae", "r2"}
        assert metrics["r2"] > 0.8 and 0 < metrics["mae"] <= metrics["rmse"]


@pytest.mark.slow
def test_baseline_describes_the_training_inputs(chain) -> None:
    if chain["baseline"] is None:
        pytest.skip("modelwerk/core/drift.py (build_baseline) is not in this checkout yet: no baseline to test")
    from modelwerk.core import drift

    contract, folder = chain["contract"], chain["out"] / "baseline"
    baseline = drift.Baseline.load((folder / "baseline.json").read_text(), (folder / "reference.parquet").read_bytes())
    assert sorted(baseline.features) == sorted(contract.input_schema)
    assert baseline.categorical == [n for n in contract.input_schema if contract.column(n).type == "string"]
    assert baseline.rows == len(read_csv(chain["out"] / "train" / "train.csv"))
    train, _ = sc.read_split(chain["out"] / "train", what="train")
    assert drift.compare(baseline, train[contract.input_schema]).drifted() == []


# --------------------------------------------------------------------------------------------------------------------
# Failures: non-zero exit, one line on stderr last


@pytest.fixture(scope="module")
def small_pumps():
    config = use_case("pump-health")
    frame = curated_frame(config.contract, synthetic.generate(config, rows=600, seed=5))
    return config, parquet_objects(config.contract, frame)


@pytest.mark.slow
def test_an_object_that_is_not_the_pinned_one_fails_preprocess(aws, container, small_pumps, tmp_path) -> None:
    config, objects = small_pumps
    tampered, other = list(objects)[:2]
    manifest = publish(aws["s3"], "pump-health", objects, pinned={tampered: objects[other]})
    inputs = stage_inputs(tmp_path / "input", config.folder, manifest)
    result = run_step(container, "preprocess.py", "--contract", inputs["contract"], "--manifest", inputs["manifest"],
                      "--train", tmp_path / "train", "--validation", tmp_path / "v", "--test", tmp_path / "t",
                      "--lineage", tmp_path / "l")  # fmt: skip
    assert result.returncode != 0
    assert last_stderr_line(result).startswith("error: s3 object " + tampered)
    assert "does not match the snapshot's" in last_stderr_line(result)
    assert not (tmp_path / "train").exists()


@pytest.mark.slow
def test_an_empty_snapshot_fails_preprocess(aws, container, tmp_path) -> None:
    config = use_case("pump-health")
    inputs = stage_inputs(tmp_path / "input", config.folder, publish(aws["s3"], "pump-health", {}))
    result = run_step(container, "preprocess.py", "--contract", inputs["contract"], "--manifest", inputs["manifest"],
                      "--train", tmp_path / "train", "--validation", tmp_path / "v", "--test", tmp_path / "t",
                      "--lineage", tmp_path / "l")  # fmt: skip
    assert result.returncode != 0
    assert last_stderr_line(result) == "error: the snapshot has no rows: nothing to train on"


@pytest.mark.slow
def test_an_empty_training_set_fails_training(container, tmp_path) -> None:
    contract = use_case("energy-forecast").contract
    empty = pd.DataFrame(columns=sc.model_columns(contract))
    sc.write_split(tmp_path / "train", "train", empty, sc.schema_document(contract))
    result = run_step(container, "train.py", "--train", tmp_path / "train", "--validation", tmp_path / "none",
                      "--model-dir", tmp_path / "model", "--output-data-dir", tmp_path / "data")  # fmt: skip
    assert result.returncode != 0
    assert last_stderr_line(result) == "error: the training set is empty: no rows to fit on"


@pytest.mark.slow
def test_a_missing_input_fails_with_its_name(container, tmp_path) -> None:
    result = run_step(container, "evaluate.py", "--model", tmp_path / "model", "--test", tmp_path / "test",
                      "--evaluation", tmp_path / "evaluation")  # fmt: skip
    assert result.returncode != 0
    assert last_stderr_line(result).startswith("error: test: ")
    assert "does not exist" in last_stderr_line(result)


# --------------------------------------------------------------------------------------------------------------------
# The shared module, in-process


def stamps(*hours: int) -> pd.Series:
    return pd.Series(pd.to_datetime([f"2025-01-01T{h:02d}:00:00Z" for h in hours]))


def test_split_cuts_between_instants_never_through_one() -> None:
    frame = pd.DataFrame({"t": stamps(*[h for h in range(10) for _ in range(2)]), "a": list("ab") * 10})
    splits = sc.split_by_time(frame.sample(frac=1.0, random_state=1), "t", order_by=["a"])
    assert [len(p) for p in splits.values()] == [14, 2, 4]
    assert splits["train"]["t"].max() < splits["validation"]["t"].min() <= splits["validation"]["t"].max()
    assert splits["validation"]["t"].max() < splits["test"]["t"].min()
    assert splits["train"]["a"].tolist()[:4] == ["a", "b", "a", "b"]


@pytest.mark.parametrize(
    "hours",
    [pytest.param([0, 0, 0, 0], id="one-instant"), pytest.param([0, 1], id="two-rows")],
)
def test_too_few_instants_to_split_is_an_error(hours) -> None:
    with pytest.raises(sc.StepError, match="too few to split by time"):
        sc.split_by_time(pd.DataFrame({"t": stamps(*hours)}), "t")


def test_hyperparameters_later_sources_win_and_typos_fail() -> None:
    resolved = sc.resolve_hyperparameters(
        {"max_iter": "50", "sagemaker_program": "train.py"}, {"max-iter": 60}, {"learning_rate": "0.05"}
    )
    assert resolved["max_iter"] == 60 and resolved["learning_rate"] == 0.05 and resolved["max_depth"] is None
    with pytest.raises(sc.StepError, match="unknown hyperparameter 'max_iters'"):
        sc.resolve_hyperparameters({"max_iters": 5})
    with pytest.raises(sc.StepError, match="is not a int"):
        sc.resolve_hyperparameters({"max_iter": "1.5"})
    assert sc.parse_hyperparameter_arguments(["--max_iter", "7", "--learning_rate=0.2"]) == {
        "max_iter": "7",
        "learning_rate": "0.2",
    }


def test_splits_round_trip_with_their_types(tmp_path) -> None:
    contract = use_case("pump-health").contract
    frame = pd.DataFrame({name: [1.5, 2.5] for name in contract.input_schema})
    frame["site"] = ["NA", None]  # text that pandas would take for a missing value stays text
    frame[contract.label] = [0, 1]
    sc.write_split(tmp_path, "train", frame, sc.schema_document(contract))
    typed, schema = sc.read_split(tmp_path, what="train")
    assert typed["site"].tolist()[0] == "NA" and pd.isna(typed["site"].tolist()[1])
    assert typed[contract.label].dtype == np.int64 and typed["vibration_rms"].dtype == np.float64
    assert schema["task"] == "classification"


def test_snapshot_is_read_at_the_pinned_versions() -> None:
    contract = use_case("energy-forecast").contract
    config = use_case("energy-forecast")
    frame = curated_frame(contract, synthetic.generate(config, rows=200, seed=1))
    objects = parquet_objects(contract, frame)
    with fresh_mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        manifest = publish(s3, contract.use_case, objects)
        first = next(iter(objects))
        s3.put_object(Bucket=BUCKET, Key=first, Body=b"a newer version the snapshot does not know")
        read = sc.read_snapshot(contract, manifest, sc.s3_fetcher(BUCKET, s3))
    assert len(read) == 200
    assert read.columns.tolist() == sc.model_columns(contract) + [contract.timestamp, contract.asset]


def test_a_failing_step_ends_with_one_error_line(capsys, tmp_path) -> None:
    def broken(argv):
        raise ValueError("first line\nsecond line")

    assert sc.run(broken, [], failure_file=str(tmp_path / "failure")) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "error: ValueError: first line second line"
    assert (tmp_path / "failure").read_text().strip() == "error: ValueError: first line second line"


def test_evaluation_document_has_the_property_file_shape() -> None:
    document = sc.evaluation_document({"rmse": 1.0, "mae": 0.5, "r2": 0.9}, {"task": "regression", "label": "y"}, 10)
    assert document["metrics"] == {"rmse": {"value": 1.0}, "mae": {"value": 0.5}, "r2": {"value": 0.9}}
    assert document["task"] == "regression"


def test_a_latest_pointer_is_followed_to_its_manifest(tmp_path) -> None:
    contract = use_case("energy-forecast").contract
    frame = curated_frame(contract, synthetic.generate(use_case("energy-forecast"), rows=50, seed=2))
    with fresh_mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        manifest = publish(s3, contract.use_case, parquet_objects(contract, frame))
        pointer = s3.get_object(Bucket=BUCKET, Key=f"_snapshots/{contract.use_case}/{snapshot.LATEST}")["Body"].read()
        (tmp_path / "latest.json").write_bytes(pointer)
        assert sc.resolve_manifest(tmp_path / "latest.json", BUCKET, s3) == manifest
        with pytest.raises(sc.StepError, match="--snapshot-bucket"):
            sc.resolve_manifest(tmp_path / "latest.json", None, s3)


# -- the package mirror's index URL ------------------------------------------------------------------------------------


def _package_index():
    spec = importlib.util.spec_from_file_location("package_index", STEPS / "package_index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_index_is_the_mirror_repository_with_a_short_lived_token():
    from botocore.stub import Stubber

    package_index = _package_index()
    client = boto3.client("codeartifact", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    owner = {"domain": "modelwerk-dev", "domainOwner": "123456789012"}
    with Stubber(client) as stub:
        stub.add_response("get_authorization_token", {"authorizationToken": "t0k3n"},
                          {**owner, "durationSeconds": 900})
        stub.add_response("get_repository_endpoint", {
            "repositoryEndpoint": "https://modelwerk-dev-123456789012.d.codeartifact.eu-central-1.amazonaws.com/"
                                  "pypi/python/"}, {**owner, "repository": "python", "format": "pypi"})
        url = package_index.index_url(
            "arn:aws:codeartifact:eu-central-1:123456789012:repository/modelwerk-dev/python", client)
    assert url == ("https://aws:t0k3n@modelwerk-dev-123456789012.d.codeartifact.eu-central-1.amazonaws.com/"
                   "pypi/python/simple/")


@pytest.mark.parametrize("arn", ["", "python", "arn:aws:codeartifact:eu-central-1:123456789012:domain/modelwerk-dev",
                                 "arn:aws:codeartifact:eu-central-1:12345:repository/modelwerk-dev/python"])
def test_a_missing_or_malformed_mirror_arn_is_one_line_and_exit_2(arn, monkeypatch, capsys):
    package_index = _package_index()
    monkeypatch.setenv("CA_REPOSITORY_ARN", arn)
    assert package_index.main([]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1 and "CodeArtifact repository ARN" in out.err
