// A Scaleway function: called by the sub-runtime (server.js) with Scaleway's event and
// context ({memoryLimitInMb, functionName, functionVersion}). An HTTP answer is
// {statusCode, headers, body}.
// With ORT's default signature the event is a CloudEvent, whose payload is event.data.
exports.handle = async (event, context) => ({
  statusCode: 200,
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({
    message: `Hello, ${(event && (event.specversion ? event.data : event)?.name) || 'world'}!`,
    memoryLimitInMb: context.memoryLimitInMb,
  }),
});
