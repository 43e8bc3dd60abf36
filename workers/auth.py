"""Upstream authentication: none, a static bearer token, or SMART Backend Services (client credentials
with a signed JWT assertion). Secrets are read from the environment when needed, never stored in config."""
from __future__ import annotations

import os
import time
import uuid

import requests

from workers.errors import AuthFailed, ConfigError
from workers.upstreams import Upstream

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300  # seconds; SMART asks for at most five minutes
EARLY_REFRESH = 30        # seconds before expiry at which a cached access token is renewed


class NoAuth:
    def headers(self, session: requests.Session, timeout: tuple[float, float]) -> dict[str, str]:
        return {}

    def refresh(self) -> None:
        pass


class BearerAuth:
    """A static token from an environment variable, read on every request so that a rotated token is used."""

    def __init__(self, token_env: str):
        self.token_env = token_env

    def headers(self, session: requests.Session, timeout: tuple[float, float]) -> dict[str, str]:
        token = os.environ.get(self.token_env)
        if not token:
            raise ConfigError(f"environment variable {self.token_env} (the upstream's bearer token) is not set")
        return {"Authorization": f"Bearer {token}"}

    def refresh(self) -> None:
        pass  # nothing cached: the next call re-reads the environment


class SmartBackendAuth:
    """SMART Backend Services: POST a signed JWT (RS384/ES384) to the token endpoint, cache the access token."""

    def __init__(self, base_url: str, auth: dict):
        self.base_url = base_url
        self.client_id = auth["client_id"]
        self.key_env = auth["private_key_env"]
        self.alg = auth.get("alg", "RS384")
        self.kid = auth.get("kid")
        self.scope = auth.get("scope", "system/*.read system/*.write")
        self.token_url = auth.get("token_url")
        self._token: str | None = None
        self._expires_at = 0.0

    def headers(self, session: requests.Session, timeout: tuple[float, float]) -> dict[str, str]:
        if self._token is None or time.time() >= self._expires_at - EARLY_REFRESH:
            self._fetch(session, timeout)
        return {"Authorization": f"Bearer {self._token}"}

    def refresh(self) -> None:
        self._token = None

    def assertion(self, token_url: str) -> str:
        import jwt

        key = os.environ.get(self.key_env)
        if not key:
            raise ConfigError(f"environment variable {self.key_env} (the SMART client's private key, PEM) is not set")
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": token_url, "iat": now,
                  "exp": now + ASSERTION_LIFETIME, "jti": uuid.uuid4().hex}
        headers = {"kid": self.kid} if self.kid else None
        return jwt.encode(claims, key, algorithm=self.alg, headers=headers)

    def _fetch(self, session: requests.Session, timeout: tuple[float, float]) -> None:
        token_url = self.token_url or self._discover(session, timeout)
        form = {"grant_type": "client_credentials", "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": self.assertion(token_url)}
        try:
            answer = session.post(token_url, data=form, timeout=timeout)
        except requests.RequestException as exc:
            raise AuthFailed(f"token endpoint unreachable: {type(exc).__name__}") from None
        if answer.status_code != 200:
            raise AuthFailed(f"token endpoint answered {answer.status_code}")
        body = answer.json()
        self._token = body["access_token"]
        self._expires_at = time.time() + float(body.get("expires_in", 300))

    def _discover(self, session: requests.Session, timeout: tuple[float, float]) -> str:
        try:
            answer = session.get(f"{self.base_url}/.well-known/smart-configuration", timeout=timeout)
            self.token_url = answer.json()["token_endpoint"]
        except (requests.RequestException, ValueError, KeyError):
            raise AuthFailed("no token_url configured and none found in .well-known/smart-configuration") from None
        return self.token_url


def make_auth(upstream: Upstream):
    kind = upstream.auth.get("type", "none")
    if kind == "bearer":
        return BearerAuth(upstream.auth["token_env"])
    if kind == "smart-backend":
        return SmartBackendAuth(upstream.base_url, upstream.auth)
    return NoAuth()
