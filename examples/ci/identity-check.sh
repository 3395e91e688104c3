#!/usr/bin/env bash
# The one script every job of the CI files in this directory calls, so what CI runs is what the tests run.
#
#   identity-check.sh review DIR [POLICY]  plan DIR (OpenTofu, or Pulumi when DIR has a Pulumi.yaml), review the
#                                          access impact with `machineid review`, write it to review.md (the
#                                          pull-request comment) and check POLICY
#   identity-check.sh drift DIR            refresh and plan DIR: does the cluster still match the code?
#   identity-check.sh apply DIR            apply DIR (tofu apply, pulumi up)
#   identity-check.sh comment [FILE]       post FILE (default review.md) to the pull or merge request: the one
#                                          comment that carries the marker line is edited, no second one is added
#
# Exit codes: 0 clean (no policy violation / no drift / applied), 2 drift (something changed outside the code, or
# the code has changes not yet applied), 8 the plan violates the policy, anything else: the check itself failed.
#
# Environment (none of it a secret):
#   MACHINEID_AUTH_SERVER, MACHINEID_CA_PIN, MACHINEID_JOIN_METHOD, MACHINEID_JOIN_TOKEN: every tool joins for its
#     own run with the CI's ID token and keeps the identity in memory (GitHub: the job needs `permissions:
#     id-token: write`; GitLab: an id_tokens entry MACHINEID_ID_TOKEN whose aud is the cluster's name). An identity
#     file in MACHINEID_IDENTITY works too, instead of the join.
#   PG_CONN_STR: the OpenTofu pg backend's database (see README.md); TOFU (default tofu; terraform works too);
#   PULUMI_STACK (default: the selected stack); REVIEW_OUT (default ./review.md).
#   comment: GitHub Actions: GITHUB_TOKEN (or GH_TOKEN; `pull-requests: write`), and what the runner sets
#     (GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_EVENT_PATH); GitLab CI: GITLAB_REVIEW_TOKEN (api scope), and what
#     the runner sets (CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID).
set -uo pipefail
usage="usage: identity-check.sh review|drift|apply DIR [POLICY] | comment [FILE]"
what="${1:?$usage}"
out="${REVIEW_OUT:-$PWD/review.md}"
marker="<!-- machineid-review -->"
case "$what" in review|drift|apply|comment) ;; *) echo "$usage" >&2; exit 64 ;; esac

if [ "$what" = comment ]; then
  exec python3 - "${2:-$out}" "$marker" <<'PY'
"""Post the review as the pull (merge) request's one review comment: edit ours if it is there, else add it."""
import json, os, sys, urllib.error, urllib.request

path, marker = sys.argv[1], sys.argv[2]
LIMIT = 60000  # GitHub refuses comments over 65536 characters


def say(text):
    print(f"identity-check: comment: {text}", file=sys.stderr)


try:
    body = open(path).read()
except OSError as e:
    say(f"nothing to post: cannot read {path} ({e.strerror})")
    sys.exit(0)
if not body.startswith(marker):
    body = f"{marker}\n{body}"
if len(body) > LIMIT:
    body = body[:LIMIT] + "\n\n… (cut short: the whole review is in the job's log)\n"


def call(method, url, headers, data=None):
    request = urllib.request.Request(url, method=method, headers={**headers, "Accept": headers.get(
        "Accept", "application/json"), "Content-Type": "application/json"},
        data=None if data is None else json.dumps(data).encode())
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        detail = e.read(2000).decode(errors="replace")
        say(f"{method} {url.split('?')[0]} answered HTTP {e.code}: {detail}")
        sys.exit(1)
    except (urllib.error.URLError, OSError) as e:
        say(f"cannot reach {url.split('?')[0]}: {getattr(e, 'reason', e)}")
        sys.exit(1)


def pages(url, headers):
    """Every item of a paginated list (GitHub and GitLab both take per_page and page)."""
    page = 1
    while True:
        items = call("GET", f"{url}?per_page=100&page={page}", headers)
        yield from items
        if len(items) < 100:
            return
        page += 1


if os.environ.get("GITHUB_ACTIONS") == "true":
    token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN", "")
    if not token:
        say("no GITHUB_TOKEN: not posting (give the step GITHUB_TOKEN: ${{ github.token }})")
        sys.exit(0)
    number = os.environ.get("PR_NUMBER", "")
    if not number and os.environ.get("GITHUB_EVENT_PATH"):
        number = str(json.load(open(os.environ["GITHUB_EVENT_PATH"])).get("pull_request", {}).get("number", ""))
    if not number:
        say("not a pull request: nothing to post")
        sys.exit(0)
    api = os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    repo = os.environ["GITHUB_REPOSITORY"]
    author = os.environ.get("REVIEW_COMMENT_AUTHOR", "github-actions[bot]")  # whose comment we may edit
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
               "X-GitHub-Api-Version": "2022-11-28"}
    ours = next((c for c in pages(f"{api}/repos/{repo}/issues/{number}/comments", headers)
                 if c.get("body", "").startswith(marker) and c.get("user", {}).get("login") == author), None)
    if ours:
        call("PATCH", f"{api}/repos/{repo}/issues/comments/{ours['id']}", headers, {"body": body})
        say(f"updated the review comment on pull request #{number}")
    else:
        call("POST", f"{api}/repos/{repo}/issues/{number}/comments", headers, {"body": body})
        say(f"added the review comment to pull request #{number}")
