// An ES module Node.js function: answers with a greeting for the event's name.
export const handler = async (event, context) => ({
  message: `Hello, ${event.name ?? 'world'}!`,
  runtime: `node ${process.version}`,
  module: 'esm',
  requestId: context.awsRequestId,
});
