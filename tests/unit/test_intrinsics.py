"""The local deployer's CloudFormation intrinsics: resolution, reference discovery and literal substitution."""

import pytest

from modelwerk.local.intrinsics import Resolver, Unresolvable, references, substitute


def _resolver(deployed=None):
    deployed = deployed or {("Bucket", None): "my-bucket", ("Key", "Arn"): "arn:aws:kms:eu-central-1:1:key/k"}

    def lookup(logical, attribute):
        try:
            return deployed[(logical, attribute)]
        except KeyError:
            raise Unresolvable(logical) from None

    return Resolver(account="123456789012", region="eu-central-1", stack_name="dev-DataLake",
                    parameters={"Env": "dev"}, lookup=lookup)


@pytest.mark.parametrize(
    "value, expected",
    [
        pytest.param({"Ref": "Bucket"}, "my-bucket", id="ref"),
        pytest.param({"Ref": "AWS::Region"}, "eu-central-1", id="pseudo-parameter"),
        pytest.param({"Ref": "Env"}, "dev", id="template-parameter"),
        pytest.param({"Fn::GetAtt": ["Key", "Arn"]}, "arn:aws:kms:eu-central-1:1:key/k", id="getatt-list"),
        pytest.param({"Fn::GetAtt": "Key.Arn"}, "arn:aws:kms:eu-central-1:1:key/k", id="getatt-string"),
        pytest.param({"Fn::Join": ["", ["arn:aws:s3:::", {"Ref": "Bucket"}, "/*"]]}, "arn:aws:s3:::my-bucket/*", id="join"),
        pytest.param({"Fn::Sub": "s3://${Bucket}/${AWS::AccountId}"}, "s3://my-bucket/123456789012", id="sub"),
        pytest.param({"Fn::Sub": ["${X}-${Key.Arn}", {"X": {"Ref": "Env"}}]}, "dev-arn:aws:kms:eu-central-1:1:key/k", id="sub-with-variables"),
        pytest.param({"Fn::Select": [1, {"Fn::Split": ["/", "a/b/c"]}]}, "b", id="select-split"),
    ],
)
def test_resolver_resolves_intrinsics(value, expected):
    assert _resolver().resolve(value) == expected


def test_resolver_drops_novalue_from_lists():
    assert _resolver().resolve(["a", {"Ref": "AWS::NoValue"}]) == ["a"]


def test_resolver_raises_for_undeployed_resources():
    with pytest.raises(Unresolvable):
        _resolver().resolve({"Ref": "Missing"})


def test_references_finds_every_kind():
    value = {"A": {"Ref": "One"}, "B": [{"Fn::GetAtt": ["Two", "Arn"]}], "C": {"Fn::Sub": "${Three.Arn}-${AWS::Region}"},
             "D": {"Fn::Sub": ["${Local}-${Four}", {"Local": {"Ref": "Five"}}]}}
    assert references(value) == {"One", "Two", "Three", "Four", "Five"}


def test_substitute_replaces_only_what_replace_knows():
    value = {"Env": {"SECRET": {"Ref": "Secret"}, "BUCKET": {"Ref": "Bucket"}},
             "Arn": {"Fn::Sub": "${Secret}:${Bucket}"}}
    out = substitute(value, lambda logical, attribute: "arn:secret" if logical == "Secret" else None)
    assert out == {"Env": {"SECRET": "arn:secret", "BUCKET": {"Ref": "Bucket"}}, "Arn": {"Fn::Sub": "arn:secret:${Bucket}"}}