elif os.environ.get("GITLAB_CI") == "true":
    token = os.environ.get("GITLAB_REVIEW_TOKEN", "")
    if not token:
        say("no GITLAB_REVIEW_TOKEN: not posting (a project access token with the api scope, see README.md)")
        sys.exit(0)
    iid = os.environ.get("CI_MERGE_REQUEST_IID", "")
    if not iid:
        say("not a merge request pipeline: nothing to post")
        sys.exit(0)
    api = os.environ["CI_API_V4_URL"].rstrip("/")
    notes = f"{api}/projects/{os.environ['CI_PROJECT_ID']}/merge_requests/{iid}/notes"
    headers = {"PRIVATE-TOKEN": token}
    me = call("GET", f"{api}/user", headers)["username"]  # whose note we may edit: the token's own user
    ours = next((n for n in pages(notes, headers)
                 if n.get("body", "").startswith(marker) and n.get("author", {}).get("username") == me), None)
    if ours:
        call("PUT", f"{notes}/{ours['id']}", headers, {"body": body})
        say(f"updated the review note on merge request !{iid}")
    else:
        call("POST", notes, headers, {"body": body})
        say(f"added the review note to merge request !{iid}")
else:
    say("not running in GitHub Actions or GitLab CI: nothing to post")
PY
fi

dir="${2:?$usage}"
policy="${3:-}"
tofu="${TOFU:-tofu}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail() {  # $1: what failed. A review that cannot run says so in review.md, so an old comment is not left standing.
  echo "identity-check: $1" >&2
  if [ "$what" = review ]; then
    printf '%s\n### Identity review\n\n⚠️ The review could not run (%s): see the job'"'"'s log.\n' "$marker" "$1" \
      > "$out"
  fi
  exit 1
}

# A CLI configuration file that does not exist makes tofu print a warning on stdout, which corrupts `show -json`.
for var in TF_CLI_CONFIG_FILE TERRAFORM_CONFIG; do
  if [ -n "${!var:-}" ] && [ ! -f "${!var}" ]; then
    echo "identity-check: $var names ${!var}, which does not exist: ignoring it" >&2
    unset "$var"
  fi
done
export TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1

if [ -f "$dir/Pulumi.yaml" ]; then tool=pulumi; else tool=tofu; fi
stack=()
[ -n "${PULUMI_STACK:-}" ] && stack=(--stack "$PULUMI_STACK")

install_provider() {  # this installation's provider, where the tool looks for it (a fresh runner has none)
  if [ "$tool" = pulumi ]; then
    export PULUMI_IGNORE_AMBIENT_PLUGINS=true  # the one installed here, not another found on PATH
    machineid pulumi install > "$work/install.txt" 2>&1
  else
    machineid terraform install > "$work/install.txt" 2>&1
  fi || { cat "$work/install.txt" >&2; fail "machineid $tool install failed"; }
}

tofu_init() {
  (cd "$dir" && "$tofu" init -input=false -no-color) > "$work/init.txt" 2>&1 ||
    { cat "$work/init.txt" >&2; fail "$tofu init failed"; }
}

plan_json() {  # the plan as JSON in $work/plan.json; $1: refresh first
  if [ "$tool" = pulumi ]; then
    local refresh=()
    [ "$1" = refresh ] && refresh=(--refresh)
    (cd "$dir" && pulumi preview --json --non-interactive "${refresh[@]}" "${stack[@]}") > "$work/plan.json" \
      2> "$work/plan.txt" || { cat "$work/plan.json" "$work/plan.txt" >&2; fail "pulumi preview failed"; }
  else
    tofu_init
    (cd "$dir" && "$tofu" plan -input=false -no-color -out="$work/plan.bin") > "$work/plan.txt" 2>&1 ||
      { cat "$work/plan.txt" >&2; fail "$tofu plan failed"; }
    (cd "$dir" && "$tofu" show -json "$work/plan.bin") > "$work/plan.json" 2> "$work/show.txt" ||
      { cat "$work/show.txt" >&2; fail "$tofu show -json failed"; }
  fi
}

install_provider
case "$what" in
  review)
    plan_json no-refresh
    args=("$work/plan.json")
    [ -n "$policy" ] && args+=(--policy "$policy")
    machineid review "${args[@]}" > "$work/review.md"
    code=$?
    [ "$code" = 0 ] || [ "$code" = 8 ] || fail "machineid review failed (exit $code)"
    { echo "$marker"; cat "$work/review.md"; } > "$out"
    cat "$work/review.md"
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
)" || fail "the plan could not be read"
    if [ -n "$changes" ]; then
      echo "identity-check: drift: these differ from the code:"; echo "$changes"
      exit 2
    fi
    echo "identity-check: no drift"
    ;;
  apply)
    if [ "$tool" = pulumi ]; then
      (cd "$dir" && pulumi up --yes --non-interactive --skip-preview --refresh "${stack[@]}") || fail "pulumi up failed"
    else
      tofu_init
      (cd "$dir" && "$tofu" apply -input=false -no-color -auto-approve) || fail "$tofu apply failed"
    fi
    echo "identity-check: applied"
    ;;
esac
