#!/bin/sh
# The README's demo: hello functions in Python, Node.js and Deno, each behind ORT's embedded
# Lambda emulator (`ort emulate`), invoked once with curl; then one behind HTTP (`ort serve`).
set -eu
cd "$(dirname "$0")"
port="${DEMO_PORT:-9000}"

invoke() {  # folder handler language
  url="http://127.0.0.1:$port/2015-03-31/functions/function/invocations"
  (cd "$1" && exec ort emulate --port "$port" --handler "$2" --language "$3") > emulator.log 2>&1 &
  emulator=$!
  printf '\n== %s (%s) ==\n$ curl -d @%s/event.json %s\n' "$3" "$1" "$1" "$url"
  curl --silent --fail-with-body --retry 30 --retry-delay 1 --retry-connrefused \
       --data @"$1/event.json" "$url"
  echo
  kill "$emulator"; wait "$emulator" 2>/dev/null || true
  grep -E '^(START|END|REPORT)' emulator.log || true
  rm -f emulator.log
  port=$((port + 1))
}

invoke hello app.handler python
invoke hello-node index.handler node
invoke hello-deno hello.handler deno

url="http://127.0.0.1:$port/hello?name=ORT"
(cd hello-http && SCW_PUBLIC=true exec ort serve --host 127.0.0.1 --port "$port" \
   --handler handler.handle) > serve.log 2>&1 &
server=$!
printf '\n== python behind HTTP (hello-http) ==\n$ curl %s\n' "$url"
curl --silent --fail-with-body --retry 30 --retry-delay 1 --retry-connrefused "$url"
echo
kill "$server"; wait "$server" 2>/dev/null || true
rm -f serve.log
