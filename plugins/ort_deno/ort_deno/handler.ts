// Loading and calling a handler as Lambda's Node runtime does, shared by ORT's two Deno
// front ends: worker.ts (one persistent process, ORT's worker protocol) and runner.ts (one
// process per event). Loading problems carry Lambda's runtime error types.

/** The handler module's extensions, in the order they are looked for (ort_deno/plugin.py). */
export const EXTENSIONS = [".ts", ".mts", ".tsx", ".js", ".mjs", ".jsx", ".cts", ".cjs"];

/** ORT's own files: their frames are left out of the user's stack traces. */
const OWN_FILES = new URL(".", import.meta.url).href;

export type Handler = (event: unknown, context: LambdaContext, callback: Callback) => unknown;
export type Callback = (error?: unknown, result?: unknown) => void;

export interface ContextFields {
  awsRequestId: string;
  deadlineMs: number;
  traceparent?: string | null;
  [field: string]: unknown;
}

/** The seam for an instrumenting preload: ``globalThis.__ortAroundHandler``, if a preload
 * defines it, is called around the handler; ``call`` runs it (docs/worker-protocol.md). */
type AroundHandler = (context: LambdaContext, call: () => Promise<unknown>) => unknown;
type Instrumented = { __ortAroundHandler?: AroundHandler; __ortSpans?: unknown[] };

export interface LambdaContext extends ContextFields {
  callbackWaitsForEmptyEventLoop: boolean;
  getRemainingTimeInMillis(): number;
}

export interface ErrorJSON {
  errorType: string;
  errorMessage: string;
  stackTrace: string[];
}

export class RuntimeError extends Error {
  constructor(type: string, message: string, stack?: string) {
    super(message);
    this.name = type;
    if (stack !== undefined) this.stack = stack;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// -- console, with Lambda's levels ----------------------------------------------------------

const LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
const ALIASES: Record<string, string> = { WARNING: "WARN", CRITICAL: "FATAL" };

/** Console arguments as Deno prints them: a first string's %s, %d, %i, %f, %o, %O and %c
 * filled in, strings as they are, anything else as Deno.inspect shows it. */
function format(args: unknown[]): string {
  let rest = args;
  const parts: string[] = [];
  if (typeof args[0] === "string") {
    rest = args.slice(1);
    parts.push(args[0].replace(/%[sdifoOc%]/g, (spec) => {
      if (spec === "%%") return "%";
      if (rest.length === 0) return spec;
      const value = rest.shift();
      if (spec === "%c") return "";
      if (spec === "%s" && typeof value === "string") return value;
      if (spec === "%d" || spec === "%i" || spec === "%f") {
        const number = Number(value);
        return String(spec === "%f" ? number : Math.trunc(number));
      }
      return Deno.inspect(value);
    }));
  }
  for (const value of rest) parts.push(typeof value === "string" ? value : Deno.inspect(value));
  return parts.join(" ");
}

/** As Lambda's Node runtime: console methods below `setting` (AWS_LAMBDA_LOG_LEVEL) print
 * nothing, and each call is one record at its level (trace prints no stack). ORT reads the
 * record's level from its mark, \x1f and the level's initial, and newlines in it travel as
 * \r (docs/worker-protocol.md, "Logs"). */
export function levelConsole(setting: string | undefined): void {
  const name = (setting ?? "").toUpperCase();
  const threshold = Math.max(0, LEVELS.indexOf(ALIASES[name] ?? name));
  const methods: [string, string, typeof Deno.stdout][] = [
    ["trace", "TRACE", Deno.stdout],
    ["debug", "DEBUG", Deno.stdout],
    ["info", "INFO", Deno.stdout],
    ["log", "INFO", Deno.stdout],
    ["warn", "WARN", Deno.stderr],
    ["error", "ERROR", Deno.stderr],
    ["fatal", "FATAL", Deno.stderr],
  ];
  const console = globalThis.console as unknown as Record<string, (...args: unknown[]) => void>;
  for (const [method, level, stream] of methods) {
    const mark = `\x1f${level[0]}`;
    console[method] = LEVELS.indexOf(level) < threshold ? () => {} : (...args: unknown[]) => {
      const data = encoder.encode(`${mark}${format(args).replaceAll("\n", "\r")}\n`);
      for (let written = 0; written < data.length;) {
        written += stream.writeSync(data.subarray(written));
      }
    };
  }
}

/** Lambda's error JSON: the thrown class's name, its message and the user's stack frames. */
/** Calls `fail` for an uncaught exception or unhandled rejection, instead of Deno's exit. */
export function onUncaught(fail: (error: unknown) => void): void {
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    fail(event.error);
  });
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    fail(event.reason);
  });
}

