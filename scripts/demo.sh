#!/usr/bin/env bash
# The whole lifecycle on one machine, for both use cases: embedded AWS up -> generate (with bad rows) -> ingest ->
# prepare -> pipeline run (register) -> approve -> promotion pipeline: staging, quality gate, approval, prod ->
# batch scoring -> traffic with capture -> drifted traffic -> drift monitor -> alarm -> on-call SNS -> retraining ->
# a new version;
# then a short summary and the HTML lifecycle report under .modelwerk/reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
work="${MODELWERK_STATE_DIR:-.modelwerk}/demo"
mkdir -p "$work"
started=$(date +%s)
USE_CASES=(pump-health energy-forecast)
ROWS=40000   # training rows; traffic has as many (the generator sizes its fleet of assets by the row count)

step() { printf '\n\033[1m== [%3ss] %s\033[0m\n' "$(( $(date +%s) - started ))" "$*"; }
field() { python -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"sys": sys}, {"d": d}))' "$@"; }

step "local up: embedded AWS on 127.0.0.1, every environment's stage deployed into its own account"
modelwerk local up

for use_case in "${USE_CASES[@]}"; do
  step "$use_case: generate sensor files (1% bad rows) -> ingest (contract checks, quarantine with reasons)"
  modelwerk data generate --use-case "$use_case" --rows "$ROWS" --seed 1 --bad-rows 0.01 --out "$work/$use_case-1.csv"
  modelwerk data generate --use-case "$use_case" --rows 5000 --seed 2 --out "$work/$use_case-2.jsonl"
  modelwerk data ingest --use-case "$use_case" "$work/$use_case-1.csv" "$work/$use_case-2.jsonl"

  step "$use_case: prepare (Spark local: dedupe, casts, rolling features) and publish a snapshot"
  modelwerk data prepare --use-case "$use_case"
done

step "query the curated tables through Athena (the embedded AWS runs it in DuckDB)"
modelwerk data query "SELECT pump_id, count(*) AS readings, round(avg(vibration_rms), 2) AS vibration, count_if(failure = 1) AS failures FROM modelwerk_dev_curated.pump_health GROUP BY pump_id ORDER BY failures DESC LIMIT 3"

for use_case in "${USE_CASES[@]}"; do
  step "$use_case: the deployed pipeline (StartPipelineExecution): preprocess, train, evaluate, baseline, quality condition, register"
  modelwerk pipeline run --use-case "$use_case" --wait
  modelwerk models approve --use-case "$use_case" latest --reason "demo: metrics above the pipeline's threshold"

  step "$use_case: promote through the registry's promotion pipeline: staging deploy, CodeBuild gate, approval, prod"
  modelwerk promote --use-case "$use_case" latest --to prod --approve
done

step "pump-health: batch scoring in dev (the inference pipeline: export, Batch Transform, predictions to the analytics zone)"
modelwerk batch run --use-case pump-health --version latest --wait
modelwerk data query "SELECT model_version, count(*) AS predictions, count_if(prediction = 1) AS failures_predicted FROM modelwerk_dev_analytics.pump_health_predictions GROUP BY model_version"

for use_case in "${USE_CASES[@]}"; do
  step "$use_case: traffic to prod (captured), then drifted traffic"
  modelwerk data generate --use-case "$use_case" --rows "$ROWS" --seed 1 --out "$work/$use_case-quiet.csv" >/dev/null
  modelwerk data generate --use-case "$use_case" --rows "$ROWS" --seed 7 --drift 1.0 --out "$work/$use_case-drifted.csv" >/dev/null
  modelwerk predict --endpoint "$use_case" --env prod "$work/$use_case-quiet.csv" --inference-id quiet --json \
    | field '"quiet traffic: %d predictions" % len(d["predictions"])'
  modelwerk predict --endpoint "$use_case" --env prod "$work/$use_case-drifted.csv" --inference-id drifted --json \
    | field '"drifted traffic: %d predictions" % len(d["predictions"])'
done

for use_case in "${USE_CASES[@]}"; do
  step "$use_case: the drift monitor (prod's Lambda on the capture files) -> alarms -> on-call -> retraining in dev"
  before=$(modelwerk pipeline list --use-case "$use_case" --json | field '" ".join(e["execution_arn"] for e in d["executions"])')
  for attempt in $(seq 1 30); do   # the capture is flushed off the request path: wait until the window holds it
    result=$(modelwerk monitor run --endpoint "$use_case" --env prod --json)
    rows=$(field 'd["rows"]' <<<"$result")
    [ "$rows" -ge $(( 2 * ROWS )) ] && break
    sleep 2
  done
  # CloudWatch judges the alarms at their period's end; the embedded one is asked to judge them now.
  modelwerk local evaluate-alarms --env prod
  result=$(modelwerk monitor run --endpoint "$use_case" --env prod --json)
  field '"rows %d; drifted: %s; alarms: %s" % (d["rows"], ", ".join(sorted(n for n, f in d["features"].items() if (f["psi"] or 0) >= 0.2)) or "none", ", ".join("%s %s" % (a["name"], a["state"]) for a in d["alarms"]))' <<<"$result"
  retraining=""
  for attempt in $(seq 1 60); do   # the alarm's event crosses to dev's bus and its retraining rule starts the pipeline
    retraining=$(modelwerk pipeline list --use-case "$use_case" --json \
      | field '" ".join(e["execution_arn"] for e in d["executions"] if e["execution_arn"] not in sys.argv[2].split())' "$before" \
      | cut -d' ' -f1)
    [ -n "$retraining" ] && break
    sleep 1
  done
  if [ -z "$retraining" ]; then
    echo "no retraining started for $use_case" >&2
    exit 1
  fi
  echo "retraining started: ${retraining##*/}"
  for attempt in $(seq 1 120); do
    status=$(modelwerk pipeline describe --use-case "$use_case" "${retraining##*/}" --json | field 'd["status"]')
    [ "$status" != "Executing" ] && break
    sleep 2
  done
  echo "retraining $status"
done

step "the registry: new versions from retraining, waiting for approval"
for use_case in "${USE_CASES[@]}"; do
  modelwerk models list --use-case "$use_case"
done

step "summary and the lifecycle report"
report=$(modelwerk report --json | field 'd["path"]')
python - "${USE_CASES[@]}" <<'PY'
import json, subprocess, sys
def cli(*args):
    out = subprocess.run(["modelwerk", *args, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)
for use_case in sys.argv[1:]:
    versions = cli("models", "list", "--use-case", use_case)
    prod = cli("endpoints", "describe", use_case, "--env", "prod")
    metric = next(iter(versions[-1]["metrics"]), None)
    figures = ", ".join(f"v{v['version']} {v['approval_status']}" + (f" {metric} {v['metrics'][metric]:.3f}"
                        if metric and v["metrics"].get(metric) is not None else "") for v in reversed(versions))
    print(f"{use_case:16s} prod serves v{prod['version']} ({prod['status']}); versions: {figures}")
PY
echo "report: $report"
echo "demo finished in $(( $(date +%s) - started )) s; the embedded AWS keeps running: 'modelwerk local down' ends it"
