"""ort-ruby: Ruby handlers for ORT, a language plugin written outside ORT's repository's
plugins, from docs/worker-protocol.md and ORT's public plugin API only."""
