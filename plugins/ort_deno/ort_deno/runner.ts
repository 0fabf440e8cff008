// ORT's per-invocation Deno runner: one process per event (ORT_DENO_MODE=per-invocation).
//
// stdin:  one line of JSON, {"marker": M, "context": {...}} (or {"marker": M, "check": true}
//         to load the handler and stop), then the event's JSON bytes until EOF.
// stdout: the function's log, then, last, the result: the marker M, a JSON line
//         {"ok": bool, "length": N} (and "spans": [...] when a preload recorded some), and
//         N bytes: the answer's JSON, or the error JSON.
// The exit status is 0 once the result is written. A process that ends without writing one
// (Deno.exit, a crash, a signal) failed the invocation: ORT reports Runtime.ExitError.
// The marker is new for each event and read before the handler's module is, so no output of
// the handler's, however it writes to stdout, can pass for the result.

import {
  errorBytes,
  type Handler,
  invoke,
  levelConsole,
  loadHandler,
  loadPreloads,
  onUncaught,
  setTraceparent,
  takeSpans,
} from "./handler.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function writeAll(data: Uint8Array): Promise<void> {
  for (let written = 0; written < data.length;) {
    written += await Deno.stdout.write(data.subarray(written));
  }
}

let marker = "";

async function answer(ok: boolean, body: Uint8Array, status = 0): Promise<never> {
  const spans = takeSpans(); // what a preload recorded: ORT hands them to telemetry plugins
  const result = { ok, length: body.length, ...(spans && { spans }) };
  await writeAll(encoder.encode(`${marker}${JSON.stringify(result)}\n`));
  await writeAll(body);
  Deno.exit(status);
}

async function main(): Promise<never> {
  levelConsole(Deno.env.get("AWS_LAMBDA_LOG_LEVEL"));
  const input = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
  const newline = input.indexOf(10);
  const header = JSON.parse(decoder.decode(input.subarray(0, newline)));
  marker = String(header.marker);
  const event = input.subarray(newline + 1);

  // An uncaught exception or rejection fails the invocation, as in the persistent worker.
  let answered = false;
  const fail = (error: unknown) => {
    if (answered) return;
    answered = true;
    answer(false, errorBytes(error), 129);
  };
  onUncaught(fail);

  let handler: Handler;
  setTraceparent(null); // the invocation's own, set only while it runs
  try {
    const taskRoot = Deno.env.get("LAMBDA_TASK_ROOT") || Deno.cwd();
    await loadPreloads(taskRoot, Deno.env.get("ORT_PRELOAD"));
    handler = await loadHandler(taskRoot, Deno.env.get("_HANDLER") ?? "");
  } catch (error) {
    answered = true;
    return answer(false, errorBytes(error));
  }
  if (header.check) {
    answered = true;
    return answer(true, encoder.encode("null"));
  }
  const [ok, body] = await invoke(handler, event, header.context, header.signature);
  if (answered) return new Promise<never>(() => {});
  answered = true;
  return answer(ok, body);
}

main().catch((error) => {
  console.error("ORT's Deno runner failed:", error);
  Deno.exit(1);
});
