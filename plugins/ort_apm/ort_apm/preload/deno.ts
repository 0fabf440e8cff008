// ort-apm's preload for ORT's Deno worker and runner (ORT_PRELOAD, docs/worker-protocol.md,
// "Preloads and spans"): times the handler and its outgoing fetch calls and leaves the spans
// in globalThis.__ortSpans, which the worker sends to ORT with the invocation's result. No
// OpenTelemetry SDK: spans are plain objects, OTLP-like. Only invocations with a traceparent
// (the handler span's context, from ORT) are traced. Times are epoch nanoseconds as decimal
// strings (a JS number cannot hold them exactly). Needs no permission of its own.

type Attributes = Record<string, string | number | boolean>;
interface Span {
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  name: string;
  kind: "internal" | "client";
  startTimeUnixNano: string;
  endTimeUnixNano: string | null;
  attributes: Attributes;
  status: { code: "unset" | "ok" | "error"; message: string };
}
type Around = (context: { traceparent?: string | null }, call: () => unknown) => unknown;
const global = globalThis as unknown as {
  __ortSpans?: Span[];
  __ortAroundHandler?: Around;
};

if (!global.__ortAroundHandler) {
  const spans = (global.__ortSpans ??= []);
  const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
  let name = "handler";
  try {
    name = Deno.env.get("_HANDLER") || name;
  } catch {
    // not allowed to read it: the generic name
  }
  const open = new Set<Span>(); // client spans not ended yet: ended with the handler's span
  let current: Span | null = null; // the handler's span, while it runs
  let flags = "01"; // the invocation's trace flags (sampled or not), passed on downstream
  // Epoch nanoseconds: the monotonic clock plus an origin, which each reading of Date.now()
  // (milliseconds) bounds within a millisecond. The bounds tighten with every timestamp, and
  // the origin is their middle: a fraction of a millisecond off at first, microseconds soon
  // (performance.timeOrigin is a fraction of a millisecond off; a timer to sample meanwhile
  // would hold the worker's import of this file back by tens of milliseconds).
  const mono = () => BigInt(Math.round(performance.now() * 1e6));
  let low = 0n; // the origin is in [low, high]
  let high = 0n;
  const sample = () => {
    const before = mono();
    const ms = BigInt(Date.now()) * 1000000n;
    const after = mono();
    const newLow = ms - after;
    const newHigh = ms + 1000000n - before;
    if (newLow > high || newHigh < low || high === 0n) { // the first, or the wall clock moved
      low = newLow;
      high = newHigh;
    } else {
      if (newLow > low) low = newLow;
      if (newHigh < high) high = newHigh;
    }
  };
  sample();
  const now = () => {
    sample();
    return ((low + high) / 2n + mono()).toString();
  };
  const spanId = (): string => {
    const id = Array.from(crypto.getRandomValues(new Uint8Array(8)))
      .map((byte) => byte.toString(16).padStart(2, "0"))
      .join("");
    return id === "0000000000000000" ? spanId() : id;
  };
  const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));
  const span = (traceId: string, id: string, parent: string | null, spanName: string) => ({
    traceId,
    spanId: id,
    parentSpanId: parent,
    name: spanName,
    kind: "internal" as Span["kind"],
    startTimeUnixNano: now(),
    endTimeUnixNano: null,
    attributes: {} as Attributes,
    status: { code: "unset", message: "" } as Span["status"],
  });
  const finish = (span: Span) => {
    if (span.endTimeUnixNano !== null) return;
    span.endTimeUnixNano = now();
    open.delete(span);
    spans.push(span);
  };
  const fail = (span: Span, error: unknown) => {
    span.status = { code: "error", message: messageOf(error) };
    span.attributes["error.type"] = error instanceof Error ? error.name : typeof error;
  };

  // The seam: ORT's worker calls this around the handler (`call` runs it) when it is defined.
  global.__ortAroundHandler = async (context, call) => {
    const match = TRACEPARENT.exec(context.traceparent || "");
    if (match === null) return call();
    const handler = span(match[1], match[2], null, name); // ORT sets the parent
    handler.attributes["code.function.name"] = name;
    current = handler;
    flags = match[3];
    try {
      return await call();
    } catch (error) {
      fail(handler, error);
      throw error;
    } finally {
      current = null;
      for (const client of open) finish(client); // still running: ended with the invocation
      finish(handler);
    }
  };

  // -- fetch: resolves with the response's head, or rejects -----------------------------------
  const fetch = globalThis.fetch;
  globalThis.fetch = function (input: string | URL | Request, init?: RequestInit) {
    if (current === null) return fetch(input, init);
    let client: Span | undefined;
    let options: RequestInit;
    try {
      const request = input instanceof Request ? input : null;
      const url = new URL(request !== null ? request.url : String(input));
      if (url.username || url.password) url.username = url.password = "REDACTED";
      url.hash = "";
      const method = (init?.method ?? request?.method ?? "GET").toUpperCase();
      const headers = new Headers(init?.headers ?? request?.headers);
      const port = url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
      client = span(current.traceId, spanId(), current.spanId, method);
      client.kind = "client";
      Object.assign(client.attributes, {
        "http.request.method": method,
        "url.full": url.href,
        "server.address": url.hostname.replace(/^\[|\]$/g, ""),
        "server.port": port,
      });
      open.add(client);
      if (!headers.has("traceparent")) {
        headers.set("traceparent", `00-${client.traceId}-${client.spanId}-${flags}`);
      }
      options = { ...init, headers };
    } catch {
      if (client !== undefined) open.delete(client);
      return fetch(input, init);
    }
    const traced = client;
    return fetch(input, options).then(
      (response) => {
        traced.attributes["http.response.status_code"] = response.status;
        if (response.status >= 400) {
          traced.status = { code: "error", message: "" };
          traced.attributes["error.type"] = String(response.status);
        }
        finish(traced);
        return response;
      },
      (error) => {
        fail(traced, error);
        finish(traced);
        throw error;
      },
    );
  };
}
