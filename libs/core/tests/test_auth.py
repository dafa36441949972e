"""Token minting and verification, bearer parsing, and the principal accessors (no server needed)."""

from __future__ import annotations

import asyncio

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelhub.core.config import DEV_JWT_SECRET, ServiceSettings
from modelhub.core.errors import PermissionDenied, Unauthenticated
from modelhub.core.grpc.auth import (
    Principal,
    TokenVerifier,
    bearer_token,
    current_principal,
    issue_token,
    require_principal,
    use_principal,
)

SECRET = "a-test-secret-of-at-least-thirty-two-bytes"


def reason(excinfo: pytest.ExceptionInfo[Unauthenticated]) -> str:
    return excinfo.value.reason


def test_issued_tokens_verify_to_their_principal() -> None:
    token = issue_token("u-42", ["user", "admin"], key=SECRET)
    assert TokenVerifier(SECRET).verify(token) == Principal("u-42", frozenset({"user", "admin"}))


def test_the_principal_name_is_the_preferred_username_or_else_the_id() -> None:
    verifier = TokenVerifier(SECRET)
    named = verifier.verify(issue_token("u-42", key=SECRET, extra_claims={"preferred_username": " alice "}))
    assert (named.id, named.name, named.display_name) == ("u-42", "alice", "alice")
    unnamed = verifier.verify(issue_token("u-43", key=SECRET))
    assert (unnamed.name, unnamed.display_name) == ("u-43", "u-43")
    odd = verifier.verify(issue_token("u-44", key=SECRET, extra_claims={"preferred_username": 7}))
    assert odd.name == "u-44"
    assert Principal("u-1", frozenset({"user"}), name="a") == Principal("u-1", frozenset({"user"}), name="b")
    assert Principal("u-1", frozenset({"user"})).display_name == "u-1"


def test_unknown_roles_are_dropped() -> None:
    token = issue_token("svc", ["service"], key=SECRET, extra_claims={"roles": ["service", "superuser"]})
    assert TokenVerifier(SECRET).verify(token).roles == frozenset({"service"})


def test_expired_and_wrongly_signed_tokens_are_refused_with_distinct_reasons() -> None:
    verifier = TokenVerifier(SECRET)
    with pytest.raises(Unauthenticated) as expired:
        verifier.verify(issue_token("u", key=SECRET, expires_in=-120))
    assert reason(expired) == "TOKEN_EXPIRED"
    assert "expired" in expired.value.message
    with pytest.raises(Unauthenticated) as forged:
        verifier.verify(issue_token("u", key="another-secret-of-at-least-thirty-two-bytes"))
    assert reason(forged) == "TOKEN_INVALID"
    assert "signature" in forged.value.message


def test_leeway_accepts_tokens_that_just_expired() -> None:
    token = issue_token("u", key=SECRET, expires_in=-2)
    assert TokenVerifier(SECRET, leeway_seconds=10).verify(token).id == "u"
    with pytest.raises(Unauthenticated):
        TokenVerifier(SECRET, leeway_seconds=0).verify(token)


def test_a_verified_token_is_remembered_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    verifier = TokenVerifier(SECRET, leeway_seconds=0)
    token = issue_token("u", key=SECRET, expires_in=60)
    assert verifier.verify(token).id == "u"
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: pytest.fail("a remembered token is decoded again"))
    assert verifier.verify(token).id == "u"
    later = time.time() + 120  # past exp: the token is checked again (and PyJWT finds it expired)
    monkeypatch.setattr(time, "time", lambda: later)

    def expired_now(*args: object, **kwargs: object) -> None:
        raise jwt.ExpiredSignatureError

    monkeypatch.setattr(jwt, "decode", expired_now)
    with pytest.raises(Unauthenticated) as expired:
        verifier.verify(token)
    assert reason(expired) == "TOKEN_EXPIRED"


class CountingDecode:
    """jwt.decode, counting its calls (each one is a full check of the token)."""

    def __init__(self) -> None:
        self.calls = 0
        self._decode = jwt.decode

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        return self._decode(*args, **kwargs)  # type: ignore[arg-type]


def test_the_cache_ends_exactly_where_pyjwt_would_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    verifier = TokenVerifier(SECRET, leeway_seconds=5)
    token = issue_token("u", key=SECRET, expires_in=60)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert verifier.verify(token).id == "u"
    decode = CountingDecode()
    monkeypatch.setattr(jwt, "decode", decode)
    monkeypatch.setattr(time, "time", lambda: exp + 5 - 0.001)
    assert verifier.verify(token).id == "u"
    assert decode.calls == 0
    monkeypatch.setattr(time, "time", lambda: exp + 5)  # PyJWT: expired once now >= exp + leeway
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: (_ for _ in ()).throw(jwt.ExpiredSignatureError()))
    with pytest.raises(Unauthenticated) as expired:
        verifier.verify(token)
    assert reason(expired) == "TOKEN_EXPIRED"
    with pytest.raises(Unauthenticated):  # and it is not remembered as valid again
        verifier.verify(token)


