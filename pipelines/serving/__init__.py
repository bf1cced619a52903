"""Serving: request schemas, resolution of event and drivers, the two-stage
orchestrator, responses, typed errors, HTTP middleware, merging of model calls,
the OpenAPI document, server logs, the /health body and the BentoML workarounds."""
