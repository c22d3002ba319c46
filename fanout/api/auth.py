"""Bearer tokens (JWT): who is calling. Verification for the APIs, minting for `fanout token`.

Every API call carries `Authorization: Bearer <JWT>`; its `sub` is the caller's user id. A token is
accepted only with a valid signature by the configured key and algorithm (never the one the token names),
an unexpired `exp`, and the configured `iss` and `aud`.

Keys come from Settings: HS256 with a secret file (the local default: generated once, 0600, in the
launcher's state dir), or RS256/ES256 with a PEM public key or a JWKS file (production: the identity
provider signs, we only verify). Keys are read once at start; rotating them means restarting.

A verified token is cached (token string -> user id, until its expiry) in a bounded cache (cachetools), so
a client that sends the same token again costs a lookup instead of a signature check.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cachetools
import jwt

from fanout.core.ids import MAX_USER_ID
from fanout.settings import Settings

ALGORITHMS = ("HS256", "RS256", "ES256")
KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}  # the JWK "kty" that verifies each public-key algorithm
# Far above any real token (a few hundred characters), far below what it would cost to parse.
MAX_TOKEN_CHARS = 8192
_CANONICAL_ID = re.compile(r"[1-9][0-9]{0,15}")  # MAX_USER_ID has 16 digits


class InsecureSecret(ValueError):
    """The HS256 secret file cannot be trusted (another owner, open permissions, too short)."""


class InvalidToken(ValueError):
    """A token that does not authenticate anyone; the message says why, without echoing the token."""


class TokenVerifier:
    def __init__(self, settings: Settings, now: Callable[[], float] = time.time, cache_size: int = 10_000) -> None:
        self.algorithm = _algorithm(settings)
        self.issuer, self.audience = settings.jwt_issuer, settings.jwt_audience
        self.leeway = settings.jwt_leeway_seconds
        self.now = now
        # token -> (user id, usable until): each entry leaves once its token expires, the least recently used
        # first when full.
        self._cache: cachetools.TLRUCache[str, tuple[int, float]] = cachetools.TLRUCache(
            cache_size, ttu=lambda token, entry, now: entry[1], timer=lambda: self.now())
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
        return self.verify_until(token)[0]

    def verify_until(self, token: str) -> tuple[int, float]:
        """The user id the token authenticates and until when (Unix seconds, the leeway included: a live
        stream ends then); InvalidToken otherwise."""
        hit = self._cache.get(token)
        if hit is not None:
            return hit
        user_id, expires = self._decode(token)
        entry = self._cache[token] = (user_id, expires + self.leeway)
        return entry

    def _decode(self, token: str) -> tuple[int, float]:
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken(f"invalid bearer token: longer than {MAX_TOKEN_CHARS} characters")
        key = self._key_for(token)
        try:
            claims = jwt.decode(token, key, algorithms=[self.algorithm], issuer=self.issuer,
                                audience=self.audience, leeway=self.leeway,
                                options={"require": ["exp", "sub", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the bearer token has expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid bearer token: {exc}"[:200]) from None
        except (TypeError, ValueError) as exc:
            # The key the header names cannot check this algorithm (a JWKS key of another type): the
            # cryptography backend raises these, not PyJWT's errors.
            raise InvalidToken(f"invalid bearer token: its key cannot verify {self.algorithm}: "
                               f"{type(exc).__name__}") from None
        return user_of(claims["sub"]), float(claims["exp"])

    def _key_for(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"invalid bearer token: {exc}") from None
        for key in self._jwks.keys:
            if key.key_id == kid:
                if key.key_type != KEY_TYPES[self.algorithm]:
                    raise InvalidToken(f"invalid bearer token: kid {str(kid)[:40]!r} names a {key.key_type} key, "
                                       f"which cannot verify {self.algorithm}")
                return key.key
        raise InvalidToken(f"invalid bearer token: no key with kid {str(kid)[:40]!r} in the JWKS")


def user_of(sub: object) -> int:
    """The user id a token's `sub` names: a user id in its one canonical decimal form (no sign, no leading
    zero, no other digits than ASCII), so two identity-provider subjects ("7", "007") never become one
    user; InvalidToken otherwise. The length is checked before int(), which refuses 4,300+ digits."""
    if not (isinstance(sub, str) and _CANONICAL_ID.fullmatch(sub) and int(sub) <= MAX_USER_ID):
        raise InvalidToken(f"invalid bearer token: sub must be a user id (an integer in 1..{MAX_USER_ID} "
                           "written without leading zeros)")
    return int(sub)


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
    """The secret at `path`, if it is private to this user: a file that someone else owns, or that group or
    others may read or write, could be (or have been read by) another's secret, so it is refused."""
    with open(path, "rb") as f:  # the checks and the read are of one file, even if the path is swapped
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid():
            raise InsecureSecret(f"{path}: the HS256 secret belongs to uid {st.st_uid}, not to this user "
                                 f"(uid {os.geteuid()}); it must be this user's own file")
        if st.st_mode & 0o077:
            raise InsecureSecret(f"{path}: the HS256 secret is open to group or others (mode "
                                 f"{st.st_mode & 0o777:o}); `chmod 600 {path}` if it is still secret, else "
                                 "delete it and every token signed with it")
        secret = f.read().strip()
    if len(secret) < 32:
        raise InsecureSecret(f"{path}: an HS256 secret needs at least 32 bytes")
    return secret


def _algorithm(settings: Settings) -> str:
    if settings.jwt_algorithm not in ALGORITHMS:
        raise ValueError(f"FANOUT_JWT_ALGORITHM={settings.jwt_algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    return settings.jwt_algorithm
