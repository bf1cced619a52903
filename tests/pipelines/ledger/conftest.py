from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import Cluster, need_pg_bin


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """A running throwaway PostgreSQL cluster for the session."""
    cluster = Cluster(need_pg_bin())
    cluster.start()
    yield cluster
    cluster.remove()
