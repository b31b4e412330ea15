#!/usr/bin/env bash
# checkov over the templates of a synthesized cloud assembly, from its own virtual environment (.venv-checkov, made
# by `make install`): checkov pins an old boto3 that the project's .venv cannot hold.
#   scripts/checkov.sh [ASSEMBLY_DIR (default cdk.out)] [more checkov options, e.g. -o json]
# A finding is fixed or skipped where its resource is defined, with the reason (cdk_constructs/nag.py,
# acknowledge_checkov); the exit status is non-zero on any finding that is neither.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
checkov="${CHECKOV_VENV:-$root/.venv-checkov}/bin/checkov"
if [[ ! -x "$checkov" ]]; then
  echo "checkov is not installed in ${CHECKOV_VENV:-$root/.venv-checkov}: run 'make install'" >&2
  exit 2
fi
assembly="${1:-$root/cdk.out}"
shift || true
mapfile -t templates < <(find "$assembly" -name '*.template.json' | sort)
if [[ ${#templates[@]} -eq 0 ]]; then
  echo "no templates under $assembly: synthesize first (python app.py)" >&2
  exit 2
fi
files=()
for template in "${templates[@]}"; do files+=(--file "$template"); done
# Without options of the caller's, print the findings only (not the passed checks).
[[ $# -gt 0 ]] || set -- --quiet
exec "$checkov" "${files[@]}" --framework cloudformation --skip-download --compact "$@"
