"""API tokens: who is calling.

``CHAINSYNC_API_TOKEN`` holds one token, or several separated by commas, each
optionally named: ``alice=s3cret,bob=0ther``. Every call but health and
reflection must carry ``authorization: Bearer <token>`` with one of them.
With more than one token, each job belongs to the token that started it: the
others get NOT_FOUND for it and ListJobs shows each caller only its own jobs
(an unnamed token is named ``token-`` + the first 12 hex digits of its SHA-256).
Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Tokens:
    by_principal: Mapping[str, bytes]  # principal -> the full expected header value, b"Bearer <token>"

    @classmethod
    def parse(cls, value: str) -> Tokens:
        by_principal: dict[str, bytes] = {}
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            name, sep, token = item.partition("=")
            if not sep:
                name, token = "token-" + hashlib.sha256(item.encode()).hexdigest()[:12], item
            if not token or not name.strip():
                raise SystemExit("CHAINSYNC_API_TOKEN: each entry is `token` or `name=token`, none empty")
            by_principal[name.strip()] = f"Bearer {token}".encode()
        if not by_principal:
            raise SystemExit("CHAINSYNC_API_TOKEN is set but holds no token")
        return cls(by_principal)

    def values(self) -> list[str]:
        """The tokens themselves (for the log setup, which masks them in every line)."""
        return [expected.decode().removeprefix("Bearer ") for expected in self.by_principal.values()]

    @property
    def scoped(self) -> bool:
        """With several tokens, jobs are visible only to the token that made them."""
        return len(self.by_principal) > 1

    def principal(self, authorization: str | bytes | None) -> str | None:
        """The caller's name for this authorization header value, or None when it matches no token.

        Compares against every token, so the time taken does not tell which one matched.
        """
        given = authorization.encode() if isinstance(authorization, str) else (authorization or b"")
        found = None
        for name, expected in self.by_principal.items():
            if hmac.compare_digest(given, expected):
                found = name
        return found

    def owner_of_new_jobs(self, authorization: str | bytes | None) -> str | None:
        """What a job started with this header records as its owner (None when jobs are not scoped)."""
        return self.principal(authorization) if self.scoped else None
