"""Serving: the API's schemas, request resolution, the two-stage flow, responses, errors,
middleware, merged model calls, the OpenAPI document, logs and the BentoML workarounds."""
