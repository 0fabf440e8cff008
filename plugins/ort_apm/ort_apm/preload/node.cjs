'use strict';
// ort-apm's preload for ORT's Node worker (ORT_PRELOAD, docs/worker-protocol.md, "Preloads
// and spans"): times the handler's outgoing HTTP calls (http, https and anything built on them,
// global fetch), passes their trace context on, and hands their spans to the worker when the
// handler is done (globalThis.__ortTakeSpans), which sends them to ORT after the result. The
// handler itself is timed by the worker (time_handler), whose span ORT builds. No OpenTelemetry
// SDK: spans are OTLP-like objects. Only invocations with a traceparent (the handler span's
// context, from ORT) are traced, and an invocation without HTTP calls costs one assignment.
// Times are readings of the monotonic clock (process.hrtime.bigint), which ORT shares and turns
// into epoch times. Cheap to load: http is patched once something loads it, never loaded here.

if (!globalThis.__ortAroundHandler) {
  const spans = (globalThis.__ortSpans = globalThis.__ortSpans || []); // shared with others'
  const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
  const SPAN = Symbol('ort-apm span');
  const open = new Set(); // client spans not ended yet: ended with the handler
  let traceparent = null; // the handler span's context, while the handler runs
  let handler = null; // its parts, [trace id, span id, flags], parsed at the first HTTP call
  const mono = process.hrtime.bigint;
  const hex32 = () => (Math.random() * 0x100000000 >>> 0).toString(16).padStart(8, '0');
  const spanId = () => {
    const id = hex32() + hex32();
    return id === '0000000000000000' ? spanId() : id;
  };
  const messageOf = (error) => (error instanceof Error ? error.message : String(error));

  class Span {
    constructor(traceId, spanId, parentSpanId, name, attributes) {
      this.traceId = traceId;
      this.spanId = spanId;
      this.parentSpanId = parentSpanId;
      this.name = name;
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
        kind: 'client',
        startMonotonicNano: String(this.start),
        endMonotonicNano: String(this.end), // ended: only finished spans are sent
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

  /** The handler's [trace id, span id, flags] while it runs, else null. */
  const tracing = () => {
    if (traceparent === null) return null;
    if (handler === null) {
      const match = TRACEPARENT.exec(traceparent);
      handler = match === null ? false : [match[1], match[2], match[3]];
    }
    return handler || null;
  };

  /** A client span under the handler's, for METHOD on protocol//host:port, started now. */
  const clientSpan = (parent, method, protocol, host, port, target) => {
    const https = protocol === 'https:';
    const address = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
    const shown = port === (https ? 443 : 80) ? address : `${address}:${port}`;
    const span = new Span(parent[0], spanId(), parent[1], method, {
      'http.request.method': method,
      'url.full': `${protocol}//${shown}${target}`,
      'server.address': host.replace(/^\[|\]$/g, ''),
      'server.port': port,
    });
    open.add(span);
    return span;
  };
  const header = (span, parent) => `00-${span.traceId}-${span.spanId}-${parent[2]}`;

  // The seams: ORT's worker calls the first around the handler (`call` runs it and returns its
  // promise), the second once the handler is done, for the spans to send.
  globalThis.__ortAroundHandler = (context, call) => {
    traceparent = typeof context.traceparent === 'string' ? context.traceparent : null;
    handler = null;
    if (traceparent !== null && !patched && httpLoaded()) patchHttp(); // loaded by an import
    return call();
  };
  globalThis.__ortTakeSpans = () => {
    traceparent = null;
    for (const client of open) finish(client); // still running: ended with the handler
    return spans;
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
      const parent = this[SPAN] === undefined ? tracing() : null;
      if (parent !== null) {
        try {
          const protocol = this.protocol || 'http:';
          const port = /:(\d+)$/.exec(hostOf(this, headers));
          const span = clientSpan(
            parent,
            String(this.method || 'GET'),
            protocol,
            String(this.host || 'localhost'),
            port ? Number(port[1]) : protocol === 'https:' ? 443 : 80,
            this.path || '/',
          );
          this[SPAN] = span;
          if (Array.isArray(headers)) { // raw headers: flat [name, value...] or pairs
            headers = Array.isArray(headers[0])
              ? [...headers, ['traceparent', header(span, parent)]]
              : [...headers, 'traceparent', header(span, parent)];
          } else if (this.getHeader('traceparent') === undefined) {
            this.setHeader('traceparent', header(span, parent));
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
      const parent = tracing();
      if (parent === null) return fetch.apply(this, arguments);
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
          parent,
          method.toUpperCase(),
          url.protocol,
          url.hostname,
          url.port ? Number(url.port) : https ? 443 : 80,
          url.pathname + url.search,
        );
        span.attributes['url.full'] = url.href;
        if (!headers.has('traceparent')) headers.set('traceparent', header(span, parent));
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