def test_different_tokens_are_remembered_apart() -> None:
    verifier = TokenVerifier(SECRET)
    user = issue_token("u-1", ["user"], key=SECRET)
    admin = issue_token("u-2", ["admin"], key=SECRET)
    same_subject_more_roles = issue_token("u-1", ["user", "moderator"], key=SECRET, expires_in=7200)
    for _ in range(2):  # the second round answers from the cache
        assert verifier.verify(user) == Principal("u-1", frozenset({"user"}))
        assert verifier.verify(admin) == Principal("u-2", frozenset({"admin"}))
        assert verifier.verify(same_subject_more_roles) == Principal("u-1", frozenset({"user", "moderator"}))


def test_refused_tokens_are_never_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(SECRET)
    good = issue_token("u", key=SECRET)
    assert verifier.verify(good).id == "u"
    forged = issue_token("u", key="another-secret-of-at-least-thirty-two-bytes")
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")  # a cached token with its signature changed
    decode = CountingDecode()
    monkeypatch.setattr(jwt, "decode", decode)
    for _ in range(2):
        for bad in (forged, tampered, good + "x", issue_token("u", key=SECRET, expires_in=-60)):
            with pytest.raises(Unauthenticated):
                verifier.verify(bad)
    assert decode.calls == 8  # every refusal was a full check, none answered from the cache
    assert verifier.verify(good).id == "u"  # refusals did not evict or poison the valid token
    assert decode.calls == 8


@pytest.mark.parametrize("missing", ["exp", "sub"])
def test_exp_and_sub_are_required(missing: str) -> None:
    claims = {"sub": "u", "exp": 4_000_000_000, "roles": ["user"]}
    del claims[missing]
    with pytest.raises(Unauthenticated) as excinfo:
        TokenVerifier(SECRET).verify(jwt.encode(claims, SECRET, algorithm="HS256"))
    assert missing in excinfo.value.message


def test_the_algorithm_is_pinned() -> None:
    token = issue_token("u", key=SECRET * 2, algorithm="HS512")
    with pytest.raises(Unauthenticated):
        TokenVerifier(SECRET * 2, "HS256").verify(token)
    unsigned = jwt.encode({"sub": "u", "exp": 4_000_000_000}, "", algorithm="none")
    with pytest.raises(Unauthenticated):
        TokenVerifier(SECRET).verify(unsigned)


def test_audience_and_issuer_are_checked_when_configured() -> None:
    verifier = TokenVerifier(SECRET, audience="modelhub", issuer="https://id.example")
    good = issue_token("u", key=SECRET, audience="modelhub", issuer="https://id.example")
    assert verifier.verify(good).id == "u"
    for bad in (
        issue_token("u", key=SECRET, audience="elsewhere", issuer="https://id.example"),
        issue_token("u", key=SECRET, audience="modelhub", issuer="https://evil.example"),
        issue_token("u", key=SECRET),
    ):
        with pytest.raises(Unauthenticated):
            verifier.verify(bad)
    # Without configured audience, a token carrying one is still accepted.
    assert TokenVerifier(SECRET).verify(good).id == "u"


def test_asymmetric_keys_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    monkeypatch.setenv("MODELHUB_JWT_ALGORITHM", "ES256")
    monkeypatch.setenv("MODELHUB_JWT_PUBLIC_KEY", public_pem)
    verifier = TokenVerifier.from_settings(ServiceSettings())
    token = issue_token("u-7", ["moderator"], key=private_pem, algorithm="ES256")
    assert verifier.verify(token) == Principal("u-7", frozenset({"moderator"}))
    with pytest.raises(Unauthenticated):  # an HMAC token signed with the public key must not pass
        verifier.verify(jwt.encode({"sub": "x", "exp": 4_000_000_000}, DEV_JWT_SECRET, algorithm="HS256"))


def test_bearer_token_parsing() -> None:
    assert bearer_token(None) is None
    assert bearer_token([("x-other", "1")]) is None
    assert bearer_token([("authorization", "Bearer abc.def")]) == "abc.def"
    assert bearer_token([("Authorization", b"bearer  abc ")]) == "abc"
    for bad in ("Basic dTpw", "Bearer", "abc"):
        with pytest.raises(Unauthenticated) as excinfo:
            bearer_token([("authorization", bad)])
        assert reason(excinfo) == "CREDENTIALS_MALFORMED"


def test_principal_accessors() -> None:
    assert current_principal() is None
    with pytest.raises(Unauthenticated):
        require_principal()
    moderator = Principal("m-1", frozenset({"user", "moderator"}))
    with use_principal(moderator):
        assert current_principal() is moderator
        assert require_principal() is moderator
        assert require_principal("admin", "moderator") is moderator
        with pytest.raises(PermissionDenied) as excinfo:
            require_principal("admin")
        assert excinfo.value.reason == "ROLE_REQUIRED"
    assert current_principal() is None


async def test_principals_do_not_leak_between_concurrent_tasks() -> None:
    seen: dict[str, str | None] = {}

    async def act(name: str) -> None:
        with use_principal(Principal(name, frozenset({"user"}))):
            await asyncio.sleep(0.01)
            principal = current_principal()
            seen[name] = principal.id if principal else None

    await asyncio.gather(act("a"), act("b"), act("c"))
    assert seen == {"a": "a", "b": "b", "c": "c"}
    assert current_principal() is None
