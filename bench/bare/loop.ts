// The physical limit for Deno: a bare Lambda Runtime API loop with fetch (bench reference).
const api = `http://${Deno.env.get("AWS_LAMBDA_RUNTIME_API")}/2018-06-01/runtime`;
const [file, name] = Deno.env.get("_HANDLER")!.split(".");
const root = Deno.env.get("LAMBDA_TASK_ROOT")!;
const module = await import(`file://${root}/${file}.ts`);
const handler = module[name];

while (true) {
  const next = await fetch(`${api}/invocation/next`);
  const id = next.headers.get("lambda-runtime-aws-request-id");
  const result = await handler(await next.json(), { awsRequestId: id });
  const posted = await fetch(`${api}/invocation/${id}/response`, {
    method: "POST",
    body: JSON.stringify(result),
  });
  await posted.body?.cancel();
}
