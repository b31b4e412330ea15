"""The embedded CodeBuild reads a buildspec as CodeBuild does, and refuses one it cannot run before anything runs."""

import doctest
import json

import pytest

from modelwerk.local.services.codebuild import buildspec
from modelwerk.local.services.codebuild.buildspec import BuildspecError, looks_inline, parse


def test_the_module_s_example_holds():
    assert doctest.testmod(buildspec, raise_on_error=False).failed == 0


def test_the_promotion_gate_s_buildspec_reads_as_written():
    from cdk_constructs.promotion_pipeline import gate_buildspec

    spec = parse(json.dumps(gate_buildspec(["boto3==1.43.117"])))

    assert spec.exported_variables == ("GATE_SUMMARY", "GATE_REPORT_URL")
    assert spec.phase("INSTALL").runtime_versions == {"python": "3.12"}
    assert len(spec.phase("POST_BUILD").commands) == 3 and spec.phase("PRE_BUILD").commands == ()
    assert spec.artifacts is None


def test_yaml_with_finally_on_failure_and_variables():
    spec = parse("""
version: 0.2
env:
  shell: bash
  variables: {STAGE: staging, RETRIES: 3, STRICT: true}
  parameter-store: {TOKEN: /modelwerk/dev/token}
phases:
  pre_build:
    on-failure: CONTINUE
    commands: [make check]
    finally: [echo done]
""")

    assert spec.variables == {"STAGE": "staging", "RETRIES": "3", "STRICT": "true"}
    assert spec.parameter_store == {"TOKEN": "/modelwerk/dev/token"}
    pre_build = spec.phase("PRE_BUILD")
    assert (pre_build.on_failure, pre_build.commands, pre_build.finally_commands) == ("CONTINUE", ("make check",),
                                                                                       ("echo done",))


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("version: 0.3\nphases: {}", "version", id="version"),
    pytest.param("version: 0.2\nphases: {deploy: {commands: [x]}}", "unknown phase", id="unknown-phase"),
    pytest.param("version: 0.2\nphases: {build: {on-failure: RETRY, commands: [x]}}", "ABORT or CONTINUE",
                 id="on-failure"),
    pytest.param("version: 0.2\nenv: {shell: powershell.exe}", "Linux shell", id="shell"),
    pytest.param("version: 0.2\nbatch: {build-list: []}", "batch builds", id="batch"),
    pytest.param("version: 0.2\nphases: {build: {commands: echo hi}}", "list of commands", id="commands"),
])
def test_a_buildspec_that_cannot_run_is_refused_with_why(text, message):
    with pytest.raises(BuildspecError, match=message):
        parse(text)


@pytest.mark.parametrize(("value", "inline"), [
    pytest.param("buildspec.json", False, id="file-name"),
    pytest.param("ci/buildspec.yml", False, id="path"),
    pytest.param("version: 0.2\nphases: {build: {commands: [make]}}", True, id="yaml"),
    pytest.param('{"version": "0.2", "phases": {}}', True, id="json"),
])
def test_a_project_s_buildspec_is_a_file_name_or_the_buildspec_itself(value, inline):
    assert looks_inline(value) is inline
