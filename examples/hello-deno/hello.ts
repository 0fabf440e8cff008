// A Deno function in TypeScript: answers with a greeting for the name in its event, which
// arrives as a CloudEvent (ORT's default signature): the payload is event.data.
// Run it: ORT_LANGUAGE=deno ort invoke --handler hello.handler --event event.json

interface Event {
  specversion: string;
  id: string;
  type: string;
  data?: { name?: string };
}

interface Context {
  awsRequestId: string;
  getRemainingTimeInMillis(): number;
}

interface Greeting {
  message: string;
  runtime: string;
  requestId: string;
}

export const handler = (event: Event, context: Context): Greeting => ({
  message: `Hello, ${event.data?.name ?? "world"}!`,
  runtime: `deno ${Deno.version.deno}`,
  requestId: context.awsRequestId,
});
