#!/usr/bin/env bash
# The one script the CI files in this directory call, so the recipe they run is the one the tests run.
#
#   identity-check.sh review DIR [POLICY]   plan DIR (OpenTofu, or Pulumi when DIR has a Pulumi.yaml), review the
#                                           access impact with `machineid review`, write it to review.md (for the
#                                           pull-request comment) and check POLICY
#   identity-check.sh drift DIR             refresh and plan DIR: does the cluster still match the code?
#
# Exit codes: 0 clean (no policy violation / no drift), 2 drift (something changed outside the code, or the code
# has changes not yet applied), 8 the plan violates the policy, anything else: the check itself failed.
# Reads MACHINEID_AUTH_SERVER and MACHINEID_IDENTITY (an identity that may list roles, bots, tokens and nodes);
# Pulumi stacks need PULUMI_STACK (default: the selected stack). TOFU defaults to tofu; terraform works too.
set -uo pipefail
what="${1:?usage: identity-check.sh review|drift DIR [POLICY]}"
dir="${2:?usage: identity-check.sh review|drift DIR [POLICY]}"
policy="${3:-}"
out="${REVIEW_OUT:-$PWD/review.md}"
tofu="${TOFU:-tofu}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ -f "$dir/Pulumi.yaml" ]; then tool=pulumi; else tool=tofu; fi
stack=()
[ -n "${PULUMI_STACK:-}" ] && stack=(--stack "$PULUMI_STACK")

plan_json() {  # the plan as JSON in $work/plan.json; $1: refresh first
  if [ "$tool" = pulumi ]; then
    local refresh=()
    [ "$1" = refresh ] && refresh=(--refresh)
    (cd "$dir" && pulumi preview --json --non-interactive "${refresh[@]}" "${stack[@]}") > "$work/plan.json" ||
      { echo "identity-check: pulumi preview failed" >&2; exit 1; }
  else
    (cd "$dir" && "$tofu" init -input=false -no-color >/dev/null &&
      "$tofu" plan -input=false -no-color -out="$work/plan.bin" >"$work/plan.txt" &&
      "$tofu" show -json "$work/plan.bin") > "$work/plan.json" ||
      { cat "$work/plan.txt" >&2 2>/dev/null; echo "identity-check: $tofu plan failed" >&2; exit 1; }
  fi
}

case "$what" in
  review)
    plan_json no-refresh
    args=("$work/plan.json")
    [ -n "$policy" ] && args+=(--policy "$policy")
    machineid review "${args[@]}" > "$out"
    code=$?
    cat "$out"
    exit "$code"
    ;;
  drift)
    plan_json refresh
    # Any step other than "same" (Pulumi) or any action other than no-op (tofu) is drift.
    changes="$(python3 - "$work/plan.json" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
if "steps" in plan:
    changed = [s["urn"] for s in plan["steps"] if s.get("op") not in ("same", "read", "refresh")]
else:
    changed = [r["address"] for r in plan.get("resource_changes", []) if r["change"]["actions"] not in (["no-op"], ["read"])]
print("\n".join(changed))
PY
)" || exit 1
    if [ -n "$changes" ]; then
      echo "identity-check: drift: these differ from the code:"; echo "$changes"
      exit 2
    fi
    echo "identity-check: no drift"
    ;;
  *) echo "usage: identity-check.sh review|drift DIR [POLICY]" >&2; exit 64 ;;
esac
