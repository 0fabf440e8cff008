#!/bin/bash
# The reference for executables: the bash loop of Lambda's custom-runtime tutorial, with curl.
set -euo pipefail
api="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
handler="$LAMBDA_TASK_ROOT/$_HANDLER"
headers=$(mktemp)
while true; do
  event=$(curl -sS -LD "$headers" "$api/invocation/next")
  id=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$headers" | tr -d '[:space:]' | cut -d: -f2)
  response=$(printf '%s' "$event" | "$handler")
  curl -sS -o /dev/null -X POST "$api/invocation/$id/response" -d "$response"
done