export function describe(error: unknown): ErrorJSON {
  if (error instanceof Error) {
    const className = (error as { constructor?: { name?: string } }).constructor?.name;
    const errorType = error.name && error.name !== "Error" ? error.name : className || "Error";
    const stackTrace = String(error.stack ?? "")
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line.startsWith("at ") && !line.includes(OWN_FILES));
    return { errorType, errorMessage: error.message, stackTrace };
  }
  return { errorType: typeof error, errorMessage: String(error), stackTrace: [] };
}

export function errorBytes(error: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(describe(error)));
}

// -- preloads (ORT_PRELOAD) and the spans they record -----------------------------------------

/** Imports the ``ORT_PRELOAD`` files (separated by ":"; relative ones from the task root), in
 * order, before the handler: ``Runtime.InitError`` naming the first that fails. */
export async function loadPreloads(taskRoot: string, list: string | undefined): Promise<void> {
  for (const entry of (list ?? "").split(":")) {
    if (!entry) continue;
    const file = entry.startsWith("/") ? entry : `${taskRoot.replace(/\/+$/, "")}/${entry}`;
    try {
      await import(fileUrl(file));
    } catch (error) {
      const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw new RuntimeError(
        "Runtime.InitError",
        `ORT_PRELOAD ${file} failed to load: ${what}`,
        error instanceof Error ? error.stack : undefined,
      );
    }
  }
}

/** The spans' message body: ``[]`` when a preload recorded something JSON cannot encode (the
 * result said they follow, so the message goes regardless). */
export function spansBytes(spans: unknown[]): Uint8Array {
  try {
    return new TextEncoder().encode(JSON.stringify(spans));
  } catch (error) {
    console.error(`ORT: a preload's spans cannot be sent: ${error}`);
    return new TextEncoder().encode("[]");
  }
}

/** What a preload recorded during the invocation, out of ``globalThis.__ortSpans``, which is
 * emptied in place (the preload may keep a reference to it). */
export function takeSpans(): unknown[] | undefined {
  const spans = (globalThis as unknown as Instrumented).__ortSpans;
  return Array.isArray(spans) && spans.length ? spans.splice(0) : undefined;
}

/** Sets (or, with null, removes) TRACEPARENT; a sandbox that denies it only loses it. */
export function setTraceparent(value: string | null): void {
  try {
    if (value === null) Deno.env.delete("TRACEPARENT");
    else Deno.env.set("TRACEPARENT", value);
  } catch {
    // --deny-env=TRACEPARENT: the context still carries it
  }
}

// -- loading ------------------------------------------------------------------------------

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

function fileUrl(path: string): string {
  const url = new URL("file:///");
  url.pathname = path;
  return url.href;
}

/** ``file.fn``, ``dir/file.fn`` or ``file.obj.fn`` under ``taskRoot``, as a function. */
export async function loadHandler(taskRoot: string, handlerString: string): Promise<Handler> {
  if (!handlerString) {
    throw new RuntimeError("Runtime.MalformedHandlerName", "No handler: set _HANDLER");
  }
  if (handlerString.includes("..")) {
    throw new RuntimeError(
      "Runtime.MalformedHandlerName",
      "'../' not allowed in handler name. Relative paths are not supported.",
    );
  }
  const slash = handlerString.lastIndexOf("/");
  const directory = handlerString.slice(0, slash + 1);
  const [moduleName, ...names] = handlerString.slice(slash + 1).split(".");
  if (handlerString.startsWith("/") || !moduleName || names.length === 0 || names.includes("")) {
    throw new RuntimeError("Runtime.MalformedHandlerName", `Bad handler ${handlerString}`);
  }
  const base = `${taskRoot.replace(/\/+$/, "")}/${directory}${moduleName}`;
  const file = EXTENSIONS.map((extension) => base + extension).find(isFile);
  if (file === undefined) {
    throw new RuntimeError(
      "Runtime.ImportModuleError",
      `Error: Cannot find module '${directory}${moduleName}' ` +
        `(looked for ${EXTENSIONS.join(", ")} in ${taskRoot})`,
    );
  }
  let loaded: Record<string, unknown>;
  try {
    loaded = await import(fileUrl(file));
  } catch (error) {
    throw loadingError(error);
  }
  let handler: unknown = loaded;
  for (const name of names) {
    handler = handler == null ? undefined : (handler as Record<string, unknown>)[name];
  }
  if (typeof handler !== "function") {
    throw new RuntimeError(
      "Runtime.HandlerNotFound",
      `${directory}${moduleName}.${names.join(".")} is undefined or not exported`,
    );
  }
  return handler as Handler;
}

