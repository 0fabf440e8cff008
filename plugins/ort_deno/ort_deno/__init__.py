"""ORT's Deno language plugin: TypeScript handlers on Deno, with least privilege."""
