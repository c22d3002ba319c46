"""Bearer tokens (JWT): who is calling. Verification for the APIs, minting for `fanout token`.

Every API call carries `Authorization: Bearer <JWT>`; its `sub` is the caller's user id. A token is
accepted only with a valid signature by the configured key and algorithm (never the one the token names),
an unexpired `exp`, and the configured `iss` and `aud`.

Keys come from Settings: HS256 with a secret file (the local default: generated once, 0600, in the
launcher's state dir), or RS256/ES256 with a PEM public key or a JWKS file (production: the identity
provider signs, we only verify). Keys are read once at start; rotating them means restarting.

A verified token is cached (token string -> user id, until its expiry) in a small bounded dict, so a
client that sends the same token again costs a dict lookup (~1 µs) instead of a signature check.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from fanout.ids import MAX_USER_ID
from fanout.settings import Settings

ALGORITHMS = ("HS256", "RS256", "ES256")


class InvalidToken(ValueError):
    """A token that does not authenticate anyone; the message says why, without echoing the token."""


class TokenVerifier:
    def __init__(self, settings: Settings, now: Callable[[], float] = time.time, cache_size: int = 10_000) -> None:
        self.algorithm = _algorithm(settings)
        self.issuer, self.audience = settings.jwt_issuer, settings.jwt_audience
        self.leeway = settings.jwt_leeway_seconds
        self.now = now
        self.cache_size = cache_size
        self._cache: dict[str, tuple[int, float]] = {}  # token -> (user id, usable until)
        self._key: Any = None
        self._jwks: jwt.PyJWKSet | None = None
        if self.algorithm == "HS256":
            self._key = local_secret(settings.jwt_secret_path)
        elif settings.jwks_file:
            self._jwks = jwt.PyJWKSet.from_json(Path(settings.jwks_file).read_text())
        elif settings.jwt_public_key_file:
            self._key = Path(settings.jwt_public_key_file).read_bytes()
        else:
            raise ValueError(f"FANOUT_JWT_ALGORITHM={self.algorithm} needs FANOUT_JWT_PUBLIC_KEY_FILE or "
                             "FANOUT_JWKS_FILE")

    def verify(self, token: str) -> int:
        """The user id the token authenticates; InvalidToken otherwise."""
        hit = self._cache.get(token)
        if hit is not None and hit[1] > self.now():
            return hit[0]
        user_id, expires = self._decode(token)
        if len(self._cache) >= self.cache_size:
            self._cache.pop(next(iter(self._cache)))  # the oldest entry: a bounded cache, not an LRU
        self._cache[token] = (user_id, expires + self.leeway)
        return user_id

    def _decode(self, token: str) -> tuple[int, float]:
        try:
            claims = jwt.decode(token, self._key_for(token), algorithms=[self.algorithm], issuer=self.issuer,
                                audience=self.audience, leeway=self.leeway,
                                options={"require": ["exp", "sub", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the bearer token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"invalid bearer token: {exc}") from None
        sub = claims["sub"]
        if not (isinstance(sub, str) and sub.isascii() and sub.isdigit() and 1 <= int(sub) <= MAX_USER_ID):
            raise InvalidToken(f"invalid bearer token: sub must be a user id (an integer in 1..{MAX_USER_ID})")
        return int(sub), float(claims["exp"])

    def _key_for(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"invalid bearer token: {exc}") from None
        for key in self._jwks.keys:
            if key.key_id == kid:
                return key.key
        raise InvalidToken(f"invalid bearer token: no key with kid {str(kid)[:40]!r} in the JWKS")


def mint_token(settings: Settings, user_id: int, ttl_seconds: int | None = None, now: float | None = None,
               kid: str | None = None) -> str:
    """A token for `user_id`, signed with the local secret (HS256) or FANOUT_JWT_PRIVATE_KEY_FILE."""
    if not 1 <= user_id <= MAX_USER_ID:
        raise ValueError(f"a user id is an integer in 1..{MAX_USER_ID}")
    algorithm = _algorithm(settings)
    if algorithm == "HS256":
        key: Any = local_secret(settings.jwt_secret_path)
    elif settings.jwt_private_key_file:
        key = Path(settings.jwt_private_key_file).read_bytes()
    else:
        raise ValueError(f"minting {algorithm} tokens needs FANOUT_JWT_PRIVATE_KEY_FILE (production tokens come "
                         "from the identity provider)")
    issued = int(time.time() if now is None else now)
    ttl = settings.token_ttl_seconds if ttl_seconds is None else ttl_seconds
    claims = {"sub": str(user_id), "iss": settings.jwt_issuer, "aud": settings.jwt_audience, "iat": issued,
              "exp": issued + ttl}
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


class Tokens:
    """Bearer headers for many users (the demo, benchmarks and tests act as each of their users): one
    token per user, minted on first use and reused for the run."""

    def __init__(self, settings: Settings, ttl_seconds: int = 6 * 3600) -> None:
        self.settings, self.ttl = settings, ttl_seconds
        self._headers: dict[int, dict[str, str]] = {}

    def headers(self, user_id: int) -> dict[str, str]:
        found = self._headers.get(user_id)
        if found is None:
            found = self._headers[user_id] = {"Authorization": f"Bearer {mint_token(self.settings, user_id, self.ttl)}"}
        return found


def local_secret(path: Path) -> bytes:
    """The HS256 secret at `path`, created (256 random bits, mode 0600) by whichever process needs it first.
    Written to a temporary file and hard-linked into place, so concurrent starters agree on one secret."""
    with contextlib.suppress(FileNotFoundError):
        return _read_secret(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink()
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    secret = path.read_bytes().strip()
    if len(secret) < 32:
        raise ValueError(f"{path}: an HS256 secret needs at least 32 bytes")
    return secret


def _algorithm(settings: Settings) -> str:
    if settings.jwt_algorithm not in ALGORITHMS:
        raise ValueError(f"FANOUT_JWT_ALGORITHM={settings.jwt_algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    return settings.jwt_algorithm
