// ORT's persistent Deno worker: loads the handler once, then serves ORT's worker protocol
// (docs/worker-protocol.md) on the Unix socket named in ORT_WORKER_SOCKET until it closes.
// stdout and stderr stay the function's log: ORT tags their lines with the request id.

import {
  type ContextFields,
  errorBytes,
  type Handler,
  invoke,
  levelConsole,
  loadHandler,
  loadPreloads,
  onUncaught,
  setTraceparent,
  spansBytes,
  takeSpans,
} from "./handler.ts";

const MAX_PART = 64 * 1024 * 1024; // as ORT's side: anything bigger is a broken peer
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// -- the protocol: a length-prefixed JSON header, then a length-prefixed raw body ---------

/** Exactly ``size`` bytes, read straight into one buffer however many reads it takes. */
async function readExact(conn: Deno.Conn, size: number): Promise<Uint8Array | null> {
  const data = new Uint8Array(size);
  for (let filled = 0; filled < size;) {
    const count = await conn.read(data.subarray(filled));
    if (count === null) return null;
    filled += count;
  }
  return data;
}

async function readPart(conn: Deno.Conn): Promise<Uint8Array | null> {
  const prefix = await readExact(conn, 4);
  if (prefix === null) return null;
  const size = new DataView(prefix.buffer).getUint32(0);
  if (size > MAX_PART) throw new Error(`a message part of ${size} bytes is over the limit`);
  return readExact(conn, size);
}

type Header = { type?: unknown; id?: unknown; context?: unknown; signature?: unknown };

/** The next message, or null when ORT closed the socket. */
async function receive(conn: Deno.Conn): Promise<[Header, Uint8Array] | null> {
  const head = await readPart(conn);
  if (head === null) return null;
  const body = await readPart(conn);
  if (body === null) return null;
  return [JSON.parse(decoder.decode(head)), body];
}

let sending = Promise.resolve();

/** Sends one message; messages never interleave, whoever sends them. */
function send(
  conn: Deno.Conn,
  header: Record<string, unknown>,
  body: Uint8Array = new Uint8Array(),
) {
  const head = encoder.encode(JSON.stringify(header));
  const prefix = new Uint8Array(8 + head.length);
  const view = new DataView(prefix.buffer);
  view.setUint32(0, head.length);
  prefix.set(head, 4);
  view.setUint32(4 + head.length, body.length);
  sending = sending.then(async () => {
    for (const part of [prefix, body]) {
      for (let written = 0; written < part.length;) {
        written += await conn.write(part.subarray(written));
      }
    }
  });
  return sending;
}

// -- the loop -----------------------------------------------------------------------------

async function main(): Promise<never> {
  levelConsole(Deno.env.get("AWS_LAMBDA_LOG_LEVEL"));
  const conn = await Deno.connect({ transport: "unix", path: Deno.env.get("ORT_WORKER_SOCKET")! });
  let handler: Handler;
  setTraceparent(null); // each invocation's own, set only while it runs
  try {
    const taskRoot = Deno.env.get("LAMBDA_TASK_ROOT") || Deno.cwd();
    await loadPreloads(taskRoot, Deno.env.get("ORT_PRELOAD"));
    handler = await loadHandler(taskRoot, Deno.env.get("_HANDLER") ?? "");
  } catch (error) {
    await send(conn, { type: "init_error" }, errorBytes(error));
    conn.close();
    Deno.exit(1);
  }

  // An uncaught exception or rejection ends the worker, as on Lambda: the invocation in
  // flight gets the error first, and ORT starts a fresh worker for the next event.
  let inFlight: unknown = null;
  const fail = async (error: unknown) => {
    if (inFlight !== null) {
      const id = inFlight;
      inFlight = null;
      const spans = takeSpans();
      const header = { type: "result", id, ok: false, exiting: true, ...(spans && { spans }) };
      await send(conn, header, errorBytes(error));
    } else {
      console.error("Uncaught", error);
    }
    Deno.exit(129);
  };
  onUncaught(fail);

  await send(conn, { type: "ready" });
  for (;;) {
    const message = await receive(conn);
    if (message === null) Deno.exit(0); // ORT closed the socket: the sandbox is ending
    const [header, body] = message;
    if (header.type !== "invoke") continue;
    inFlight = header.id;
    const [ok, answer] = await invoke(
      handler,
      body,
      header.context as ContextFields,
      header.signature as string | undefined,
    );
    if (inFlight === header.id) {
      inFlight = null;
      const spans = takeSpans();
      // the spans in a message of their own, encoded once the answer is on its way
      const result = { type: "result", id: header.id, ok, ...(spans && { spans_follow: true }) };
      const sent = send(conn, result, answer);
      if (spans) send(conn, { type: "spans", id: header.id }, spansBytes(spans));
      await sent;
    }
  }
}

main().catch((error) => {
  console.error("ORT's Deno worker failed:", error);
  Deno.exit(1);
});