/** Deno reports a module that does not parse, or is missing, as a TypeError on import. */
function loadingError(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  if (error instanceof SyntaxError || error.message.startsWith("SyntaxError")) {
    return new RuntimeError("Runtime.UserCodeSyntaxError", error.message, error.stack);
  }
  const code = (error as { code?: string }).code;
  if (code === "ERR_MODULE_NOT_FOUND" || code === "ERR_UNSUPPORTED_ESM_URL_SCHEME") {
    return new RuntimeError("Runtime.ImportModuleError", `Error: ${error.message}`, error.stack);
  }
  return error;
}

// -- calling ------------------------------------------------------------------------------

export function makeContext(fields: ContextFields): LambdaContext {
  return {
    ...fields,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, fields.deadlineMs - Date.now()),
  };
}

/** The handler's answer: its return value, its promise's value, or its callback's result. */
export function callHandler(
  handler: Handler,
  event: unknown,
  context: LambdaContext,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const callback: Callback = (error, result) => {
      if (settled) return;
      settled = true;
      if (error !== null && error !== undefined) reject(error);
      else resolve(result);
    };
    let returned: unknown;
    try {
      returned = handler(event, context, callback);
    } catch (error) {
      callback(error);
      return;
    }
    if (returned && typeof (returned as PromiseLike<unknown>).then === "function") {
      (returned as PromiseLike<unknown>).then(
        (value) => callback(null, value),
        (error) => callback(error),
      );
    } else if (handler.length < 3) {
      callback(null, returned);
    }
  });
}

/** Runs the handler on the event's JSON bytes: ``[true, answer JSON]`` or ``[false, error]``. */
/** A CloudEvent's binary data (`data_base64`) as bytes in `data`, as the spec's SDKs give it. */
function decodeCloudEvent(event: unknown): unknown {
  if (event && typeof event === "object" && "data_base64" in event) {
    const { data_base64, ...rest } = event as Record<string, unknown>;
    const binary = atob(String(data_base64));
    return { ...rest, data: Uint8Array.from(binary, (c) => c.charCodeAt(0)) };
  }
  return event;
}

export async function invoke(
  handler: Handler,
  body: Uint8Array,
  fields: ContextFields,
  signature?: string,
): Promise<[boolean, Uint8Array]> {
  let result: unknown;
  // The trace context of the handler's span, for code with its own OpenTelemetry SDK.
  const traceparent = typeof fields.traceparent === "string" ? fields.traceparent : null;
  try {
    let event = JSON.parse(decoder.decode(body));
    if (signature === "cloudevent") event = decodeCloudEvent(event);
    const context = makeContext(fields);
    const call = () => callHandler(handler, event, context);
    if (traceparent !== null) setTraceparent(traceparent);
    const around = (globalThis as unknown as Instrumented).__ortAroundHandler;
    result = await (typeof around === "function" ? around(context, call) : call());
  } catch (error) {
    return [false, errorBytes(error)];
  } finally {
    if (traceparent !== null) setTraceparent(null);
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(result === undefined ? null : result);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return [false, errorBytes(new RuntimeError("Runtime.MarshalError", message))];
  }
  return [true, encoder.encode(text ?? "null")]; // a function or a symbol stringifies to nothing
}
