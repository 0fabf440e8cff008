// A Node.js function for ORT on Lambda: a greeting for the name in its event, which arrives as
// a CloudEvent (ORT's default signature): the payload is event.data.
exports.handler = async (event, context) => ({
  message: `Hello, ${event.data?.name ?? 'world'}!`,
  runtime: `node ${process.version}`,
  requestId: context.awsRequestId,
});
