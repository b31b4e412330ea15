"""``modelwerk``: the library's verbs on the command line.

Every command takes ``--json`` and then prints exactly one JSON object on stdout; progress goes to stderr. An error
is one sentence on stderr and a non-zero exit, never a traceback (``MODELWERK_DEBUG=1`` shows it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from modelwerk.errors import ModelwerkError


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

    def result(self, payload: dict[str, Any], human: Callable[[dict[str, Any]], str]) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps(payload, default=str) + "\n")
        else:
            sys.stdout.write(human(payload) + "\n")


def _table(rows: list[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


# -- local ------------------------------------------------------------------------------------------------------------
def _local_up(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import local

    with out.progress("starting local mode") as progress:
        state = local.up(port=args.port, progress=progress)
    out.result(state.to_json(), lambda p: _table([("endpoint_url", p["endpoint_url"]), ("region", p["region"]),
                                                  *[(f"account {k}", v) for k, v in p["accounts"].items()]]))


def _local_down(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import local

    stopped = local.down()
    out.result({"stopped": stopped}, lambda p: "local mode stopped" if stopped else "local mode was not running")


def _local_status(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import local

    status = local.status()

    def human(p: dict[str, Any]) -> str:
        if not p["running"]:
            return "local mode is not running (start it with 'modelwerk local up')"
        lines = [("endpoint_url", p["endpoint_url"]), ("region", p["region"])]
        lines += [(f"stack {name}", ", ".join(f"{n} {via}" for via, n in counts.items()))
                  for name, counts in p.get("stacks", {}).items()]
        return _table(lines)

    out.result(status, human)


# -- data -------------------------------------------------------------------------------------------------------------
def _data_generate(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import data

    result = data.generate(args.use_case, rows=args.rows, seed=args.seed, drift=args.drift, bad_rows=args.bad_rows,
                           out=args.out)
    out.result(result, lambda p: f"wrote {p['rows']} rows of {p['use_case']} to {p['out']}")


def _data_ingest(args: argparse.Namespace, out: _Output) -> None:
    from modelwerk import data

    with out.progress("ingesting") as progress:
        result = data.ingest(args.use_case, args.files, env=args.env, progress=progress)
    payload = {k: result[k] for k in ("rows_in", "rows_accepted", "rows_quarantined", "files_quarantined", "reasons")}
    payload["files"] = result["files"]

    def human(p: dict[str, Any]) -> str:
        lines = [(k, p[k]) for k in ("rows_in", "rows_accepted", "rows_quarantined", "files_quarantined")]
        lines += [(f"  {reason}", count) for reason, count in sorted(p["reasons"].items(), key=lambda kv: -kv[1])]
        return _table(lines)

    out.result(payload, human)


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
    local.add_parser("down", parents=[common], help="stop it and discard its state").set_defaults(run=_local_down)
    local.add_parser("status", parents=[common], help="is it running, what is deployed").set_defaults(run=_local_status)

    data = verbs.add_parser("data", help="generate, ingest, prepare, query").add_subparsers(dest="action", required=True)
    generate = data.add_parser("generate", parents=[common], help="write a deterministic synthetic file")
    generate.add_argument("--use-case", required=True)
    generate.add_argument("--rows", type=int, required=True)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--drift", type=float, default=0.0)
    generate.add_argument("--bad-rows", type=float, default=0.0)
    generate.add_argument("--out", required=True)
    generate.set_defaults(run=_data_generate)
    ingest = data.add_parser("ingest", parents=[common], help="land files and check them against the contract")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if os.environ.get("MODELWERK_DEBUG") else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("botocore", "boto3", "urllib3", "py4j", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    out = _Output(getattr(args, "json", False))
    try:
        args.run(args, out)
    except ModelwerkError as error:
        print(f"modelwerk: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("modelwerk: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the promise: one sentence, never a traceback
        if os.environ.get("MODELWERK_DEBUG"):
            raise
        print(f"modelwerk: unexpected {type(error).__name__}: {error}; rerun with MODELWERK_DEBUG=1 for details",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
