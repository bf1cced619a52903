"""Fixtures for tests/deploy: the session's trained model store (see tests/service/conftest.py).

Only the container tests use them (to build a Bento that records the three models); the manifest
checks need no store. BENTOML_HOME is already a temporary store (tests/conftest.py).
"""

from tests.service.conftest import pinned_env, trained  # noqa: F401
