#!/usr/bin/env bash
# The platform on one machine: embedded AWS up -> generate (with bad rows) -> ingest -> prepare -> query
# -> train (pipeline run) -> registry -> approve.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
work=.modelwerk/demo
mkdir -p "$work"
started=$(date +%s)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "local up: embedded AWS on 127.0.0.1, dev and registry stages deployed into it"
modelwerk local up
modelwerk local status

for use_case in pump-health energy-forecast; do
  step "$use_case: generate two days of sensor files, 1% bad rows, one cut short"
  modelwerk data generate --use-case "$use_case" --rows 40000 --seed 1 --bad-rows 0.01 --out "$work/$use_case-1.csv"
  modelwerk data generate --use-case "$use_case" --rows 5000 --seed 2 --out "$work/$use_case-2.jsonl"

  step "$use_case: ingest (contract checks, quarantine with reasons, pseudonymization)"
  modelwerk data ingest --use-case "$use_case" "$work/$use_case-1.csv" "$work/$use_case-2.jsonl"
  printf 'again, unchanged (idempotent):\n'
  modelwerk data ingest --use-case "$use_case" --json "$work/$use_case-1.csv"

  step "$use_case: prepare (Spark local: dedupe, casts, rolling features) and snapshot"
  modelwerk data prepare --use-case "$use_case"
done

step "query the curated tables (DuckDB over the embedded S3; Athena on AWS)"
modelwerk data query "SELECT pump_id, count(*) AS readings, round(avg(vibration_rms), 2) AS vibration, round(avg(vibration_rms_mean_6h), 2) AS vibration_6h, count_if(failure = 1) AS failures FROM modelwerk_dev_curated.pump_health GROUP BY pump_id ORDER BY failures DESC LIMIT 5"
modelwerk data query "SELECT plant_type, count(*) AS hours, round(avg(production_mwh), 1) AS mean_mwh FROM modelwerk_dev_curated.energy_forecast GROUP BY plant_type ORDER BY plant_type"

for use_case in pump-health energy-forecast; do
  step "$use_case: train with the pipeline the dev stage deployed (local executor): preprocess, train, evaluate, baseline, gate, register"
  modelwerk pipeline run --use-case "$use_case" --wait
done

step "the central registry (registry account) and the tracked runs"
modelwerk models list --use-case pump-health
modelwerk models show --use-case pump-health latest
modelwerk runs list --use-case pump-health

step "approve the new version (emits SageMaker's model package state-change event)"
modelwerk models approve --use-case pump-health latest --reason "demo: quality gate passed"

step "summary"
python - "$work" <<'PY'
import json, subprocess, sys
def q(sql):
    out = subprocess.run(["modelwerk", "data", "query", "--json", sql], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["rows"]
for table in ("pump_health", "energy_forecast"):
    raw = q(f"SELECT count(*) FROM modelwerk_dev_raw.{table}")[0][0]
    curated = q(f"SELECT count(*), count(DISTINCT dt) FROM modelwerk_dev_curated.{table}")[0]
    print(f"{table:16s} raw rows {raw:>7}   curated rows {curated[0]:>7} in {curated[1]} daily partitions")
PY
echo "demo finished in $(( $(date +%s) - started )) s; the embedded AWS keeps running: 'modelwerk local down' ends it"
