// An ES module Node.js function: answers with a greeting for the name in its event, which
// arrives as a CloudEvent (ORT's default signature): the payload is event.data.
export const handler = async (event, context) => ({
  message: `Hello, ${event.data?.name ?? 'world'}!`,
  runtime: `node ${process.version}`,
  module: 'esm',
  requestId: context.awsRequestId,
});
