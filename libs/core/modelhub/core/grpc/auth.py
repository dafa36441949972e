"""Bearer-JWT authentication for gRPC servers, and the caller's identity for handlers.

`Authenticator` (run by the server's `CallInterceptor` around every call) reads `authorization: Bearer <jwt>`
metadata, verifies the token with PyJWT (`exp` and `sub` required; `aud`/`iss` checked when configured) and
makes the caller's `Principal` available to the handler through `current_principal()` / `require_principal()`.
Health checks and reflection need no token; methods declared public accept anonymous callers (principal None)
but still reject a bad token.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, cast, get_args

import jwt

from modelhub.core.errors import PermissionDenied, Unauthenticated

if TYPE_CHECKING:
    from modelhub.core.config import ServiceSettings

Role = Literal["user", "moderator", "admin", "service"]
ROLES: Final[frozenset[str]] = frozenset(get_args(Role))

EXEMPT_PREFIXES: Final = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
"""Methods that never need credentials: probes and tooling."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject and its roles (unknown role names are dropped).

    `name` is the token's `preferred_username` claim, for display only (the id is the identity, so two
    principals with the same id and roles are equal whatever their names); the id when the token has none.
    """

    id: str
    roles: frozenset[Role]
    name: str = field(default="", compare=False)

    @property
    def display_name(self) -> str:
        """The name to show: `name`, or the id when there is none."""
        return self.name or self.id

    def has_role(self, *roles: Role) -> bool:
        """True when the principal has at least one of `roles`."""
        return not self.roles.isdisjoint(roles)


_principal: ContextVar[Principal | None] = ContextVar("modelhub_principal", default=None)


def current_principal() -> Principal | None:
    """The authenticated caller of the current call, or None for an anonymous call to a public method."""
    return _principal.get()


def require_principal(*roles: Role) -> Principal:
    """The current caller; raises Unauthenticated if anonymous, PermissionDenied if it lacks all `roles`."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated(
            "this call needs credentials: send 'authorization: Bearer <token>' metadata",
            reason="CREDENTIALS_MISSING",
        )
    if roles and not principal.has_role(*roles):
        raise PermissionDenied(
            f"this call needs one of the roles {sorted(roles)}; the caller has {sorted(principal.roles)}",
            reason="ROLE_REQUIRED",
            metadata={"required_roles": ",".join(sorted(roles))},
        )
    return principal


@contextmanager
def use_principal(principal: Principal | None) -> Iterator[None]:
    """Act as `principal` inside the block (event consumers, scripts, unit tests of handlers)."""
    token = _principal.set(principal)
    try:
        yield
    finally:
        _principal.reset(token)


def issue_token(
    subject: str,
    roles: Iterable[Role] = ("user",),
    *,
    key: str,
    algorithm: str = "HS256",
    expires_in: float = 3600.0,
    audience: str | None = None,
    issuer: str | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """Mint a JWT for `subject` with `roles`, valid `expires_in` seconds (negative: already expired).

    `key` is the HMAC secret or, for asymmetric algorithms, the PEM private key. For development and tests;
    production tokens come from the identity provider.
    """
    now = int(time.time())
    claims: dict[str, Any] = dict(extra_claims or {})
    claims.update(sub=subject, roles=sorted(set(roles)), iat=now, exp=now + int(expires_in))
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, key, algorithm=algorithm)


class TokenVerifier:
    """Checks JWTs: signature with one algorithm and key, `exp` and `sub` present, `aud`/`iss` if set."""

    def __init__(
        self,
        key: str,
        algorithm: str = "HS256",
        *,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_seconds: float = 10.0,
    ):
        if not key:
            raise ValueError("a token verifier needs a key (HMAC secret or PEM public key)")
        self._key = key
        self._algorithm = algorithm
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway_seconds
        self._verified: dict[str, tuple[Principal, float]] = {}

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> TokenVerifier:
        """The verifier a service's settings describe."""
        return cls(
            settings.jwt_verification_key,
            settings.jwt_algorithm,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway_seconds=settings.jwt_leeway_seconds,
        )

    _CACHE_SIZE: Final = 10_000

    def verify(self, token: str) -> Principal:
        """The principal a valid token names; raises Unauthenticated saying what is wrong otherwise.

        A token verified before answers from a cache until it expires (`exp` + leeway): clients send the
        same token with every call, and checking its signature again each time is a large share of a
        short call's CPU. The key is the exact token string; a token that fails is never remembered."""
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() < cached[1]:  # PyJWT: valid while now < exp + leeway
                return cached[0]
            del self._verified[token]
        principal, expires = self._verify(token)
        if len(self._verified) >= self._CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, expires + self._leeway)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired: obtain a new one", reason="TOKEN_EXPIRED") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated(
                "the token's signature is invalid: was it issued for this environment?",
                reason="TOKEN_INVALID",
            ) from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the token is invalid: {exc}", reason="TOKEN_INVALID") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("the token's 'sub' claim must be a non-empty string", reason="SUBJECT_MISSING")
        raw_roles = claims.get("roles", [])
        if isinstance(raw_roles, str):
            raw_roles = raw_roles.split()
        if not isinstance(raw_roles, list):
            raise Unauthenticated("the token's 'roles' claim must be a list of names", reason="ROLES_INVALID")
        roles = cast(frozenset[Role], frozenset(r for r in raw_roles if r in ROLES))
        name = claims.get("preferred_username")
        if not isinstance(name, str) or not name.strip():
            name = subject
        return Principal(id=subject, roles=roles, name=name.strip()), float(claims["exp"])


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of the call's `authorization: Bearer <token>` metadata; None when there is no such header.

    Raises Unauthenticated when the header is there but is not a bearer token.
    """
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode() if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "the 'authorization' metadata must be 'Bearer <token>'", reason="CREDENTIALS_MALFORMED"
            )
        return token.strip()
    return None


class Authenticator:
    """Who calls each method: nobody for health checks and reflection (exempt), the token's principal
    otherwise; methods declared public accept anonymous callers (principal None) but still reject a bad token.
    """

    def __init__(self, verifier: TokenVerifier, public_methods: Collection[str] = ()):
        self._verifier = verifier
        self._public = frozenset(public_methods)

    def exempt(self, method: str) -> bool:
        """True for methods that never need credentials (probes and tooling)."""
        return method.startswith(EXEMPT_PREFIXES)

    def principal(self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal | None:
        """The caller of `method` the call's metadata names; raises Unauthenticated saying what is wrong."""
        token = bearer_token(metadata)
        if token is None:
            if method in self._public:
                return None
            raise Unauthenticated(
                f"{method} needs credentials: send 'authorization: Bearer <token>' metadata",
                reason="CREDENTIALS_MISSING",
            )
        return self._verifier.verify(token)

    @staticmethod
    def act_as(principal: Principal | None) -> Token[Principal | None]:
        """Make `principal` the current caller (`current_principal()`) until `Authenticator.reset(token)`."""
        return _principal.set(principal)

    @staticmethod
    def reset(token: Token[Principal | None]) -> None:
        """Undo `act_as`."""
        _principal.reset(token)
