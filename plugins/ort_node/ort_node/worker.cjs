'use strict';
// ORT's Node.js worker: loads the handler as Lambda's Node runtime does, then serves ORT's
// worker protocol (docs/worker-protocol.md) on the Unix socket named in ORT_WORKER_SOCKET.
// stdout and stderr stay the function's: ORT tags their lines with the request id.

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { pathToFileURL } = require('node:url');
const { format } = require('node:util');

const EXTENSIONS = ['', '.js', '.mjs', '.cjs'];

class WorkerError extends Error {
  constructor(type, message) {
    super(message);
    this.name = type;
  }
}

// -- console, with Lambda's levels ---------------------------------------------------------

const LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];

// As Lambda's Node runtime: console methods below AWS_LAMBDA_LOG_LEVEL print nothing, and each
// call is one record at its level (trace prints no stack). ORT reads the record's level from
// its mark, \x1f and the level's initial, and newlines in it travel as \r
// (docs/worker-protocol.md, "Logs").
function levelConsole(setting) {
  const name = String(setting || '').toUpperCase();
  const alias = { WARNING: 'WARN', CRITICAL: 'FATAL' }[name];
  const threshold = Math.max(0, LEVELS.indexOf(alias || name));
  const methods = [
    ['trace', 'TRACE', process.stdout], ['debug', 'DEBUG', process.stdout],
    ['info', 'INFO', process.stdout], ['log', 'INFO', process.stdout],
    ['warn', 'WARN', process.stderr], ['error', 'ERROR', process.stderr],
    ['fatal', 'FATAL', process.stderr],
  ];
  for (const [method, level, stream] of methods) {
    const mark = `\x1f${level[0]}`;
    console[method] = LEVELS.indexOf(level) < threshold
      ? () => {}
      : (...args) => { stream.write(`${mark}${format(...args).replace(/\n/g, '\r')}\n`); };
  }
}

// What the invocation wrote reaches ORT before its result, so it carries its request id: a
// pipe write that does not fit in the pipe at once is queued by Node.
function written(stream) {
  return stream.writableLength ? new Promise((resolve) => stream.write('', resolve)) : null;
}

// -- the protocol ------------------------------------------------------------------------

function send(socket, header, body = Buffer.alloc(0)) {
  const head = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(head.length);
  const bodyPrefix = Buffer.alloc(4);
  bodyPrefix.writeUInt32BE(body.length);
  socket.write(Buffer.concat([prefix, head, bodyPrefix, body]));
}

function describe(error) {
  if (error instanceof Error) {
    return {
      errorType: error.name || error.constructor.name,
      errorMessage: error.message,
      stackTrace: String(error.stack || '').split('\n').slice(1).map((line) => line.trim()),
    };
  }
  return { errorType: typeof error, errorMessage: String(error), stackTrace: [] };
}

// Chunks are kept in a list until a whole message is there: joining each chunk to what came
// before would copy a 6 MB event about a hundred times (64 KB reads).
function messages(socket, onMessage) {
  let chunks = [];
  let buffered = 0;
  let needed = 8; // bytes before the next length can be read: prefix, or the whole message
  socket.on('data', (chunk) => {
    chunks.push(chunk);
    buffered += chunk.length;
    while (buffered >= needed) {
      const buffer = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, buffered);
      chunks = [buffer];
      const headLength = buffer.readUInt32BE(0);
      if (buffer.length < 8 + headLength) {
        needed = 8 + headLength;
        return;
      }
      const end = 8 + headLength + buffer.readUInt32BE(4 + headLength);
      if (buffer.length < end) {
        needed = end;
        return;
      }
      const header = JSON.parse(buffer.subarray(4, 4 + headLength).toString());
      const body = buffer.subarray(8 + headLength, end);
      const rest = buffer.subarray(end);
      chunks = rest.length ? [rest] : [];
      buffered = rest.length;
      needed = 8;
      onMessage(header, body);
    }
  });
}

// -- loading the handler, the way Lambda's Node runtime does ----------------------------------

function nearestPackageType(directory) {
  for (let dir = directory; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      try {
        return JSON.parse(fs.readFileSync(file, 'utf8')).type;
      } catch {
        return undefined;
      }
    }
    if (path.dirname(dir) === dir) return undefined;
  }
}

async function loadModule(file) {
  const esm = file.endsWith('.mjs') ||
    (file.endsWith('.js') && nearestPackageType(path.dirname(file)) === 'module');
  if (esm) return import(pathToFileURL(file).href);
  try {
    return require(file);
  } catch (error) {
    if (error.code === 'ERR_REQUIRE_ESM' || error.code === 'ERR_REQUIRE_ASYNC_MODULE') {
      return import(pathToFileURL(file).href);
    }
    throw error;
  }
}

