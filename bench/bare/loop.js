// The physical limit for Node: a bare Lambda Runtime API loop, no framework (bench reference).
const http = require('node:http');
const path = require('node:path');

const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(':');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const [file, name] = process.env._HANDLER.split('.');
const handler = require(path.join(process.env.LAMBDA_TASK_ROOT, file))[name];

function request(method, urlPath, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path: urlPath, agent }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

(async () => {
  for (;;) {
    const next = await request('GET', '/2018-06-01/runtime/invocation/next');
    const id = next.headers['lambda-runtime-aws-request-id'];
    const result = await handler(JSON.parse(next.body), { awsRequestId: id });
    await request('POST', `/2018-06-01/runtime/invocation/${id}/response`, JSON.stringify(result));
  }
})();
