"""The app under FastAPI's TestClient, lifespan running, for the API tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def serve(make_settings, tmp_path) -> Iterator[Callable[..., TestClient]]:
    """serve(client=None, **server_settings) → a TestClient with the app's lifespan running.

    `client` is an engine client, a factory `(settings, api) -> [clients]`, or None for
    the real in-process engine on the tiny models. The drain timeout defaults to 1 s,
    so a test that fails while a fake holds a job does not hang its teardown.
    """
    from brushwork.api.app import create_app
    from brushwork.config import ServerSettings
    from brushwork.jobs.clients import InProcessClient

    opened: list[TestClient] = []

    def start(client: Any = None, **server: Any) -> TestClient:
        settings = make_settings(home=tmp_path / "home", server=ServerSettings(**{"drain_timeout": 1, **server}))
        if client is None:
            factory: Any = lambda s, api: [InProcessClient(s, api.engine)]  # noqa: E731
        elif hasattr(client, "run_batch"):
            factory = lambda s, api: [client]  # noqa: E731
        else:
            factory = client
        http = TestClient(create_app(settings, clients=factory))
        http.__enter__()
        opened.append(http)
        return http

    yield start
    for http in opened:
        http.__exit__(None, None, None)