async function loadHandler(taskRoot, handlerString) {
  if (!handlerString) throw new WorkerError('Runtime.MalformedHandlerName', 'No handler: set _HANDLER');
  if (handlerString.includes('..')) {
    throw new WorkerError(
      'Runtime.MalformedHandlerName',
      "'../' not allowed in handler name. Relative paths are not supported.",
    );
  }
  const slash = handlerString.lastIndexOf('/');
  const directory = handlerString.slice(0, slash + 1);
  const [moduleName, ...names] = handlerString.slice(slash + 1).split('.');
  if (!moduleName || names.length === 0) {
    throw new WorkerError('Runtime.MalformedHandlerName', `Bad handler ${handlerString}`);
  }
  const base = path.resolve(taskRoot, directory, moduleName);
  const file = EXTENSIONS.map((extension) => base + extension).find((candidate) => {
    try {
      return fs.statSync(candidate).isFile();
    } catch {
      return false;
    }
  });
  if (!file) {
    throw new WorkerError(
      'Runtime.ImportModuleError',
      `Error: Cannot find module '${directory}${moduleName}'`,
    );
  }
  let loaded;
  try {
    loaded = await loadModule(file);
  } catch (error) {
    if (error instanceof SyntaxError) {
      throw Object.assign(new WorkerError('Runtime.UserCodeSyntaxError', `${error.name}: ${error.message}`), { stack: error.stack });
    }
    if (error.code === 'MODULE_NOT_FOUND' || error.code === 'ERR_MODULE_NOT_FOUND') {
      throw Object.assign(new WorkerError('Runtime.ImportModuleError', `Error: ${error.message}`), { stack: error.stack });
    }
    throw error;
  }
  let handler = loaded;
  for (const name of names) handler = handler == null ? undefined : handler[name];
  if (typeof handler !== 'function') {
    throw new WorkerError(
      'Runtime.HandlerNotFound',
      `${directory}${moduleName}.${names.join('.')} is undefined or not exported`,
    );
  }
  return handler;
}

// -- preloads (ORT_PRELOAD) -------------------------------------------------------------------

// Files an instrumenting plugin asks to load before the handler (docs/worker-protocol.md,
// "Preloads and spans"), in order: .mjs imported, the rest required (imported when they are
// ES modules).
async function loadPreloads(list) {
  for (const entry of (list || '').split(path.delimiter)) {
    if (!entry) continue;
    const file = path.resolve(entry);
    try {
      await loadModule(file);
    } catch (error) {
      const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw Object.assign(
        new WorkerError('Runtime.InitError', `ORT_PRELOAD ${file} failed to load: ${what}`),
        { stack: error instanceof Error ? error.stack : undefined },
      );
    }
  }
}

// What a preload recorded during the invocation, once the handler is done: what its
// globalThis.__ortTakeSpans() returns, else the content of globalThis.__ortSpans, which is
// emptied in place (the preload may keep a reference to it).
function takeSpans() {
  const take = globalThis.__ortTakeSpans;
  const spans = typeof take === 'function' ? take() : globalThis.__ortSpans;
  return Array.isArray(spans) && spans.length ? spans.splice(0) : undefined;
}

// The spans, in a message of their own after the result: encoding them is off the answer's
// path. The result said they follow, so a message goes even if they cannot be encoded.
function sendSpans(socket, id, spans) {
  let body;
  try {
    body = Buffer.from(JSON.stringify(spans));
  } catch (error) {
    console.error(`ORT: a preload's spans cannot be sent: ${error}`);
    body = Buffer.from('[]');
  }
  send(socket, { type: 'spans', id }, body);
}

// -- remote debugging (ORT_ALLOW_DEBUG=1 and an event's _debugProxy) ------------------------

// ORT relays the inspector to the developer's debugger (docs/deploy.md, "Remote debugging").
// The first time, the inspector opens and waits for a debugger: until one attaches, or until
// ORT, after ORT_DEBUG_WAIT seconds, resumes it itself. Later events find it open.
function openInspector(port) {
  const inspector = require('node:inspector');
  if (inspector.url()) return;
  try {
    inspector.open(port, '127.0.0.1', true);
  } catch (error) {
    console.error(`ORT: cannot open the inspector on 127.0.0.1:${port}: ${error.message}`);
  }
}

// -- TRACEPARENT, each invocation's own ---------------------------------------------------

// process.env shows the invocation's TRACEPARENT without setenv(): glibc keeps every value
// setenv() was ever given (about 120 bytes an invocation, never freed), and the call costs
// microseconds on the answer's path. A Proxy over the real environment adds the variable to
// what JavaScript sees: reads, `in`, keys, spreads, and the environment of child processes
// spawned with process.env (child_process's default). C code calling getenv() does not see it.
function invocationEnv(real) {
  const NAME = 'TRACEPARENT';
  let value = null; // this invocation's, unless the function set its own
  const shown = (key) => key === NAME && value !== null;
  const env = new Proxy(real, {
    get: (target, key) => (shown(key) ? value : Reflect.get(target, key)),
    has: (target, key) => shown(key) || Reflect.has(target, key),
    ownKeys: (target) => {
      const keys = Reflect.ownKeys(target);
      return value !== null && !keys.includes(NAME) ? [...keys, NAME] : keys;
    },
    getOwnPropertyDescriptor: (target, key) => (shown(key)
      ? { value, writable: true, enumerable: true, configurable: true }
      : Reflect.getOwnPropertyDescriptor(target, key)),
    set: (target, key, newValue) => {
      if (key === NAME) value = null; // the function's own value, in the real environment
      return Reflect.set(target, key, newValue);
    },
    deleteProperty: (target, key) => {
      if (key === NAME) value = null;
      return Reflect.deleteProperty(target, key);
    },
    defineProperty: (target, key, descriptor) => {
      if (key === NAME) value = null;
      return Reflect.defineProperty(target, key, descriptor);
    },
  });
  return { env, set: (traceparent) => { value = traceparent; } };
}

