"""Bearer tokens (fanout/api/auth.py): what verifies and what does not, with each supported key kind."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fanout.api.auth import InsecureSecret, InvalidToken, TokenVerifier, local_secret, mint_token
from fanout.core.ids import MAX_USER_ID
from fanout.settings import PROJECT_ROOT, Settings


@pytest.fixture
def hs(tmp_path: Path) -> Settings:
    return Settings(jwt_secret_file=str(tmp_path / "secret"))


def test_a_minted_token_verifies_as_its_user(hs: Settings) -> None:
    assert TokenVerifier(hs).verify(mint_token(hs, 42)) == 42
    assert TokenVerifier(hs).verify(mint_token(hs, MAX_USER_ID)) == MAX_USER_ID


def test_the_local_secret_is_generated_once_private_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "state" / "jwt-hs256.secret"
    secrets: list[bytes] = []
    threads = [threading.Thread(target=lambda: secrets.append(local_secret(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(secrets)) == 1 and len(secrets[0]) == 64
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_the_default_secret_lives_in_the_state_dir(tmp_path: Path) -> None:
    s = Settings.load(env={"FANOUT_STATE_DIR": str(tmp_path)})
    assert s.jwt_secret_path == tmp_path / "jwt-hs256.secret"


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {"sub": "7", "iss": "fanout-local", "aud": "fanout", "iat": now, "exp": now + 60}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


# The claims are made when the test runs, not when it is collected: a run that starts with slow tests
# would otherwise find every one of these tokens expired, refused for that reason instead.
@pytest.mark.parametrize(("claims", "why"), [
    (lambda: _claims(exp=int(time.time()) - 120), "expired"),
    (lambda: _claims(iss="someone-else"), "issuer"),
    (lambda: _claims(aud="another-api"), "audience"),
    (lambda: _claims(exp=None), "exp"),
    (lambda: _claims(sub=None), "sub"),
    (lambda: _claims(sub="0"), "user id"),
    (lambda: _claims(sub="-3"), "user id"),
    (lambda: _claims(sub=str(MAX_USER_ID + 1)), "user id"),
    (lambda: _claims(sub=7), "subject"),
    # One user, one spelling: leading zeros, signs, spaces and non-ASCII digits would make two identity
    # provider subjects the same user. 5,000 digits once answered 500 (int() refuses 4,300+ digits).
    (lambda: _claims(sub="007"), "user id"),
    (lambda: _claims(sub="+7"), "user id"),
    (lambda: _claims(sub=" 7"), "user id"),
    (lambda: _claims(sub="7\n"), "user id"),
    (lambda: _claims(sub="\u0667"), "user id"),
    (lambda: _claims(sub="9" * 5000), "user id"),
    (lambda: _claims(nbf=int(time.time()) + 600), "not yet valid"),
])
def test_tokens_that_do_not_authenticate(hs: Settings, claims: Callable[[], dict[str, object]], why: str) -> None:
    token = jwt.encode(claims(), local_secret(hs.jwt_secret_path), algorithm="HS256")
    with pytest.raises(InvalidToken, match=f"(?i){why}"):
        TokenVerifier(hs).verify(token)


def test_a_wrong_signature_none_algorithm_and_garbage_are_refused(hs: Settings, tmp_path: Path) -> None:
    verifier = TokenVerifier(hs)
    forged = jwt.encode(_claims(), "another secret of at least thirty-two bytes!!", algorithm="HS256")
    unsigned = jwt.encode(_claims(), None, algorithm="none")
    for token in (forged, unsigned, "not-a-jwt", "", "a.b.c"):
        with pytest.raises(InvalidToken):
            verifier.verify(token)


def test_an_oversized_token_is_refused_before_it_is_parsed(hs: Settings) -> None:
    huge = jwt.encode(_claims(padding="x" * 10_000), local_secret(hs.jwt_secret_path), algorithm="HS256")
    with pytest.raises(InvalidToken, match="longer than"):
        TokenVerifier(hs).verify(huge)


def test_a_verified_token_is_cached_until_it_expires(tmp_path: Path) -> None:
    s = Settings(jwt_secret_file=str(tmp_path / "secret"), jwt_leeway_seconds=0)
    verifier = TokenVerifier(s, cache_size=2)
    token = mint_token(s, 5, ttl_seconds=2)  # iat is whole seconds: 1-2 s left, more than the loop below takes
    assert verifier.verify(token) == 5
    decoded: list[str] = []
    decode = verifier._decode
    verifier._decode = lambda t: (decoded.append(t), decode(t))[1]  # type: ignore[method-assign]
    for _ in range(100):
        assert verifier.verify(token) == 5
    assert decoded == []  # answered from the cache, no signature checked again
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time()) + 0.1)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)
    assert decoded == [token]  # expired: checked again, and refused
    first, second, third = (mint_token(s, user) for user in (1, 2, 3))
    for t in (first, second, first, third):  # bounded: the least recently used entry goes
        verifier.verify(t)
    assert len(verifier._cache) == 2 and second not in verifier._cache and first in verifier._cache


def _pem_pair(kind: str) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(65537, 2048) if kind == "RS256" else ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_production_keys_public_key_file_and_jwks(tmp_path: Path, algorithm: str) -> None:
    private, public = _pem_pair(algorithm)
    (tmp_path / "private.pem").write_bytes(private)
    (tmp_path / "public.pem").write_bytes(public)
    signer = Settings(jwt_algorithm=algorithm, jwt_private_key_file=str(tmp_path / "private.pem"))
    token = mint_token(signer, 9, kid="k1")
    by_pem = Settings(jwt_algorithm=algorithm, jwt_public_key_file=str(tmp_path / "public.pem"))
    assert TokenVerifier(by_pem).verify(token) == 9

    jwk = json.loads(jwt.PyJWK.from_json(json.dumps(_jwk(public, algorithm))).Algorithm.to_jwk(
        serialization.load_pem_public_key(public)))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": algorithm, "use": "sig"}]}))
    by_jwks = Settings(jwt_algorithm=algorithm, jwks_file=str(tmp_path / "jwks.json"))
    assert TokenVerifier(by_jwks).verify(token) == 9
    with pytest.raises(InvalidToken, match="kid"):
        TokenVerifier(by_jwks).verify(mint_token(signer, 9, kid="rotated-away"))
    # A kid naming a key of another type (an EC key where tokens are RS256, or the reverse) is a 401 too.
    other = "ES256" if algorithm == "RS256" else "RS256"
    other_private, other_public = _pem_pair(other)
    keys = [{**_jwk(public, algorithm), "kid": "k1", "use": "sig"},
            {**_jwk(other_public, other), "kid": "k2", "use": "sig"}]
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": keys}))
    mixed = TokenVerifier(Settings(jwt_algorithm=algorithm, jwks_file=str(tmp_path / "jwks.json")))
    for forged in (mint_token(signer, 9, kid="k2"),
                   jwt.encode(_claims(), other_private, algorithm=other, headers={"kid": "k2"})):
        with pytest.raises(InvalidToken, match="cannot verify"):
            mixed.verify(forged)
    assert mixed.verify(token) == 9
    # The algorithm is the verifier's, never the token's: an HS256 token "signed" with the public key fails.
    confused = jwt.encode(_claims(), "x" * 32, algorithm="HS256")
    with pytest.raises(InvalidToken):
        TokenVerifier(by_pem).verify(confused)


def _jwk(public: bytes, algorithm: str) -> dict[str, str]:
    algo = jwt.get_algorithm_by_name(algorithm)
    return json.loads(algo.to_jwk(algo.prepare_key(public)))  # type: ignore[no-any-return]


def test_misconfiguration_is_an_error_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PUBLIC_KEY_FILE or FANOUT_JWKS_FILE"):
        TokenVerifier(Settings(jwt_algorithm="RS256"))
    with pytest.raises(ValueError, match="not one of"):
        TokenVerifier(Settings(jwt_algorithm="none"))
    with pytest.raises(ValueError, match="PRIVATE_KEY_FILE"):
        mint_token(Settings(jwt_algorithm="ES256"), 1)
    (tmp_path / "short").write_text("too short")
    (tmp_path / "short").chmod(0o600)
    with pytest.raises(InsecureSecret, match="32 bytes"):
        TokenVerifier(Settings(jwt_secret_file=str(tmp_path / "short")))


def test_a_secret_file_open_to_others_or_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """Any file of 32+ bytes was once trusted as the secret, whoever owned or could read it."""
    secret = tmp_path / "secret"
    secret.write_text("s" * 64 + "\n")
    for mode in (0o644, 0o640, 0o602):
        secret.chmod(mode)
        with pytest.raises(InsecureSecret, match=f"open to group or others \\(mode {mode:o}\\)"):
            TokenVerifier(Settings(jwt_secret_file=str(secret)))
    secret.chmod(0o600)
    assert TokenVerifier(Settings(jwt_secret_file=str(secret))).verify(
        mint_token(Settings(jwt_secret_file=str(secret)), 3)) == 3
    if os.geteuid() == 0:
        os.chown(secret, 65534, 65534)  # nobody's
        foreign = secret
    else:
        foreign = Path("/etc/passwd")  # root's
    with pytest.raises(InsecureSecret, match="belongs to uid"):
        TokenVerifier(Settings(jwt_secret_file=str(foreign)))


def test_the_secret_is_found_in_the_project_state_dir_from_any_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cd /tmp && fanout token 7` once made /tmp/.fanout/state/jwt-hs256.secret, which the services
    never read."""
    at_root = Settings.load(env={}).jwt_secret_path
    monkeypatch.chdir(tmp_path)
    assert Settings.load(env={}).jwt_secret_path == at_root == PROJECT_ROOT / ".fanout" / "state" / "jwt-hs256.secret"
    assert Settings.load(env={"FANOUT_JWT_SECRET_FILE": "keys/s"}).jwt_secret_path == PROJECT_ROOT / "keys" / "s"
