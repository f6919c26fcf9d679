"""The log scan every test runs under (tests/conftest.py) does catch a leaked key."""

from __future__ import annotations

from controlroom.security import new_key
from tests.conftest import leaked_secrets, register_secret


def test_scan_finds_a_registered_key_or_its_secret_part() -> None:
    token = new_key().token
    register_secret(token)
    secret = token.split("_", 2)[2]
    assert leaked_secrets(f"auth header was Bearer {token}") != []
    assert leaked_secrets(f"secret={secret}") != []
    assert leaked_secrets("GET /feeds 200 key_id=" + token.split("_")[1]) == []  # the key id is not secret
