'use strict';
// ort-apm's preload for ORT's Node worker (ORT_PRELOAD, docs/worker-protocol.md, "Preloads
// and spans"): times the handler and its outgoing HTTP calls (http, https and anything built
// on them, global fetch) and leaves the spans in globalThis.__ortSpans, which the worker sends
// to ORT after the invocation's result. No OpenTelemetry SDK: spans are OTLP-like objects.
// Only invocations with a traceparent (the handler span's context, from ORT) are traced.
// While the handler runs, a span takes monotonic readings only; its JSON (toJSON, encoded
// after the result is sent) has epoch nanoseconds as decimal strings (a JS number cannot hold
// them exactly). Cheap to load: http is patched once something loads it, never loaded here.

if (!globalThis.__ortAroundHandler) {
  const spans = (globalThis.__ortSpans = globalThis.__ortSpans || []);
  const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
  const NAME = process.env._HANDLER || 'handler';
  const SPAN = Symbol('ort-apm span');
  const open = new Set(); // client spans not ended yet: ended with the handler's span
  let current = null; // the handler's span, while it runs
  let flags = '01'; // the invocation's trace flags (sampled or not), passed on downstream
  // Epoch nanoseconds: the monotonic clock plus an origin, which each reading of Date.now()
  // (milliseconds) bounds within a millisecond. The bounds tighten with every invocation and
  // every require() (the handler's loading spreads them over milliseconds), and the origin is
  // their middle: a fraction of a millisecond off at first, microseconds soon. Node's
  // `performance` is a millisecond off, and costs more to load than this file.
  const mono = process.hrtime.bigint;
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
  /** A monotonic reading as epoch nanoseconds, a decimal string. */
  const epoch = (reading) => ((low + high) / 2n + reading).toString();
  const hex32 = () => (Math.random() * 0x100000000 >>> 0).toString(16).padStart(8, '0');
  const spanId = () => {
    const id = hex32() + hex32();
    return id === '0000000000000000' ? spanId() : id;
  };
  const messageOf = (error) => (error instanceof Error ? error.message : String(error));

  class Span {
    constructor(traceId, spanId, parentSpanId, name, kind, attributes) {
      this.traceId = traceId;
      this.spanId = spanId;
      this.parentSpanId = parentSpanId;
      this.name = name;
      this.kind = kind;
      this.start = mono();
      this.end = null;
      this.attributes = attributes;
      this.status = { code: 'unset', message: '' };
    }

    toJSON() {
      return {
        traceId: this.traceId,
        spanId: this.spanId,
        parentSpanId: this.parentSpanId,
        name: this.name,
        kind: this.kind,
        startTimeUnixNano: epoch(this.start),
        endTimeUnixNano: epoch(this.end), // ended: only finished spans are sent
        attributes: this.attributes,
        status: this.status,
      };
    }
  }

  const finish = (span) => {
    if (span.end !== null) return;
    span.end = mono();
    open.delete(span);
    spans.push(span);
  };

  const fail = (span, error) => {
    span.status = { code: 'error', message: messageOf(error) };
    span.attributes['error.type'] = (error && (error.code || error.name)) || 'Error';
  };

  const answered = (span, status) => {
    span.attributes['http.response.status_code'] = status;
    if (status >= 400) {
      span.status = { code: 'error', message: '' };
      span.attributes['error.type'] = String(status);
    }
  };

  /** A client span under the handler's, for METHOD on protocol//host:port, started now. */
  const clientSpan = (method, protocol, host, port, target) => {
    const https = protocol === 'https:';
    const address = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
    const shown = port === (https ? 443 : 80) ? address : `${address}:${port}`;
    const span = new Span(current.traceId, spanId(), current.spanId, method, 'client', {
      'http.request.method': method,
      'url.full': `${protocol}//${shown}${target}`,
      'server.address': host.replace(/^\[|\]$/g, ''),
      'server.port': port,
    });
    open.add(span);
    return span;
  };
  const header = (span) => `00-${span.traceId}-${span.spanId}-${flags}`;

  const ended = (span) => {
    sample(); // once per invocation, so that its spans share one origin
    current = null;
    for (const client of open) finish(client); // still running: ended with the invocation
    finish(span);
  };

  // The seam: ORT's worker calls this around the handler (`call` runs it, and returns its
  // promise) when it is defined. Not an async function: one promise reaction, no more.
  globalThis.__ortAroundHandler = (context, call) => {
    const match = TRACEPARENT.exec(context.traceparent || '');
    if (match === null) return call();
    if (!patched && httpLoaded()) patchHttp(); // loaded by an ES module's import
    // parent null: ORT's invocation span, which ORT sets
    const span = new Span(match[1], match[2], null, NAME, 'internal', { 'code.function.name': NAME });
    current = span;
    flags = match[3];
    let running;
    try {
      running = Promise.resolve(call());
    } catch (error) {
      running = Promise.reject(error);
    }
    return running.then(
      (value) => {
        ended(span);
        return value;
      },
      (error) => {
        span.status = { code: 'error', message: messageOf(error) };
        span.attributes['error.type'] = (error && error.name) || typeof error;
        ended(span);
        throw error;
      },
    );
  };

  // -- http and https: every ClientRequest stores its headers once, before sending them ----------
  // Patched when http's client is loaded: at once if it is, else when a require() loads it
  // (Module._load), else at the start of the first traced invocation after an import did.
  let patched = false;
  // process.moduleLoadList only grows: each call searches what was added since the last one,
  // so an invocation that loaded nothing new pays a length check, not a scan of ~200 names.
  let searched = 0;
  const httpLoaded = () => {
    const list = process.moduleLoadList;
    if (!Array.isArray(list)) return true;
    const found = list.length > searched && list.indexOf('NativeModule _http_client', searched) >= 0;
    searched = list.length;
    return found;
  };
  function patchHttp() {
    patched = true;
    const proto = require('node:http').ClientRequest.prototype; // https's requests too
    const storeHeader = proto._storeHeader;
    const emit = proto.emit;
    if (typeof storeHeader !== 'function') return;
    const hostOf = (request, headers) => { // the Host header, where the port is
      if (!Array.isArray(headers)) return String(request.getHeader('host') || '');
      const flat = headers.flat();
      for (let i = 0; i < flat.length - 1; i += 2) {
        if (String(flat[i]).toLowerCase() === 'host') return String(flat[i + 1]);
      }
      return '';
    };
    proto._storeHeader = function _storeHeader(firstLine, headers) {
      if (current !== null && this[SPAN] === undefined) {
        try {
          const protocol = this.protocol || 'http:';
          const port = /:(\d+)$/.exec(hostOf(this, headers));
          const span = clientSpan(
            String(this.method || 'GET'),
            protocol,
            String(this.host || 'localhost'),
            port ? Number(port[1]) : protocol === 'https:' ? 443 : 80,
            this.path || '/',
          );
          this[SPAN] = span;
          if (Array.isArray(headers)) { // raw headers: flat [name, value...] or pairs
            headers = Array.isArray(headers[0])
              ? [...headers, ['traceparent', header(span)]]
              : [...headers, 'traceparent', header(span)];
          } else if (this.getHeader('traceparent') === undefined) {
            this.setHeader('traceparent', header(span));
            if (headers == null) {
              const own = Object.getOwnPropertySymbols(this);
              headers = this[own.find((symbol) => symbol.description === 'kOutHeaders')];
            }
          }
        } catch {
          // never fail the user's request for its span
        }
      }
      return storeHeader.call(this, firstLine, headers);
    };
    // Events seen without listening to them: a listener would change what Node does (an
    // 'error' listener swallows errors, a 'response' listener stops unread bodies' dumping).
    proto.emit = function (name, value) {
      const span = this[SPAN];
      if (span !== undefined) {
        if (name === 'response') answered(span, value.statusCode);
        else if (name === 'error') fail(span, value);
        else if (name === 'close') finish(span);
      }
      return emit.apply(this, arguments);
    };
  }
  if (httpLoaded()) patchHttp();
  const Module = require('node:module');
  const load = Module._load;
  Module._load = function (request) {
    sample();
    const exports = load.apply(this, arguments);
    if (!patched && typeof request === 'string' && request.includes('http') && httpLoaded()) {
      patchHttp();
    }
    return exports;
  };

  // -- fetch (undici): resolves with the response's head, or rejects --------------------------
  const fetch = globalThis.fetch;
  if (typeof fetch === 'function') {
    globalThis.fetch = function (input, init) {
      if (current === null) return fetch.apply(this, arguments);
      let span;
      let options;
      try {
        const request = typeof input === 'object' && input !== null && !(input instanceof URL)
          ? input
          : null;
        const url = new URL(request !== null ? request.url : String(input));
        if (url.username || url.password) url.username = url.password = 'REDACTED';
        url.hash = '';
        const method = String((init && init.method) || (request && request.method) || 'GET');
        const headers = new Headers(
          (init && init.headers) || (request !== null ? request.headers : undefined),
        );
        const https = url.protocol === 'https:';
        span = clientSpan(
          method.toUpperCase(),
          url.protocol,
          url.hostname,
          url.port ? Number(url.port) : https ? 443 : 80,
          url.pathname + url.search,
        );
        span.attributes['url.full'] = url.href;
        if (!headers.has('traceparent')) headers.set('traceparent', header(span));
        options = { ...init, headers };
      } catch {
        if (span !== undefined) open.delete(span);
        return fetch.apply(this, arguments);
      }
      return fetch.call(this, input, options).then(
        (response) => {
          answered(span, response.status);
          finish(span);
          return response;
        },
        (error) => {
          fail(span, error && error.cause ? error.cause : error);
          finish(span);
          throw error;
        },
      );
    };
  }
}
