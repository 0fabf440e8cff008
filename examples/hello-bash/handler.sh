#!/bin/bash
# An executable ORT function: the event arrives on stdin (a CloudEvent in structured JSON with
# ORT's default signature, or the raw event), the answer leaves on stdout, and anything
# written to stderr goes to the function's log. No jq: plain bash, tr and sed pick "name".
# `_HANDLER=handler.sh` greets with "Hello"; `_HANDLER=handler.sh.Bonjour` passes "Bonjour"
# as $1.
set -euo pipefail

event=$(tr -d '\n')
name=$(printf '%s' "$event" | sed -n 's/.*"name"[[:space:]]*:[[:space:]]*"\([^"\\]*\)".*/\1/p')
greeting=${1:-Hello}

echo "hello-bash: request ${ORT_REQUEST_ID:-?}, ${ORT_REMAINING_MS:-?} ms left" >&2
printf '{"message": "%s, %s!"}\n' "$greeting" "${name:-world}"
