// A Scaleway-style sub-runtime in plain Node.js (node:http only), written from the contract
// of Scaleway's core runtime: listen on $SCW_UPSTREAM_PORT (default 8081); for each POST,
// read {"event", "context", "handlerPath", "handlerName"}, require handlerPath and call
// handlerName(event, context); answer 200 with the result as JSON, or 500 with the error.
'use strict';

const http = require('node:http');

const port = Number(process.env.SCW_UPSTREAM_PORT || 8081);
const handlers = new Map();

function load(handlerPath, handlerName) {
  const key = `${handlerPath}#${handlerName}`;
  if (!handlers.has(key)) {
    const handler = require(handlerPath)[handlerName];
    if (typeof handler !== 'function') {
      throw new TypeError(`${handlerName} is not a function exported by ${handlerPath}`);
    }
    handlers.set(key, handler);
  }
  return handlers.get(key);
}

async function answer(body) {
  const { event, context, handlerPath, handlerName } = JSON.parse(body);
  const result = await load(handlerPath, handlerName)(event, context);
  return result === undefined ? '' : JSON.stringify(result);
}

const server = http.createServer((request, response) => {
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    answer(Buffer.concat(chunks).toString('utf8')).then(
      (json) => {
        response.writeHead(200, { 'Content-Type': 'application/json' });
        response.end(json);
      },
      (error) => {
        console.error(error);
        response.writeHead(500, { 'Content-Type': 'text/plain' });
        response.end(String(error && error.message ? error.message : error));
      },
    );
  });
});

server.listen(port, '127.0.0.1', () => {
  console.log(`Scaleway-style sub-runtime listening on 127.0.0.1:${port}`);
});
