"""Private functions: Scaleway's JWT, verified with PyJWT against the namespace's RSA key.

A request to a private function carries a token in ``SCW-Functions-Token`` (or
``SCW_FUNCTIONS_TOKEN``). It must be signed with RS256 by the key whose public half is
``SCW_PUBLIC_KEY`` (PEM), be within its ``exp`` and ``nbf`` when it has them, and its
``application_claim`` (a list of one ``{namespace_id, application_id}``) must name
``SCW_NAMESPACE_ID`` or ``SCW_APPLICATION_ID``. Tokens never appear in a message or a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

log = logging.getLogger("ort.gateway")
LEEWAY_SECONDS = 0  # clocks on one platform agree; a leeway would only widen replays


class Refusal(NamedTuple):
    status: int  # 401, 403 or 500
    reason: str


class TokenVerifier:
    """Built once at start; ``check`` answers a Refusal, or None to let the request in."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.public = environ.get("SCW_PUBLIC", "").lower() == "true"
        self.namespace_id = environ.get("SCW_NAMESPACE_ID") or None
        self.application_id = environ.get("SCW_APPLICATION_ID") or None
        self.key: Any = None
        self.key_problem = ""
        if self.public:
            return
        pem = environ.get("SCW_PUBLIC_KEY", "")
        if not pem.strip():
            self.key_problem = "SCW_PUBLIC_KEY is not set"
        else:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            try:
                self.key = load_pem_public_key(pem.replace("\\n", "\n").encode())
            except ValueError as exc:
                self.key_problem = f"SCW_PUBLIC_KEY is not a PEM public key: {exc}"
        if self.key_problem:
            log.error("private function without a usable key: %s", self.key_problem)

    def check(self, headers: Mapping[str, str]) -> Refusal | None:
        if self.public:
            return None
        if self.key is None:
            return Refusal(500, "the function is private but its public key is not configured")
        token = headers.get("scw-functions-token") or headers.get("scw_functions_token")
        if not token:
            return Refusal(401, "missing token: send it in the SCW-Functions-Token header")
        import jwt

        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=["RS256"],
                leeway=LEEWAY_SECONDS,
                options={"verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            return Refusal(401, "invalid token: expired")
        except jwt.ImmatureSignatureError:
            return Refusal(401, "invalid token: not yet valid")
        except jwt.InvalidTokenError as exc:
            return Refusal(401, f"invalid token: {type(exc).__name__}")
        if not self._in_scope(claims.get("application_claim")):
            return Refusal(403, "the token is not for this function")
        return None

    def _in_scope(self, claim: object) -> bool:
        if not isinstance(claim, list) or len(claim) != 1 or not isinstance(claim[0], dict):
            return False
        scope = claim[0]
        return bool(
            (self.namespace_id and scope.get("namespace_id") == self.namespace_id)
            or (self.application_id and scope.get("application_id") == self.application_id)
        )
