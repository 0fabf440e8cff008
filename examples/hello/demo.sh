#!/bin/sh
# Runs examples/hello behind ORT's embedded Lambda emulator and invokes it once.
set -eu
cd "$(dirname "$0")"
port="${DEMO_PORT:-9000}"
url="http://127.0.0.1:$port/2015-03-31/functions/function/invocations"

ort emulate --port "$port" --handler app.handler > emulator.log 2>&1 &
emulator=$!
trap 'kill $emulator 2>/dev/null; wait $emulator 2>/dev/null || true' EXIT

echo "$ curl -d @event.json $url"
curl --silent --fail-with-body --retry 20 --retry-delay 1 --retry-connrefused \
     --data @event.json "$url"
echo
echo "--- emulator log ---"
sleep 0.2
cat emulator.log
rm -f emulator.log
