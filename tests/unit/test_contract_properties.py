"""Contracts survive publication: whatever a contract says (``min: 0`` included) arrives unchanged where it is used.

The data lake stack publishes ``contract.to_json()`` as an SSM String parameter (``PlatformParameters``); the
ingestion function reads it back with ``landing.load_contract``. These properties generate contracts of every shape
and send them along that path: the construct's synthesized template, SSM (moto), the function's reader.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto_fresh import fresh_mock_aws

from modelwerk.core.contract import COLUMN_TYPES, Contract, ContractError

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/modelwerk/dev/use-cases/"

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
_NUMBERS = st.one_of(
    st.sampled_from([0, 0.0, -0.0, 1, -1, 0.5]),
    st.integers(-(10**6), 10**6),
    st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False),
)
_PATTERNS = st.sampled_from(["", "^P-[0-9]{3}$", "[a-z]+", ".*", "(PV|WP)-[0-9]{2}", "ä+ö?"])


@st.composite
def columns(draw: Any, name: str, column_type: str, required: bool | None = None) -> dict[str, Any]:
    """A column document: only the fields its type allows, each present or absent, with any value it may hold."""
    doc: dict[str, Any] = {"name": name, "type": column_type}
    if required is not None:
        doc["required"] = required
    elif draw(st.booleans()):
        doc["required"] = draw(st.booleans())
    if column_type in ("integer", "double"):
        bounds = sorted(draw(st.lists(_NUMBERS, min_size=2, max_size=2)))
        if draw(st.booleans()):
            doc["min"] = bounds[0]
        if draw(st.booleans()):
            doc["max"] = bounds[1]
    if column_type == "string":
        if draw(st.booleans()):
            doc["allowed"] = draw(st.lists(_TEXT, max_size=4))
        if draw(st.booleans()):
            doc["pattern"] = draw(_PATTERNS)
        if draw(st.booleans()):
            doc["personal"] = draw(st.booleans())
    if draw(st.booleans()):
        doc["description"] = draw(_TEXT)
    return doc


@st.composite
def contracts(draw: Any) -> Contract:
    names = draw(st.lists(_NAMES, min_size=4, max_size=9, unique=True))
    timestamp, asset, label, *others = names
    types = {name: draw(st.sampled_from(COLUMN_TYPES)) for name in others}
    declared = [
        draw(columns(timestamp, "timestamp", required=True)),
        draw(columns(asset, "string", required=True)),
        draw(columns(label, draw(st.sampled_from(["integer", "double"])))),
        *[draw(columns(name, types[name])) for name in others],
    ]
    declared = draw(st.permutations(declared))
    doc: dict[str, Any] = {
        "use_case": draw(st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True)),
        "task": draw(st.sampled_from(["classification", "regression"])),
        "label": label,
        "key": [asset, timestamp],
        "timestamp": timestamp,
        "asset": asset,
        "columns": declared,
    }
    if draw(st.booleans()):
        doc["unknown_columns"] = draw(st.sampled_from(["strict", "lenient"]))
    numeric = [name for name in others if types[name] in ("integer", "double")]
    if numeric and draw(st.booleans()):
        doc["rolling"] = {
            "window": draw(st.sampled_from(["30min", "6h", "1d"])),
            "columns": draw(st.lists(st.sampled_from(numeric), min_size=1, unique=True)),
            "stats": draw(st.lists(st.sampled_from(["mean", "std", "min", "max"]), min_size=1, unique=True)),
        }
    if draw(st.booleans()):
        doc["description"] = draw(_TEXT)
    return Contract.from_dict(doc)


def published_value(contract: Contract) -> str:
    """The parameter value the data lake's template holds for this contract (the construct the stack uses)."""
    from aws_cdk import App, Stack
    from aws_cdk.assertions import Template

    from cdk_constructs.parameters import PlatformParameters

    stack = Stack(App(), "Lake")
    PlatformParameters(stack, "Parameters", prefix=PREFIX, values={f"{contract.use_case}/contract": contract.to_json()})
    (resource,) = Template.from_stack(stack).find_resources("AWS::SSM::Parameter").values()
    return resource["Properties"]["Value"]


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The function's contract reader (``lambdas/ingest/landing.py``), against moto's SSM."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"AWS_DEFAULT_REGION": "eu-central-1", "AWS_ACCESS_KEY_ID": "testing",
                            "AWS_SECRET_ACCESS_KEY": "testing", "RAW_BUCKET": "raw", "QUARANTINE_BUCKET": "quarantine",
                            "CONTRACT_PARAMETER_PREFIX": PREFIX, "PSEUDONYMIZATION_SECRET_ARN": "arn:secret"}.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        module = importlib.import_module("lambdas.ingest.landing")
        with fresh_mock_aws():
            yield module
        module.reset()


@settings(max_examples=300, deadline=None)
@given(contract=contracts())
def test_a_contract_reads_back_from_its_published_json_unchanged(contract: Contract) -> None:
    assert Contract.from_json(contract.to_json()) == contract


@settings(max_examples=300, deadline=None)
@given(contract=contracts())
def test_every_field_a_contract_document_states_is_in_its_published_json(contract: Contract) -> None:
    published = json.loads(contract.to_json())

    for column, document in zip(contract.columns, published["columns"]):
        for field in ("min", "max", "allowed", "pattern", "required", "personal"):
            value = getattr(column, field)
            if value is not None and value is not False:
                assert document[field] == (list(value) if field == "allowed" else value), (column.name, field)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contract=contracts())
def test_what_the_stack_publishes_is_what_the_function_reads(landing: Any, contract: Contract) -> None:
    landing.reset()
    name = f"{PREFIX}{contract.use_case}/contract"
    boto3.client("ssm").put_parameter(Name=name, Value=published_value(contract), Type="String", Overwrite=True)

    assert landing.load_contract(contract.use_case) == contract


@pytest.mark.parametrize("folder", ["pump_health", "energy_forecast"])
def test_the_zero_bounds_of_the_projects_contracts_are_published(folder: str) -> None:
    document = json.loads((ROOT / "sagemaker_pipelines" / folder / "contract.json").read_text())
    published = json.loads(Contract.from_dict(document).to_json())

    for written, sent in zip(document["columns"], published["columns"]):
        assert {k: v for k, v in sent.items() if k in written} == written
    assert [c["name"] for c in document["columns"] if c.get("min") == 0]  # the case the issue found


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min": True}, "min must be a finite number"),
        ({"max": float("nan")}, "max must be a finite number"),
        ({"min": "0"}, "min must be a finite number"),
        ({"min": 2, "max": 1}, "min 2 is above max 1"),
        ({"required": "yes"}, "required must be true or false"),
    ],
)
def test_a_bound_or_flag_of_the_wrong_kind_is_refused_where_the_contract_is_read(change: dict, message: str) -> None:
    column = {"name": "y", "type": "double", **change}
    with pytest.raises(ContractError, match=message):
        Contract.from_dict({"use_case": "u", "task": "regression", "label": "y", "key": ["t"], "timestamp": "t",
                            "asset": "t", "columns": [{"name": "t", "type": "timestamp", "required": True}, column]})
