"""The training pipeline's definition JSON: built offline for every use case, wired step to step, stable.

The definition is what the CDK app deploys and what the local executor runs, so these tests read the JSON itself:
the steps and their types, the parameters, every property reference (``Get``) and where it points, the quality gate,
the registration. One test builds it in a separate process with no AWS variable, an empty home directory and no
network.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelwerk.core.contract import Contract

ROOT = Path(__file__).resolve().parents[2]


def _load(file: str, name: str):
    """A module of ``sagemaker_pipelines``, loaded by path: importing ``sagemaker_pipelines`` as a package would leave
    it in ``sys.modules``, and other tests check that the library never imports that package."""
    path = ROOT / "sagemaker_pipelines" / file
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pl = _load("pipeline.py", "pipeline_definition_builder")
archive = _load("code_archive.py", "pipeline_code_archive")
REGION = "eu-central-1"
ACCOUNT = "123456789012"
REGISTRY = "111111111111"
ARTIFACTS = f"modelwerk-dev-pipeline-artifacts-{ACCOUNT}-{REGION}"
CURATED = f"modelwerk-dev-curated-{ACCOUNT}-{REGION}"
ASSETS = "cdk-hnb659fds-assets-123456789012-eu-central-1"
CODE_URI = f"s3://{ASSETS}/3f2a9c.gz"
CONTRACT_URI = f"s3://{ASSETS}/9bd0e1.json"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/modelwerk-steps:1.0"
CONTRACTS = {
    c.use_case: c for c in (Contract.load(p) for p in sorted(ROOT.glob("sagemaker_pipelines/*/contract.json")))
}
#: A metric per task and the comparison its default direction gives.
GATES = {
    "classification": [("roc_auc", "GreaterThanOrEqualTo"), ("f1", "GreaterThanOrEqualTo")],
    "regression": [("rmse", "LessThanOrEqualTo"), ("r2", "GreaterThanOrEqualTo")],
}
THRESHOLDS = {"roc_auc": 0.75, "f1": 0.5, "rmse": 12.5, "r2": 0.6}
SCRIPT_OUTPUTS = {"Preprocess": ["train", "validation", "test", "lineage"], "Evaluate": ["evaluation"],
                  "Baseline": ["baseline"]}


def arguments(use_case: str = "pump-health", **overrides: Any) -> dict[str, Any]:
    metric = GATES[CONTRACTS[use_case].task if use_case in CONTRACTS else "classification"][0][0]
    values = {
        "use_case": use_case,
        "role_arn": f"arn:aws:iam::{ACCOUNT}:role/modelwerk-dev-pipeline-execution",
        "region": REGION,
        "artifact_bucket": ARTIFACTS,
        "code_uri": CODE_URI,
        "contract_uri": CONTRACT_URI,
        "image_uri": IMAGE,
        "model_package_group_arn": f"arn:aws:sagemaker:{REGION}:{REGISTRY}:model-package-group/modelwerk-{use_case}",
        "quality_metric": metric,
        "quality_threshold": THRESHOLDS[metric],
        "git_commit": "b009df3c0ffee",
        "curated_bucket": CURATED,
    }
    return {**values, **overrides}


_BUILT: dict[str, str] = {}


def build(**kwargs: Any) -> str:
    """The definition text for these arguments (built once per distinct arguments: a build takes about a second)."""
    key = json.dumps(kwargs, sort_keys=True)
    if key not in _BUILT:
        _BUILT[key] = pl.build_definition(**kwargs)
    return _BUILT[key]


def definition(use_case: str = "pump-health", **overrides: Any) -> dict[str, Any]:
    return json.loads(build(**arguments(use_case, **overrides)))


def steps(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every step by name, the condition's branches included."""
    found: dict[str, dict[str, Any]] = {}
    for step in doc["Steps"]:
        found[step["Name"]] = step
        if step["Type"] == "Condition":
            for branch in ("IfSteps", "ElseSteps"):
                found.update({s["Name"]: s for s in step["Arguments"][branch]})
    return found


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def gets(node: Any) -> list[str]:
    return [n["Get"] for n in walk(node) if isinstance(n, dict) and set(n) == {"Get"}]


