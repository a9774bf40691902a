#!/bin/sh
# apply.sh - runs the management commands of a KQL file (setup.kql by
# default) against an ADX endpoint, one POST /v1/rest/mgmt per command.
# Used by the docker stack's `adx-setup` service against the ADX emulator;
# works against a real cluster too with ADX_TOKEN set (a bearer token, e.g.
# `az account get-access-token --resource https://<cluster>...`).
#
#   ADX_URL=http://127.0.0.1:8082 ADX_DB=leaderboard sh apply.sh [FILE]
#
# Blocks are separated by blank lines; // lines are comments; only blocks
# starting with '.' are sent. An "already exists" answer counts as success,
# so the script can run again on a stack that kept its data.
set -eu
file=${1:-$(dirname "$0")/setup.kql}
url=${ADX_URL:?set ADX_URL, e.g. http://127.0.0.1:8082}
db=${ADX_DB:-leaderboard}
wait_s=${ADX_WAIT_SECONDS:-60}

auth=""
if [ -n "${ADX_TOKEN:-}" ]; then
  auth="Authorization: Bearer $ADX_TOKEN"
fi

# Wait for the endpoint to answer (the emulator may still be starting).
i=0
until curl -fsS -o /dev/null "$url/v1/rest/auth/metadata"; do
  i=$((i + 1))
  if [ "$i" -ge "$wait_s" ]; then
    echo "apply.sh: $url did not answer within ${wait_s}s" >&2
    exit 1
  fi
  sleep 1
done

# One JSON request body per command, as {"db":..,"csl":..}: the command's
# lines joined with spaces, backslashes and double quotes escaped.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk -v db="$db" -v dir="$tmp" '
  function flush() {
    if (cmd != "" && substr(cmd, 1, 1) == ".") {
      n++
      gsub(/\\/, "\\\\", cmd); gsub(/"/, "\\\"", cmd)
      printf("{\"db\":\"%s\",\"csl\":\"%s\"}", db, cmd) > (dir "/" sprintf("%03d", n))
      close(dir "/" sprintf("%03d", n))
    }
    cmd = ""
  }
  /^[ \t]*\/\// { next }
  /^[ \t]*$/ { flush(); next }
  { sub(/^[ \t]+/, ""); sub(/[ \t\r]+$/, ""); cmd = (cmd == "" ? $0 : cmd " " $0) }
  END { flush() }
' "$file"

count=0
for body in "$tmp"/*; do
  [ -f "$body" ] || continue
  csl=$(sed -e 's/^{"db":"[^"]*","csl":"//' -e 's/"}$//' "$body" | cut -c1-70)
  if [ -n "$auth" ]; then
    code=$(curl -sS -o "$tmp/answer" -w '%{http_code}' -X POST \
      -H "Content-Type: application/json; charset=utf-8" -H "$auth" \
      --data-binary @"$body" "$url/v1/rest/mgmt")
  else
    code=$(curl -sS -o "$tmp/answer" -w '%{http_code}' -X POST \
      -H "Content-Type: application/json; charset=utf-8" \
      --data-binary @"$body" "$url/v1/rest/mgmt")
  fi
  if [ "$code" = 200 ]; then
    echo "ok: $csl"
  elif grep -qi "already exists" "$tmp/answer"; then
    echo "ok (already there): $csl"
  else
    echo "apply.sh: HTTP $code for: $csl" >&2
    head -c 600 "$tmp/answer" >&2
    echo >&2
    exit 1
  fi
  count=$((count + 1))
done
echo "applied $count commands to $db at $url"
