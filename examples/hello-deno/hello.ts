// A Deno function in TypeScript: answers with a greeting for the event's name.
// Run it: ORT_LANGUAGE=deno ort invoke --handler hello.handler --event event.json

interface Event {
  name?: string;
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
  message: `Hello, ${event.name ?? "world"}!`,
  runtime: `deno ${Deno.version.deno}`,
  requestId: context.awsRequestId,
});