def by_name(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


def output_ref(step: str, output: str) -> dict[str, str]:
    return {"Get": f"Steps.{step}.ProcessingOutputConfig.Outputs['{output}'].S3Output.S3Uri"}


# -- shape -------------------------------------------------------------------------------------------------------------


def test_the_definition_parses_with_its_steps_in_order_and_types():
    doc = definition()
    assert doc["Version"] == "2020-12-01"
    assert [(s["Name"], s["Type"]) for s in doc["Steps"]] == [
        ("Preprocess", "Processing"),
        ("Train", "Training"),
        ("Evaluate", "Processing"),
        ("Baseline", "Processing"),
        ("QualityGate", "Condition"),
    ]
    gate = doc["Steps"][-1]["Arguments"]
    assert [(s["Name"], s["Type"]) for s in gate["IfSteps"]] == [("Register", "RegisterModel")]
    assert [(s["Name"], s["Type"]) for s in gate["ElseSteps"]] == [("QualityGateFailed", "Fail")]
    assert doc["Steps"][-1]["DependsOn"] == ["Baseline"]
    assert doc["PipelineExperimentConfig"] is None


def test_parameters_and_their_defaults():
    doc = definition(processing_instance_type="ml.m5.xlarge", training_instance_type="ml.c5.2xlarge")
    assert doc["Parameters"] == [
        {"Name": "SnapshotId", "Type": "String", "DefaultValue": "latest"},
        {"Name": "ProcessingInstanceType", "Type": "String", "DefaultValue": "ml.m5.xlarge"},
        {"Name": "TrainingInstanceType", "Type": "String", "DefaultValue": "ml.c5.2xlarge"},
        {"Name": "QualityThreshold", "Type": "Float", "DefaultValue": 0.75},
    ]
    assert definition()["Parameters"][1]["DefaultValue"] == "ml.m5.large"
    found = steps(doc)
    for name in ("Preprocess", "Evaluate", "Baseline"):
        cluster = found[name]["Arguments"]["ProcessingResources"]["ClusterConfig"]
        assert cluster["InstanceType"] == {"Get": "Parameters.ProcessingInstanceType"}
    assert found["Train"]["Arguments"]["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.TrainingInstanceType"}


def test_every_reference_names_a_parameter_an_execution_variable_or_an_earlier_steps_property():
    doc = definition()
    found = steps(doc)
    parameters = {p["Name"] for p in doc["Parameters"]}
    for name, step in found.items():
        for ref in gets(step):
            kind, _, rest = ref.partition(".")
            if kind == "Parameters":
                assert rest in parameters, (name, ref)
            elif kind == "Execution":
                assert rest in ("PipelineExecutionId", "PipelineExecutionArn"), (name, ref)
            else:
                assert kind == "Steps", (name, ref)
                target = rest.split(".")[0]
                assert target in found and target != name, (name, ref)
                if ".ProcessingOutputConfig.Outputs['" in ref:
                    output = ref.split("Outputs['")[1].split("']")[0]
                    declared = found[target]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
                    assert output in by_name(declared, "OutputName"), (name, ref)
                elif ".PropertyFiles." in ref:
                    files = by_name(found[target].get("PropertyFiles", []), "PropertyFileName")
                    assert ref.rsplit(".", 1)[1] in files, (name, ref)
                else:
                    assert ref == "Steps.Train.ModelArtifacts.S3ModelArtifacts", (name, ref)


# -- the steps ---------------------------------------------------------------------------------------------------------


def test_processing_steps_unpack_the_code_archive_and_run_their_script_with_the_channel_names_it_reads():
    found = steps(definition())
    for name, script in (("Preprocess", "preprocess.py"), ("Evaluate", "evaluate.py"), ("Baseline", "baseline.py")):
        args = found[name]["Arguments"]
        app = args["AppSpecification"]
        assert app["ImageUri"] == IMAGE
        shell, flag, command, program = app["ContainerEntrypoint"]
        assert (shell, flag, program) == ("/bin/sh", "-c", script)
        assert 'tar -xzf "$archive" -C "/opt/ml/code"' in command
        assert command.endswith(f'exec python3 "/opt/ml/code/steps/{script}" "$@"')
        assert args["Environment"] == {"PYTHONPATH": "/opt/ml/code"}
        assert args["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/modelwerk-dev-pipeline-execution"
        inputs = by_name(args["ProcessingInputs"], "InputName")
        assert inputs["code"]["S3Input"]["S3Uri"] == CODE_URI
        for input_name, item in inputs.items():
            assert item["S3Input"]["LocalPath"] == f"/opt/ml/processing/input/{input_name}"
        outputs = args["ProcessingOutputConfig"]["Outputs"]
        assert [o["OutputName"] for o in outputs] == SCRIPT_OUTPUTS[name]
        for output in outputs:
            assert output["S3Output"]["LocalPath"] == f"/opt/ml/processing/output/{output['OutputName']}"
            assert output["S3Output"]["S3Uri"] == {
                "Std:Join": {
                    "On": "/",
                    "Values": [
                        f"s3://{ARTIFACTS}/pipelines/pump-health",
                        {"Get": "Execution.PipelineExecutionId"},
                        name.lower(),
                        output["OutputName"],
                    ],
                }
            }


def test_steps_that_load_models_install_the_pinned_frameworks_before_their_script():
    found = steps(definition())
    install = ('python3 -m pip install --no-input --disable-pip-version-check --quiet '
               '-r "/opt/ml/code/requirements.txt"; ')
    for name in ("Evaluate", "Baseline"):
        command = found[name]["Arguments"]["AppSpecification"]["ContainerEntrypoint"][2]
        assert command.index("tar -xzf") < command.index(install) < command.index("exec python3")
    assert "pip install" not in found["Preprocess"]["Arguments"]["AppSpecification"]["ContainerEntrypoint"][2]


def test_with_a_package_mirror_every_job_names_it_and_the_install_goes_through_it():
    mirror = "arn:aws:codeartifact:eu-central-1:123456789012:repository/modelwerk-dev/python"
    found = steps(definition(package_repository_arn=mirror))
    for name in ("Preprocess", "Evaluate", "Baseline", "Train"):
        assert found[name]["Arguments"]["Environment"]["CA_REPOSITORY_ARN"] == mirror
    command = found["Evaluate"]["Arguments"]["AppSpecification"]["ContainerEntrypoint"][2]
    index = 'PIP_INDEX_URL="$(python3 "/opt/ml/code/steps/package_index.py")"'
    assert command.index("tar -xzf") < command.index(index) < command.index("pip install")
    assert "${" not in command  # it passes through Fn::Sub untouched


def test_a_malformed_mirror_arn_stops_the_job_before_pip_with_one_line(tmp_path):
    """The processing entry point, run by sh with its /opt/ml paths moved under tmp_path."""
    command = steps(definition())["Evaluate"]["Arguments"]["AppSpecification"]["ContainerEntrypoint"][2]
    archive_dir, code_dir = tmp_path / "input" / "code", tmp_path / "code"
    archive_dir.mkdir(parents=True)
    with tarfile.open(archive_dir / "sourcedir.tar.gz", "w:gz") as tar:
        tar.add(ROOT / "sagemaker_pipelines" / "steps" / "package_index.py", arcname="steps/package_index.py")
    local = command.replace("/opt/ml/processing/input/code", str(archive_dir)).replace("/opt/ml/code", str(code_dir))
    result = subprocess.run(["/bin/sh", "-c", local, "evaluate.py"], capture_output=True, text=True, timeout=60,
                            env={"PATH": os.environ["PATH"], "CA_REPOSITORY_ARN": "arn:aws:s3:::not-a-repository"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "package_index: CA_REPOSITORY_ARN='arn:aws:s3:::not-a-repository' is not a CodeArtifact repository ARN "
        "(arn:aws:codeartifact:<region>:<account>:repository/<domain>/<repository>)"]


def test_the_code_archive_ships_frameworks_txt_as_its_requirements_and_stays_byte_stable(tmp_path):
    first = archive.build(tmp_path / "first.tar.gz")
    with tarfile.open(first) as tar:
        assert tar.extractfile("requirements.txt").read() == (ROOT / "frameworks.txt").read_bytes()
        assert "steps/train.py" in tar.getnames()
    assert archive.build(tmp_path / "again.tar.gz").read_bytes() == first.read_bytes()


@pytest.mark.parametrize("content,error,message", [
    pytest.param("scikit-learn>=1.9\n", ValueError, "not an exact pin", id="range"),
    pytest.param("scikit-learn\n", ValueError, "not an exact pin", id="unpinned"),
    pytest.param("# nothing pinned\n", ValueError, "pins no framework", id="empty"),
    pytest.param(None, FileNotFoundError, "frameworks.txt not found", id="missing"),
])
def test_a_frameworks_file_without_exact_pins_is_refused(tmp_path, content, error, message):
    if content is not None:
        (tmp_path / "frameworks.txt").write_text(content)
    with pytest.raises(error, match=message):
        archive.framework_pins(tmp_path)


def test_the_pins_are_read_with_their_comments_ignored(tmp_path):
    (tmp_path / "frameworks.txt").write_text("# header\nscikit-learn==1.9.1  # the model framework\n\n"
                                             "xgboost-cpu==3.2.0\n")
    assert archive.framework_pins(tmp_path) == {"scikit-learn": "1.9.1", "xgboost-cpu": "3.2.0"}


def test_preprocess_reads_the_contract_and_the_manifest_that_the_snapshot_id_names():
    pre = steps(definition())["Preprocess"]
    inputs = by_name(pre["Arguments"]["ProcessingInputs"], "InputName")
    assert list(inputs) == ["code", "contract", "manifest"]
    assert inputs["contract"]["S3Input"]["S3Uri"] == CONTRACT_URI
    assert inputs["manifest"]["S3Input"]["S3Uri"] == {
        "Std:Join": {
            "On": "",
            "Values": [f"s3://{CURATED}/_snapshots/pump-health/", {"Get": "Parameters.SnapshotId"}, ".json"],
        }
    }
    assert pre["Arguments"]["AppSpecification"]["ContainerArguments"] == [
        "--snapshot-id", {"Get": "Parameters.SnapshotId"}, "--snapshot-bucket", CURATED,
    ]
    assert pre["PropertyFiles"] == [
        {"PropertyFileName": "LineageReport", "OutputName": "lineage", "FilePath": "lineage.json"}
    ]
    explicit = steps(definition(contract_uri="s3://elsewhere/pump-health/contract.json"))["Preprocess"]
    given = by_name(explicit["Arguments"]["ProcessingInputs"], "InputName")["contract"]["S3Input"]["S3Uri"]
    assert given == "s3://elsewhere/pump-health/contract.json"


def test_train_runs_script_mode_on_preprocess_outputs():
    args = steps(definition(hyperparameters={"max_iter": 500, "learning_rate": 0.05}))["Train"]["Arguments"]
    assert args["AlgorithmSpecification"] == {"TrainingInputMode": "File", "TrainingImage": IMAGE}
    assert args["HyperParameters"] == {
        "max_iter": "500",
        "learning_rate": "0.05",
        "sagemaker_program": "steps/train.py",
        "sagemaker_submit_directory": CODE_URI,
    }
    assert args["Environment"] == {"PYTHONPATH": "/opt/ml/code"}
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in args["InputDataConfig"]}
    assert channels == {
        "train": output_ref("Preprocess", "train"),
        "validation": output_ref("Preprocess", "validation"),
    }
    assert args["OutputDataConfig"]["S3OutputPath"] == {
        "Std:Join": {
            "On": "/",
            "Values": [f"s3://{ARTIFACTS}/pipelines/pump-health", {"Get": "Execution.PipelineExecutionId"}, "train"],
        }
    }
    assert args["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert {"Key": "modelwerk:use-case", "Value": "pump-health"} in args["Tags"]
    assert "TrainingJobName" not in args  # the service names each execution's job


def test_evaluate_scores_the_trained_model_on_the_test_split_and_baseline_reads_the_train_split():
    found = steps(definition())
    evaluate = found["Evaluate"]
    inputs = by_name(evaluate["Arguments"]["ProcessingInputs"], "InputName")
    assert inputs["model"]["S3Input"]["S3Uri"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert inputs["test"]["S3Input"]["S3Uri"] == output_ref("Preprocess", "test")
    assert evaluate["PropertyFiles"] == [
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    ]
    baseline = by_name(found["Baseline"]["Arguments"]["ProcessingInputs"], "InputName")
    assert list(baseline) == ["code", "train"]
    assert baseline["train"]["S3Input"]["S3Uri"] == output_ref("Preprocess", "train")


# -- the gate and the registration -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "use_case,metric,comparison",
    [(u, m, c) for u, contract in CONTRACTS.items() for m, c in GATES[contract.task]],
)
def test_the_gate_compares_the_metric_of_evaluation_json_with_the_threshold_parameter(use_case, metric, comparison):
    doc = definition(use_case, quality_metric=metric, quality_threshold=THRESHOLDS[metric])
    gate = doc["Steps"][-1]["Arguments"]
    json_get = {
        "Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
            "Path": f"metrics.{metric}.value",
        }
    }
    assert gate["Conditions"] == [
        {"Type": comparison, "LeftValue": json_get, "RightValue": {"Get": "Parameters.QualityThreshold"}}
    ]
    assert doc["Parameters"][-1] == {"Name": "QualityThreshold", "Type": "Float", "DefaultValue": THRESHOLDS[metric]}
    message = gate["ElseSteps"][0]["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert json_get in message and {"Get": "Parameters.QualityThreshold"} in message
    assert message[0] == f"{use_case}: {metric} "
    register = gate["IfSteps"][0]["Arguments"]
    assert register["ModelPackageGroupName"].endswith(f"model-package-group/modelwerk-{use_case}")


def test_the_direction_can_be_given():
    gate = definition("energy-forecast", quality_metric="mae", quality_threshold=3.0)["Steps"][-1]["Arguments"]
    assert gate["Conditions"][0]["Type"] == "LessThanOrEqualTo"
    forced = definition("energy-forecast", quality_metric="rmse", quality_threshold=3.0, quality_direction=">=")
    assert forced["Steps"][-1]["Arguments"]["Conditions"][0]["Type"] == "GreaterThanOrEqualTo"


def test_register_creates_a_pending_model_package_in_the_registry_group_with_metrics_baseline_and_lineage():
    register = steps(definition())["Register"]["Arguments"]
    assert register["ModelPackageGroupName"] == (
        f"arn:aws:sagemaker:{REGION}:{REGISTRY}:model-package-group/modelwerk-pump-health"
    )
    assert register["ModelApprovalStatus"] == "PendingManualApproval"
    container = register["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == IMAGE
    assert container["ModelDataUrl"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    evaluation = {"Std:Join": {"On": "/", "Values": [output_ref("Evaluate", "evaluation"), "evaluation.json"]}}
    baseline = {"Std:Join": {"On": "/", "Values": [output_ref("Baseline", "baseline"), "baseline.json"]}}
    lineage = {"Std:Join": {"On": "/", "Values": [output_ref("Preprocess", "lineage"), "lineage.json"]}}
    assert register["ModelMetrics"]["ModelQuality"]["Statistics"] == {
        "ContentType": "application/json", "S3Uri": evaluation,
    }
    assert register["DriftCheckBaselines"]["ModelDataQuality"]["Statistics"] == {
        "ContentType": "application/json", "S3Uri": baseline,
    }
    assert register["CustomerMetadataProperties"] == {
        "use_case": "pump-health",
        "git_commit": "b009df3c0ffee",
        "snapshot_id": {
            "Std:JsonGet": {
                "PropertyFile": {"Get": "Steps.Preprocess.PropertyFiles.LineageReport"},
                "Path": "snapshot_id",
            }
        },
        "pipeline_execution_arn": {"Get": "Execution.PipelineExecutionArn"},
        "quality_metric": "roc_auc",
        "evaluation_uri": evaluation,
        "baseline_uri": baseline,
        "lineage_uri": lineage,
    }
    serving = steps(definition(serving_image_uri=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/modelwerk-serving:2"))
    image = serving["Register"]["Arguments"]["InferenceSpecification"]["Containers"][0]["Image"]
    assert image.endswith("modelwerk-serving:2")


# -- nothing local, nothing random -----------------------------------------------------------------------------------


@pytest.mark.parametrize("use_case", sorted(CONTRACTS))
def test_no_local_file_or_path_of_this_machine_appears(use_case):
    text = build(**arguments(use_case))
    strings = [n for n in walk(json.loads(text)) if isinstance(n, str)]
    assert "file:" not in text
    for forbidden in {str(ROOT), str(Path.home()), "/tmp/", os.getcwd()} - {"/"}:
        assert forbidden not in text
    for value in strings:
        if value.startswith("/") and value != "/":  # "/" alone is a Std:Join separator
            assert value.startswith("/opt/ml/") or value == "/bin/sh", value  # container paths only
        if "://" in value:
            assert value.startswith("s3://"), value


def test_equal_inputs_give_the_same_json():
    first = pl.build_definition(**arguments())
    again = pl.build_definition(**dict(reversed(list(arguments().items()))))
    assert first == again
    assert first != build(**arguments(git_commit="another"))


def test_fn_sub_placeholders_in_s3_uris_are_carried_verbatim():
    """A deploy-time location (a CDK asset) reaches the template as ``${Name}``, which Fn::Sub replaces; the SDK
    cannot parse a CDK token (``${Token[...]}``) in a URI, so such a token is refused up front."""
    placeholder = "s3://${AssetBucket}/${CodeKey}"
    doc = definition(code_uri=placeholder, contract_uri="s3://${AssetBucket}/${ContractKey}")
    code = by_name(steps(doc)["Preprocess"]["Arguments"]["ProcessingInputs"], "InputName")["code"]
    assert code["S3Input"]["S3Uri"] == placeholder
    assert steps(doc)["Train"]["Arguments"]["HyperParameters"]["sagemaker_submit_directory"] == placeholder
    contract = by_name(steps(doc)["Preprocess"]["Arguments"]["ProcessingInputs"], "InputName")["contract"]
    assert contract["S3Input"]["S3Uri"] == "s3://${AssetBucket}/${ContractKey}"
    with pytest.raises(ValueError, match="brackets"):
        pl.build_definition(**arguments(code_uri="s3://${Token[TOKEN.231]}/pipeline-code/"))


def test_builds_in_a_fresh_process_without_aws_variables_credentials_or_network(tmp_path):
    """The CDK app's situation at synth: no AWS_* variable, no ~/.aws, no network. Sockets raise in the child; no
    telemetry thread may start; the environment is as it was afterwards; the JSON equals the in-process one."""
    script = textwrap.dedent(
        f"""
        import json, os, socket, sys, threading

        def no_network(*args, **kwargs):
            raise OSError("network is not allowed while building the definition")

        socket.socket.connect = no_network
        socket.socket.connect_ex = no_network
        socket.getaddrinfo = no_network
        socket.create_connection = no_network
        started = []
        original_start = threading.Thread.start
        def start(self):
            started.append(self.name)
            return original_start(self)
        threading.Thread.start = start

        from sagemaker_pipelines.pipeline import build_definition
        text = build_definition(**json.loads(sys.argv[1]))
        assert "AWS_DEFAULT_REGION" not in os.environ, "the build left its region behind"
        assert "SAGEMAKER_VALIDATE_ROLE" not in os.environ, "the build left its role switch behind"
        assert not [n for n in started if "telemetry" in n], started
        sys.stdout.write(text)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT), NO_PROXY="*")
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(arguments())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == build(**arguments())


def test_the_build_session_refuses_every_aws_call():
    build(**arguments())  # the SDK is imported
    session = pl._offline_session(REGION, ARTIFACTS)
    assert session.default_bucket() == ARTIFACTS
    assert session.sagemaker_config == {}
    with pytest.raises(pl.OfflineCallError, match="s3.ListBuckets"):
        session.boto_session.client("s3").list_buckets()
    with pytest.raises(pl.OfflineCallError, match="sagemaker.DescribeModelPackageGroup"):
        session.sagemaker_client.describe_model_package_group(ModelPackageGroupName="x")


def test_the_environment_and_logging_are_left_as_they_were(monkeypatch):
    import logging

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.delenv("SAGEMAKER_VALIDATE_ROLE", raising=False)
    root = (logging.root.level, list(logging.root.handlers))
    pl.build_definition(**arguments(git_commit="environment-check"))
    assert os.environ["AWS_DEFAULT_REGION"] == "us-west-2"
    assert "SAGEMAKER_VALIDATE_ROLE" not in os.environ
    assert (logging.root.level, list(logging.root.handlers)) == root


# -- wrong arguments fail before the SDK is touched --------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"role_arn": "modelwerk-dev-pipeline-execution"}, "role_arn"),
        ({"role_arn": "${Token[TOKEN.12]}"}, "full IAM role ARN"),
        ({"model_package_group_arn": "modelwerk-pump-health"}, "model_package_group_arn"),
        ({"code_uri": "s3://bucket/code/"}, "one object"),
        ({"code_uri": "/work/main/sagemaker_pipelines"}, "s3:// URI"),
        ({"contract_uri": "file:///work/main/contract.json"}, "contract_uri"),
        ({"quality_metric": "auc"}, "quality_metric"),
        ({"quality_direction": ">"}, "quality_direction"),
        ({"quality_threshold": float("nan")}, "quality_threshold"),
        ({"region": ""}, "region"),
        ({"use_case": "Pump Health"}, "use_case"),
        ({"artifact_bucket": "s3://bucket"}, "artifact_bucket"),
        ({"git_commit": ""}, "git_commit"),
        ({"training_instance_type": "m5.large"}, "training_instance_type"),
        ({"hyperparameters": {"sagemaker_program": "x.py"}}, "reserved"),
    ],
)
def test_wrong_arguments_are_refused_with_the_reason(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        pl.build_definition(**arguments(**overrides))
