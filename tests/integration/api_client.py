"""An API test client on a real chDB warehouse, with one key per role."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi.testclient import TestClient

from api.app import create_app
from controlroom.settings import Settings
from tests.conftest import register_secret


@dataclass
class Keys:
    viewer: str
    operator: str
    admin: str
    agency: str  # hydromet: water_level only
    agency_hanoi: str  # hydromet, province 01 only

    def header(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, role)}"}

    def all(self) -> list[str]:
        return [self.viewer, self.operator, self.admin, self.agency, self.agency_hanoi]


@contextmanager
def api_client(settings: Settings) -> Iterator[tuple[TestClient, Keys]]:
    with TestClient(create_app(settings)) as client:
        store = client.app.state.api.security.keys  # type: ignore[attr-defined]

        def make(role: str, **kw: object) -> str:
            key, _ = store.create(name=f"test-{role}", role=role, created_by="test", **kw)
            register_secret(key.token)
            return key.token

        keys = Keys(make("viewer"), make("operator"), make("admin"), make("agency", agency="hydromet"),
                    make("agency", agency="hydromet", provinces=["01"]))
        yield client, keys