// -- invoking it ------------------------------------------------------------------------------

function makeContext(fields) {
  return {
    ...fields,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, fields.deadlineMs - Date.now()),
  };
}

function callHandler(handler, event, context) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const callback = (error, result) => {
      if (settled) return;
      settled = true;
      if (error !== null && error !== undefined) reject(error);
      else resolve(result);
    };
    let returned;
    try {
      returned = handler(event, context, callback);
    } catch (error) {
      callback(error);
      return;
    }
    if (returned && typeof returned.then === 'function') {
      returned.then((value) => callback(null, value), (error) => callback(error));
    } else if (handler.length < 3) {
      callback(null, returned);
    }
  });
}

async function main() {
  levelConsole(process.env.AWS_LAMBDA_LOG_LEVEL);
  delete process.env.TRACEPARENT; // each invocation's own, shown only while it runs
  const traceparentEnv = invocationEnv(process.env);
  process.env = traceparentEnv.env; // before the preloads and the handler take it
  const socket = net.connect(process.env.ORT_WORKER_SOCKET);
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let handler;
  try {
    await loadPreloads(process.env.ORT_PRELOAD);
    handler = await loadHandler(process.env.LAMBDA_TASK_ROOT || process.cwd(), process.env._HANDLER);
  } catch (error) {
    send(socket, { type: 'init_error' }, Buffer.from(JSON.stringify(describe(error))));
    socket.end(() => process.exit(1));
    return;
  }

  let inFlight = null;
  const fail = (error) => {
    // An uncaught exception or rejection ends the worker, as on Lambda; the invocation in
    // flight gets the error first.
    if (inFlight !== null) {
      const header = { type: 'result', id: inFlight, ok: false, exiting: true };
      const spans = takeSpans();
      if (spans) header.spans = spans;
      send(socket, header, Buffer.from(JSON.stringify(describe(error))));
      inFlight = null;
    } else {
      console.error(error);
    }
    socket.end(() => process.exit(129));
  };
  process.on('uncaughtException', fail);
  process.on('unhandledRejection', fail);

  messages(socket, async (header, body) => {
    if (header.type !== 'invoke') return;
    inFlight = header.id;
    if (header.debug) openInspector(header.debug.port);
    let traceparent = null;
    let started = null; // the handler's run on the monotonic clock, when ORT asks (time_handler)
    let outcome; // [true, what it returned] or [false, what it threw]
    try {
      const event = JSON.parse(body.toString());
      if (header.signature === 'cloudevent' && event && typeof event.data_base64 === 'string') {
        event.data = Buffer.from(event.data_base64, 'base64'); // data decoded, as the spec says
        delete event.data_base64;
      }
      const context = makeContext(header.context);
      const call = () => callHandler(handler, event, context);
      // The trace context of the handler's span, for code with its own OpenTelemetry SDK.
      traceparent = typeof context.traceparent === 'string' ? context.traceparent : null;
      if (traceparent !== null) traceparentEnv.set(traceparent);
      // The seam for an instrumenting preload: it calls `call` and returns what it returns.
      const around = globalThis.__ortAroundHandler;
      if (header.time_handler) started = process.hrtime.bigint();
      outcome = [true, await (typeof around === 'function' ? around(context, call) : call())];
    } catch (error) {
      outcome = [false, error];
    }
    const spans = takeSpans(); // the preload ends what still runs, within the handler's time
    const ended = started !== null ? process.hrtime.bigint() : null;
    let answer;
    try {
      const [ok, value] = outcome;
      const json = JSON.stringify(ok ? (value === undefined ? null : value) : describe(value));
      answer = [ok, Buffer.from(json)];
    } catch (error) {
      answer = [false, Buffer.from(JSON.stringify(describe(error)))];
    }
    if (traceparent !== null) traceparentEnv.set(null);
    await written(process.stdout);
    await written(process.stderr);
    if (inFlight === header.id) {
      inFlight = null;
      const result = { type: 'result', id: header.id, ok: answer[0] };
      if (ended !== null) result.handler_ns = [String(started), String(ended)];
      if (spans) result.spans_follow = true;
      send(socket, result, answer[1]);
      if (spans) sendSpans(socket, header.id, spans);
    }
  });
  socket.on('close', () => process.exit(0));
  send(socket, { type: 'ready' });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
