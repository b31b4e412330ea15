"""``modelwerk``: the library's verbs on the command line.

Every command takes ``--json`` and then prints exactly one JSON document on stdout (an object; an array where a
command lists things, ``models list``); progress goes to stderr. An error is one sentence on stderr and a non-zero
exit, never a traceback (``MODELWERK_DEBUG=1`` shows it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from modelwerk.errors import ModelwerkError, ValidationError


class _Output:
    def __init__(self, as_json: bool):
        self.as_json = as_json
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)

    @contextmanager
    def progress(self, title: str) -> Iterator[Callable[[str], None]]:
        if self.as_json or not self.console.is_terminal:
            yield lambda message: None if self.as_json else self.console.print(f"  {message}")
            return
        with self.console.status(title) as status:
            yield lambda message: status.update(message)

    def result(self, payload: Any, human: Callable[[Any], str]) -> None:
        """``payload`` is one JSON document: an object, or a list where the command lists things."""
        if self.as_json:
            sys.stdout.write(json.dumps(payload, default=str) + "\n")
        else:
            sys.stdout.write(human(payload) + "\n")


def _table(rows: list[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


# -- local ------------------------------------------------------------------------------------------------------------
def _point_at_local_mode() -> None:
    """The CLI's one concession to local mode: in a checkout whose local mode runs, and where nothing else was
    chosen (``AWS_PROFILE``, ``AWS_ENDPOINT_URL``), the verbs reach the embedded AWS through the profiles that
    ``local up`` wrote. The verbs themselves never know."""
    from modelwerk import local

    local.activate_if_running()


def _local_up(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import local

    with out.progress("starting local mode") as progress:
        state = local.up(port=args.port, progress=progress)
    out.result(state.to_json(), lambda p: _table([("endpoint_url", p["endpoint_url"]), ("region", p["region"]),
                                                  *[(f"account {k}", v) for k, v in p["accounts"].items()]]))


def _local_down(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import local

    stopped = local.down(discard=args.discard)
    kept = "its state is discarded" if args.discard else "its state is kept for the next 'modelwerk local up'"
    out.result({"stopped": stopped, **({"discarded": True} if args.discard else {})},
               lambda p: f"local mode {'stopped' if stopped else 'was not running'}; {kept}")


def _local_status(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import local

    status = local.status()

    def human(p: dict[str, Any]) -> str:
        if not p["running"]:
            return str(local.not_running())
        lines = [("endpoint_url", p["endpoint_url"]), ("region", p["region"])]
        lines += [(f"stack {name}", ", ".join(f"{n} {via}" for via, n in counts.items()))
                  for name, counts in p.get("stacks", {}).items()]
        return _table(lines)

    out.result(status, human)


def _local_env(args: argparse.Namespace, out: _Output) -> None:
    import shlex

    from modelwerk import local
    from modelwerk.errors import LocalModeError

    state = local.read_state()
    if state is None:
        raise local.not_running()
    variables = local.environment_variables(state, args.env or os.environ.get("MODELWERK_ENV") or "dev")
    out.result(variables, lambda p: "\n".join(f"export {k}={shlex.quote(v)}" for k, v in p.items()))


def _local_evaluate_alarms(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import local

    body = {"alarm_names": args.alarm_names} if args.alarm_names else {}
    result = local.control("cloudwatch/evaluate-alarms", body, env=args.env or "dev")
    out.result(result, lambda p: "\n".join(f"{t['alarmName']}: {t['oldState']} -> {t['newState']}"
                                           for t in p.get("transitions", [])) or "no alarm changed state")


def _local_fire_schedule(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import local

    result = local.control("events/fire-schedule", {"rule": args.rule}, env=args.env or "dev")
    out.result(result, lambda p: "\n".join(f"{d.get('target_arn')}: {d.get('outcome')}"
                                           for d in p.get("Deliveries", [])) or "the rule has no targets")


# -- data -------------------------------------------------------------------------------------------------------------
def _data_generate(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import data

    result = data.generate(args.use_case, rows=args.rows, seed=args.seed, drift=args.drift, bad_rows=args.bad_rows,
                           out=args.out)
    out.result(result, lambda p: f"wrote {p['rows']} rows of {p['use_case']} to {p['out']}")


#: Exit status of ``data ingest`` when a file was rejected whole (its report is still printed).
EXIT_FILE_REJECTED = 3


def _data_ingest(args: argparse.Namespace, out: _Output) -> int:
    from modelwerk import data

    with out.progress("ingesting") as progress:
        result = data.ingest(args.use_case, args.files, env=args.env, progress=progress)
    payload = {k: result[k] for k in ("rows_in", "rows_accepted", "rows_quarantined", "files_quarantined", "reasons")}
    payload["files"] = result["files"]
    payload["rejected"] = result["rejected"]

    def human(p: dict[str, Any]) -> str:
        lines = [(k, p[k]) for k in ("rows_in", "rows_accepted", "rows_quarantined", "files_quarantined")]
        lines += [(f"  {reason}", count) for reason, count in sorted(p["reasons"].items(), key=lambda kv: -kv[1])]
        return _table(lines)

    out.result(payload, human)
    # A script must tell a file rejected whole from success: a non-zero exit, and a sentence per file on stderr.
    for rejected in result["rejected"]:
        print(f"modelwerk: {rejected['file']} was rejected whole ({rejected['reason']}); the quarantine keeps it at "
              f"{rejected['quarantined_to']}", file=sys.stderr)
    return EXIT_FILE_REJECTED if result["rejected"] else 0


def _data_prepare(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import data

    with out.progress("preparing curated data") as progress:
        result = data.prepare(args.use_case, env=args.env, progress=progress)
    out.result(result, lambda p: _table([(k, p[k]) for k in ("rows_in", "rows_out", "duplicates_dropped",
                                                            "snapshot_id", "database", "table")]))


def _data_query(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import data
    from modelwerk.query import to_json_result

    frame = data.query(args.sql, env=args.env)
    payload = to_json_result(frame)
    out.result(payload, lambda p: frame.to_string(index=False, max_rows=args.max_rows))


# -- models -----------------------------------------------------------------------------------------------------------
def _metrics_text(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{name} {'-' if value is None else f'{value:.4g}'}" for name, value in metrics.items()) or "-"


def _models_list(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import models

    listed = models.versions(args.use_case, env=args.env)

    def human(payload: list[dict[str, Any]]) -> str:
        if not payload:
            return f"{args.use_case} has no registered versions yet"
        return _table([(f"version {v['version']}", f"{v['approval_status']:<22} {_metrics_text(v['metrics'])}")
                       for v in payload])

    out.result([v.to_dict() for v in listed], human)


def _models_show(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import models

    shown = models.version(args.use_case, args.version, env=args.env)

    def human(p: dict[str, Any]) -> str:
        rows = [("version", p["version"]), ("arn", p["arn"]), ("approval_status", p["approval_status"]),
                ("approval_description", shown.approval_description or "-"), ("created_at", shown.created_at),
                ("metrics", _metrics_text(p["metrics"]))]
        rows += [(k, v or "-") for k, v in p["lineage"].items()]
        rows += [("model_data_url", shown.model_data_url), ("image", shown.image),
                 ("input_schema", ", ".join(f"{c['name']} ({c['type']})" for c in p["input_schema"]) or "-")]
        return _table(rows)

    out.result(shown.to_dict(detail=True), human)


def _models_decide(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import models

    decided = (models.approve if args.action == "approve" else models.reject)(
        args.use_case, args.version, reason=args.reason, env=args.env)
    note = f" ({decided.approval_description})" if decided.approval_description else ""
    out.result(decided.to_dict(), lambda p: f"{args.use_case} version {p['version']}: {p['approval_status']}{note}")


# -- pipeline ---------------------------------------------------------------------------------------------------------
def _steps_text(steps: list[dict[str, Any]]) -> str:
    return "\n".join(f"  {s['name']:<20} {s['status']:<10} {s['seconds']:8.1f} s" for s in steps)


def _pipeline_run(args: argparse.Namespace, out: _Output) -> int:
    from modelwerk import pipelines

    overrides = dict(pipelines.parse_parameter(p) for p in args.param)
    with out.progress(f"running the {args.use_case} pipeline") as progress:
        execution = pipelines.run(args.use_case, overrides, wait=args.wait, env=args.env, progress=progress)

    def human(p: dict[str, Any]) -> str:
        registered = p["model_package_arn"] or "nothing registered"
        return f"{p['execution_arn']}\n{p['status']}: {registered}\n{_steps_text(p['steps'])}"

    out.result(execution.to_dict(), human)
    if execution.status == "Failed":
        print(f"modelwerk: the execution failed: {execution.failure_reason}", file=sys.stderr)
        return 1
    return 0


# -- batch ------------------------------------------------------------------------------------------------------------
def _batch_run(args: argparse.Namespace, out: _Output) -> int:
    from modelwerk import batch

    version = _version_argument(args.version) if args.version else None
    with out.progress(f"scoring {args.use_case} in batch") as progress:
        scored = batch.run(args.use_case, version=version, snapshot=args.snapshot, input_uri=args.input,
                           wait=args.wait, env=args.env, progress=progress)

    def human(p: dict[str, Any]) -> str:
        rows = [("execution_arn", p["execution_arn"]), ("status", p["status"])]
        if p["rows_in"] is not None:
            rows += [("rows_in", p["rows_in"]), ("rows_scored", p["rows_scored"]), ("rows_failed", p["rows_failed"]),
                     ("output_table", p["output_table"]), ("seconds", p["seconds"])]
        return _table(rows)

    out.result(scored.to_dict(), human)
    if scored.status in ("Failed", "Stopped"):
        print(f"modelwerk: the batch execution {scored.status.lower()}: {scored.failure_reason}", file=sys.stderr)
        return 1
    return 0


def _pipeline_list(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import pipelines

    listed = [e.to_dict(detail=True) for e in pipelines.executions(args.use_case, env=args.env)]
    payload = {"use_case": args.use_case, "executions": [
        {k: e[k] for k in ("execution_arn", "status", "started_at", "ended_at", "model_package_arn")} for e in listed]}

    def human(p: dict[str, Any]) -> str:
        if not p["executions"]:
            return f"{args.use_case} has no executions yet: 'modelwerk pipeline run --use-case {args.use_case}'"
        return "\n".join(f"{e['execution_arn'].rsplit('/', 1)[-1]}  {e['status']:<10} {(e['started_at'] or '')[:19]}  "
                         f"{(e['model_package_arn'] or '-').rsplit('/', 1)[-1]}" for e in p["executions"])

    out.result(payload, human)


def _pipeline_describe(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import pipelines

    execution = pipelines.describe(args.use_case, args.execution, env=args.env)

    def human(p: dict[str, Any]) -> str:
        lines = [p["execution_arn"], f"{p['status']}: {p['model_package_arn'] or 'nothing registered'}",
                 _steps_text(p["steps"])]
        if p["failure_reason"]:
            lines.append(f"failure: {p['failure_reason']}")
        return "\n".join(lines)

    out.result(execution.to_dict(detail=True), human)


# -- runs -------------------------------------------------------------------------------------------------------------
def _runs_list(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import pipelines, tracking

    pipelines.sync_tracking(args.use_case, env=args.env)
    listed = tracking.list_runs(args.use_case)

    def human(p: dict[str, Any]) -> str:
        if not p["runs"]:
            return f"{p['use_case']} has no tracked runs yet (each pipeline execution is logged when it ends)"
        metrics = sorted({m for r in p["runs"] for m in r["metrics"] if not m.startswith(tracking.STEP_METRIC_PREFIX)})
        header = ["execution", "status", "started_at", "snapshot", "commit", "model version", *metrics]
        rows = [[r["execution_id"] or "-", r["status"] or "-", (r["started_at"] or "-")[:19], r["snapshot_id"] or "-",
                 (r["git_commit"] or "-")[:8], (r["model_package_arn"] or "-").rsplit("/", 1)[-1],
                 *("-" if r["metrics"].get(m) is None else f"{r['metrics'][m]:.4g}" for m in metrics)]
                for r in p["runs"]]
        widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
        return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows])

    out.result({"use_case": args.use_case, "runs": listed}, human)


# -- endpoints --------------------------------------------------------------------------------------------------------
def _version_argument(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _endpoint_text(p: dict[str, Any]) -> str:
    rows = [("endpoint", p["endpoint"]), ("status", p["status"]), ("mode", p["mode"])]
    if p.get("version") is not None:
        rows.append(("version", f"{p['use_case']} v{p['version']}"))
    if p.get("models"):
        rows.append(("models", ", ".join(p["models"])))
    if p.get("serverless"):
        setup = p.get("model_setup_seconds")
        rows.append(("serverless", f"{p['serverless']['memory_mb']} MB, at most {p['serverless']['max_concurrency']} "
                                   "concurrent requests"))
        rows.append(("last cold start", f"{setup:.2f} s" if setup is not None else "none yet"))
    if p.get("deployment", {}).get("outcome"):
        reason = p["deployment"].get("reason")
        rows.append(("last deployment", p["deployment"]["outcome"] + (f": {reason}" if reason else "")))
    rows.append(("runtime_endpoint_url", p.get("runtime_endpoint_url") or "-"))
    return _table(rows)


def _deploy(args: argparse.Namespace, out: _Output) -> int:
    from modelwerk import endpoints

    versions = [_version_argument(v) for v in args.version]
    with out.progress(f"deploying to {args.endpoint or args.use_case}") as progress:
        deployed = endpoints.deploy(args.use_case, versions if len(versions) > 1 else versions[0],
                                    endpoint=args.endpoint, multi_model=args.multi_model, env=args.env,
                                    bake_seconds=args.bake_seconds, progress=progress)
    out.result(deployed.to_dict(), _endpoint_text)
    if deployed.status == "RolledBack":
        print(f"modelwerk: the deployment rolled back: {deployed.deployment.get('reason')}", file=sys.stderr)
        return 1
    return 0


def _predict(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import endpoints

    predictions = endpoints.predict(args.endpoint, args.file, target_model=args.target_model,
                                    content_type=args.content_type, inference_id=args.inference_id, env=args.env)
    out.result({"predictions": predictions}, lambda p: "\n".join(str(v) for v in p["predictions"]))


def _endpoints_list(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import endpoints

    listed = [e.to_dict() for e in endpoints.list_endpoints(env=args.env)]

    def human(p: dict[str, Any]) -> str:
        if not p["endpoints"]:
            return "no endpoints yet: 'modelwerk deploy --use-case U VERSION --endpoint NAME'"
        return "\n".join(f"{e['endpoint']:<24} {e['status']:<11} {e['mode']:<12} "
                         f"{e['use_case'] or '-'} {'v' + str(e['version']) if e['version'] else ''}".rstrip()
                         for e in p["endpoints"])

    out.result({"endpoints": listed}, human)


def _endpoints_describe(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import endpoints

    out.result(endpoints.describe(args.name, env=args.env).to_dict(), _endpoint_text)


def _endpoints_delete(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import endpoints

    out.result(endpoints.delete(args.name, env=args.env).to_dict(), lambda p: f"{p['endpoint']}: {p['status']}")


def _endpoints_cost(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import cost

    with out.progress(f"pricing {args.endpoint}'s traffic"):
        priced = cost.endpoint_cost(args.endpoint, env=args.env, window_hours=args.window_hours)

    def human(p: dict[str, Any]) -> str:
        latency = "-" if p["mean_latency_ms"] is None else f"{p['mean_latency_ms']:g} ms"
        rows = [("endpoint", f"{p['endpoint']} ({p['env']}, {p['region']})"),
                ("observed", f"{p['invocations']:,} requests in {p['window_hours']:g} h; mean model latency {latency}"),
                ("a month", f"{p['requests_per_month']:,} requests")]
        rows += [(name, f"{cost.money(path['monthly_usd']):>12}  {path['basis']}") for name, path in p["paths"].items()]
        rows += [("cheapest", p["cheapest"] or "none priced"),
                 ("prices as of", f"{p['prices_as_of'] or '-'} ({cost.price_table_path()})")]
        return _table(rows)

    out.result(priced.to_dict(), human)


# -- promote ----------------------------------------------------------------------------------------------------------
def _promote(args: argparse.Namespace, out: _Output) -> int:
    from modelwerk import promotion

    if args.rollback:
        if args.version is not None:
            raise ValidationError("--rollback puts the previous prod version back; give no VERSION with it")
        with out.progress(f"rolling {args.use_case} back in {args.to}") as progress:
            result = promotion.rollback(args.use_case, to=args.to, progress=progress)
    else:
        approve: Any = True if args.approve else (_ask if not args.json and sys.stdin.isatty() else False)
        with out.progress(f"promoting {args.use_case} to {args.to}") as progress:
            result = promotion.promote(args.use_case, _version_argument(args.version or "latest"), to=args.to,
                                       approve=approve, reason=args.reason, progress=progress)

    def human(p: dict[str, Any]) -> str:
        lines = [f"{p['use_case']} version {p['version']} -> {p['to']}: {p['status']} ({p['seconds']} s)"
                 + (f", promotion pipeline execution {p['execution_id']}" if p.get("execution_id") else "")]
        lines += [f"  {s['name']:<15} {s['status']:<10} {s['detail']}" for s in p["stages"]]
        return "\n".join(lines)

    out.result(result.to_dict(), human)
    return 0 if result.status == promotion.SUCCEEDED else 1


def _ask(question: str) -> bool:
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _report(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import report

    with out.progress("writing the lifecycle report"):
        path = report.write(args.use_case or None, out=args.out)
    out.result({"path": str(path), "use_cases": args.use_case or "all"}, lambda p: f"wrote {p['path']}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelwerk", description="Modelwerk: data, pipelines, models, endpoints.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    common.add_argument("--env", default=None, help="environment (default: MODELWERK_ENV, else dev)")
    verbs = parser.add_subparsers(dest="verb", required=True)

    local = verbs.add_parser("local", help="the embedded AWS on this machine").add_subparsers(dest="action", required=True)
    up = local.add_parser("up", parents=[common], help="start the embedded AWS and deploy the dev stage into it")
    up.add_argument("--port", type=int, default=None)
    up.set_defaults(run=_local_up)
    kept = ("stop it and every process it started; its state (lake, catalog, registry, endpoints, captures) is kept "
            "for the next 'local up'")
    down = local.add_parser("down", parents=[common], help=kept, description=kept)
    down.add_argument("--discard", action="store_true", help="forget the state too: the next 'local up' starts empty")
    down.set_defaults(run=_local_down)
    local.add_parser("status", parents=[common], help="is it running, what is deployed").set_defaults(run=_local_status)
    env_verb = local.add_parser("env", parents=[common],
                                help="the exports that point a shell's AWS clients (the AWS CLI, boto3) at one account")
    env_verb.set_defaults(run=_local_env)
    alarms = local.add_parser("evaluate-alarms", parents=[common],
                              help="have the embedded CloudWatch judge the environment's alarms now")
    alarms.add_argument("alarm_names", nargs="*", metavar="ALARM", help="only these alarms (default: all)")
    alarms.set_defaults(run=_local_evaluate_alarms)
    fire = local.add_parser("fire-schedule", parents=[common],
                            help="send a scheduled rule's event now (the drift monitor's, the retraining schedule's)")
    fire.add_argument("rule", metavar="RULE")
    fire.set_defaults(run=_local_fire_schedule)

    data = verbs.add_parser("data", help="generate, ingest, prepare, query").add_subparsers(dest="action", required=True)
    generate = data.add_parser("generate", parents=[common], help="write a deterministic synthetic file")
    generate.add_argument("--use-case", required=True)
    generate.add_argument("--rows", type=int, required=True)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--drift", type=float, default=0.0)
    generate.add_argument("--bad-rows", type=float, default=0.0)
    generate.add_argument("--out", required=True)
    generate.set_defaults(run=_data_generate)
    ingest = data.add_parser("ingest", parents=[common], help="land files and check them against the contract",
                             description="Land files and check them against the contract. Exits 3 when a file is "
                                         "rejected whole (the report is still printed; stderr says where the "
                                         "quarantine keeps the file).")
    ingest.add_argument("--use-case", required=True)
    ingest.add_argument("files", nargs="+", metavar="FILE")
    ingest.set_defaults(run=_data_ingest)
    prepare = data.add_parser("prepare", parents=[common], help="curate new raw data and publish a snapshot")
    prepare.add_argument("--use-case", required=True)
    prepare.set_defaults(run=_data_prepare)
    query = data.add_parser("query", parents=[common], help="SQL over the catalog (Athena, or DuckDB locally)")
    query.add_argument("sql", metavar="SQL")
    query.add_argument("--max-rows", type=int, default=50)
    query.set_defaults(run=_data_query)

    models = verbs.add_parser("models", help="versions in the model registry: list, show, approve, reject")
    models = models.add_subparsers(dest="action", required=True)
    listing = models.add_parser("list", parents=[common], help="every version of a use case's model, newest first")
    listing.add_argument("--use-case", required=True)
    listing.set_defaults(run=_models_list)
    show = models.add_parser("show", parents=[common], help="one version: metrics, lineage, input schema")
    show.add_argument("--use-case", required=True)
    show.add_argument("version", metavar="VERSION", help="a version number, 'latest', or a model package ARN")
    show.set_defaults(run=_models_show)
    for action, what in (("approve", "approve a version for promotion"), ("reject", "reject a version")):
        decide = models.add_parser(action, parents=[common], help=what)
        decide.add_argument("--use-case", required=True)
        decide.add_argument("version", metavar="VERSION", help="a version number, 'latest', or a model package ARN")
        decide.add_argument("--reason", default=None, help="kept as the version's approval description")
        decide.set_defaults(run=_models_decide)

    pipeline = verbs.add_parser("pipeline", help="run the training pipeline, list and describe executions")
    pipeline = pipeline.add_subparsers(dest="action", required=True)
    run = pipeline.add_parser("run", parents=[common], help="start the use case's pipeline (locally: the deployed "
                              "definition on this machine)")
    run.add_argument("--use-case", required=True)
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="override a pipeline parameter (SnapshotId, QualityThreshold, ...); repeatable")
    run.add_argument("--wait", action="store_true", help="follow the execution to its end, showing each step")
    run.set_defaults(run=_pipeline_run)
    pipeline_list = pipeline.add_parser("list", parents=[common], help="the use case's executions, newest first")
    pipeline_list.add_argument("--use-case", required=True)
    pipeline_list.set_defaults(run=_pipeline_list)
    pipeline_describe = pipeline.add_parser("describe", parents=[common], help="one execution: steps, reasons, logs")
    pipeline_describe.add_argument("--use-case", required=True)
    pipeline_describe.add_argument("execution", metavar="EXECUTION", help="an execution ARN or id")
    pipeline_describe.set_defaults(run=_pipeline_describe)

    batch = verbs.add_parser("batch", help="score data in batch: the use case's inference pipeline")
    batch = batch.add_subparsers(dest="action", required=True)
    batch_run = batch.add_parser("run", parents=[common], help="score a snapshot (or an S3 prefix) with the version "
                                 "the environment serves (or --version); predictions go to the analytics zone")
    batch_run.add_argument("--use-case", required=True)
    batch_run.add_argument("--version", default=None, help="a version number, 'latest' or a model package ARN "
                           "(default: the version the environment's endpoint serves)")
    batch_run.add_argument("--snapshot", default=None, help="a snapshot id (default: latest)")
    batch_run.add_argument("--input", default=None, metavar="S3_URI",
                           help="score the CSV or Parquet files under this S3 prefix instead of a snapshot")
    batch_run.add_argument("--wait", action="store_true", help="follow the execution to its end")
    batch_run.set_defaults(run=_batch_run)

    runs = verbs.add_parser("runs", help="tracked pipeline executions (MLflow): compare runs")
    runs = runs.add_subparsers(dest="action", required=True)
    runs_list = runs.add_parser("list", parents=[common], help="every tracked execution of a use case, newest first")
    runs_list.add_argument("--use-case", required=True)
    runs_list.set_defaults(run=_runs_list)

    deploy = verbs.add_parser("deploy", parents=[common], help="deploy a model version to an endpoint (blue/green "
                              "when it runs), or add versions to a multi-model endpoint")
    deploy.add_argument("--use-case", required=True)
    deploy.add_argument("version", nargs="+", metavar="VERSION",
                        help="a version number, 'latest' or a model package ARN (several with --multi-model)")
    deploy.add_argument("--endpoint", default=None, help="endpoint name (default: the use case's name)")
    deploy.add_argument("--multi-model", action="store_true", help="a multi-model endpoint over an S3 prefix")
    deploy.add_argument("--bake-seconds", type=float, default=None,
                        help="how long the new fleet takes all traffic before the old one goes (locally)")
    deploy.set_defaults(run=_deploy)

    predict = verbs.add_parser("predict", parents=[common], help="call an endpoint with a CSV, JSON or JSON Lines file")
    predict.add_argument("--endpoint", required=True)
    predict.add_argument("file", metavar="FILE")
    predict.add_argument("--target-model", default=None, help="the model of a multi-model endpoint")
    predict.add_argument("--content-type", default=None, help="text/csv, application/json or application/jsonlines "
                         "(default: from the file's suffix)")
    predict.add_argument("--inference-id", default=None, help="recorded with the captured request; ground truth "
                         "joins on it")
    predict.set_defaults(run=_predict)

    promote = verbs.add_parser("promote", parents=[common], help="promote an approved version: staging, quality "
                               "gate, approval, prod (blue/green); or roll prod back")
    promote.add_argument("--use-case", required=True)
    promote.add_argument("version", nargs="?", default=None, metavar="VERSION",
                         help="a version number, 'latest' (the default) or a model package ARN")
    promote.add_argument("--to", required=True, choices=("staging", "prod"),
                         help="staging: deploy and run the quality gate; prod: then approval and prod")
    promote.add_argument("--approve", action="store_true",
                         help="approve the version (if it waits) and the pipeline's approval for prod without asking")
    promote.add_argument("--reason", default=None, help="the approval's summary, kept by the pipeline")
    promote.add_argument("--rollback", action="store_true",
                         help="put the previous prod version back (the pipeline's rollback of its prod stage)")
    promote.set_defaults(run=_promote)

    report = verbs.add_parser("report", parents=[common], help="an HTML page: metrics and lineage per version, "
                              "endpoints per environment, drift per feature (under .modelwerk/reports/)")
    report.add_argument("--use-case", action="append", default=[], help="repeatable (default: every use case)")
    report.add_argument("--out", default=None, help="the file to write (default: a new one under .modelwerk/reports/)")
    report.set_defaults(run=_report)

    endpoints = verbs.add_parser("endpoints", help="the environment's endpoints: list, describe, delete, cost")
    endpoints = endpoints.add_subparsers(dest="action", required=True)
    endpoints.add_parser("list", parents=[common], help="every endpoint").set_defaults(run=_endpoints_list)
    for action, what, handler in (("describe", "one endpoint: status, version, deployments", _endpoints_describe),
                                  ("delete", "stop and remove an endpoint", _endpoints_delete)):
        command = endpoints.add_parser(action, parents=[common], help=what)
        command.add_argument("name", metavar="NAME")
        command.set_defaults(run=handler)
    cost = endpoints.add_parser("cost", parents=[common],
                                help="the monthly cost of the endpoint's observed traffic served as it is, serverless "
                                     "and as a nightly batch, and the cheapest")
    cost.add_argument("--endpoint", required=True)
    cost.add_argument("--window-hours", type=float, default=168.0,
                      help="the hours of CloudWatch metrics before now to extrapolate from (default 168, a week; "
                           "cut to the endpoint's age)")
    cost.set_defaults(run=_endpoints_cost)

    monitor = verbs.add_parser("monitor", help="data drift and model quality of an endpoint")
    monitor = monitor.add_subparsers(dest="action", required=True)
    for action, what, handler in (
            ("run", "compare the endpoint's recent traffic with its version's baseline; judge its alarms",
             _monitor_run),
            ("quality", "score the endpoint's captured predictions against the ground truth given by 'feedback'",
             _monitor_quality)):
        command = monitor.add_parser(action, parents=[common], help=what)
        command.add_argument("--endpoint", required=True)
        command.add_argument("--window-minutes", type=int, default=None,
                             help="the captured requests of this many minutes before now (default: from cdk.json)")
        command.set_defaults(run=handler)
    feedback = verbs.add_parser("feedback", parents=[common], help="upload ground truth (inference_id,label[,row]) "
                                "for an endpoint's captured predictions")
    feedback.add_argument("--endpoint", required=True)
    feedback.add_argument("file", metavar="FILE")
    feedback.set_defaults(run=_feedback)
    return parser


def _monitor_text(p: dict[str, Any]) -> str:
    rows = [("endpoint", p["endpoint"]), ("window", f"{p['window']['start']} .. {p['window']['end']}"),
            ("rows", p["rows"]), ("bad lines", p["bad_lines"])]
    rows += [(f"  {name}", "psi " + ("-" if f["psi"] is None else f"{f['psi']:.3f}"))
             for name, f in sorted(p["features"].items(), key=lambda i: -(i[1]["psi"] or 0))]
    rows += [(f"alarm {a['name']}", a["state"]) for a in p["alarms"]]
    if p.get("retraining_execution_arn"):
        rows.append(("retraining", p["retraining_execution_arn"]))
    return _table(rows)


def _monitor_run(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import monitoring

    with out.progress(f"monitoring {args.endpoint}"):
        result = monitoring.run(args.endpoint, env=args.env, window_minutes=args.window_minutes)
    out.result(result.to_dict(), _monitor_text)


def _monitor_quality(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import monitoring

    with out.progress(f"scoring {args.endpoint} against ground truth"):
        result = monitoring.run(args.endpoint, env=args.env, window_minutes=args.window_minutes)
    quality = result.quality or {}
    out.result({"endpoint": result.endpoint, "window": result.window, **quality,
                "alarms": [a for a in result.alarms if "quality" in a["name"] or "retraining" in a["name"]]},
               lambda p: _table([(k, v) for k, v in p.items() if k not in ("alarms",)]))


def _feedback(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import monitoring

    out.result(monitoring.feedback(args.endpoint, args.file, env=args.env), lambda p: _table(list(p.items())))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if os.environ.get("MODELWERK_DEBUG") else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("botocore", "boto3", "urllib3", "py4j", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    out = _Output(getattr(args, "json", False))
    try:
        _point_at_local_mode()
        code = args.run(args, out)
    except Exception as error:
        stopped = _local_mode_stopped(error) if args.verb != "local" else None
        if stopped is not None:
            print(f"modelwerk: {stopped}", file=sys.stderr)
            return 2
        if isinstance(error, ModelwerkError):
            print(f"modelwerk: {error}", file=sys.stderr)
            return 2
        if os.environ.get("MODELWERK_DEBUG"):
            raise
        print(f"modelwerk: unexpected {type(error).__name__}: {error}; rerun with MODELWERK_DEBUG=1 for details",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("modelwerk: interrupted", file=sys.stderr)
        return 130
    return code or 0


def _local_mode_stopped(error: BaseException) -> str | None:
    """The "local mode is not running" message when an AWS client failed for want of it (no credentials or region:
    nothing else is configured; its profiles' endpoint refusing connections) in a checkout whose local mode was used
    and is not running now. None for any other error."""
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError, NoRegionError, ProfileNotFound

    causes, seen = [], error
    while seen is not None and len(causes) < 10:
        causes.append(seen)
        seen = seen.__cause__ or seen.__context__
    wanting = (NoCredentialsError, NoRegionError, EndpointConnectionError, ProfileNotFound, ConnectionRefusedError)
    if not any(isinstance(cause, wanting) for cause in causes):
        return None
    from modelwerk import local

    return str(local.not_running()) if local.gone() else None


if __name__ == "__main__":
    sys.exit(main())
