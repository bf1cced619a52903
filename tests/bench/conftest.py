"""Benchmark tests use the shared session fixtures of tests/conftest.py: ``pinned_env``
(real models trained once per session in the session's temporary store, pinned by tag)
and ``service_module`` (service.py imported with those tags)."""
