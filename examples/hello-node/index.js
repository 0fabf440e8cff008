// A CommonJS Node.js function: answers with a greeting for the event's name.
exports.handler = async (event, context) => ({
  message: `Hello, ${event.name ?? 'world'}!`,
  runtime: `node ${process.version}`,
  requestId: context.awsRequestId,
});
