"""`portal-asgi check --online`: the provider's discovery document and JWKS fetched as the running
portal would, and what is wrong said in plain words, exit 1 on errors. The real provider (panva's
oidc-provider) for the good case and a misspelt issuer; a closed port and a port that never
answers; a small loopback server for the broken documents no real provider serves on purpose.
Without `--online`, `check` fetches nothing."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from .cli_runner import run_cli
from .oidc.harness import Provider, oidc_settings
from .servers import free_port, settings_text


def _settings(tmp: Path, issuer: str, extra: str = "", **oidc: Any) -> Path:
    file = tmp / "settings.toml"
    file.write_text(settings_text(tmp, auth=oidc_settings(issuer, extra=extra, **oidc)))
    return file


def test_check_online_against_the_real_provider_says_ok(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    done = run_cli(_settings(tmp_path, oidc_provider.issuer), "check", "--online")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"discovery document at {oidc_provider.issuer}/.well-known/openid-configuration" in (
        done.stdout
    )
    assert f"JWKS at {oidc_provider.issuer}/jwks: signing keys for RS256 (rsa-1); ES256 (ec-1)" in (
        done.stdout
    )
    assert "online: OK, 0 error(s), 0 warning(s)" in done.stdout
    assert "ERROR" not in done.stdout and done.stderr == ""


def test_check_online_says_when_the_provider_is_unreachable(tmp_path: Path) -> None:
    issuer = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    file = _settings(tmp_path, issuer)
    offline = run_cli(file, "check")  # without --online, nothing is fetched
    assert offline.returncode == 0, offline.stderr
    assert "online:" not in offline.stdout and "unreachable" not in offline.stdout
    done = run_cli(file, "check", "--online")
    assert done.returncode == 1
    assert f"ERROR    discovery document at {issuer}/.well-known/openid-configuration is " in (
        done.stdout
    )
    assert "is unreachable: cannot connect (ConnectError" in done.stdout
    assert "online: FAILED, 1 error(s)" in done.stdout
    assert "the OIDC provider check found 1 error(s)" in done.stderr


def test_check_online_says_when_the_provider_does_not_answer_in_time(tmp_path: Path) -> None:
    # The port accepts connections (the kernel completes them) but nobody ever answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        issuer = f"http://127.0.0.1:{silent.getsockname()[1]}"
        file = tmp_path / "settings.toml"
        auth = oidc_settings(issuer).replace('timeout = "5s"', 'timeout = "1s"')
        file.write_text(settings_text(tmp_path, auth=auth))
        done = run_cli(file, "check", "--online")
    assert done.returncode == 1
    assert "is unreachable: no answer within 1s" in done.stdout


def test_check_online_says_when_the_issuer_is_spelt_otherwise(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    # The same provider, reached by another name: its tokens name the issuer it knows itself by,
    # which the portal would refuse.
    misspelt = oidc_provider.issuer.replace("127.0.0.1", "localhost")
    done = run_cli(_settings(tmp_path, misspelt), "check", "--online")
    assert done.returncode == 1, done.stdout
    assert f"names issuer {oidc_provider.issuer!r}, settings say {misspelt!r}" in done.stdout
    assert "online: FAILED" in done.stdout


class _Documents(ThreadingHTTPServer):
    answers: dict[str, tuple[int, str, bytes]]


class _Handler(BaseHTTPRequestHandler):
    server: _Documents

    def do_GET(self) -> None:
        status, kind, body = self.server.answers.get(self.path, (404, "text/plain", b"no"))
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _provider_documents() -> Iterator[_Documents]:
    """A loopback HTTP server answering what the test puts in `answers`."""
    server = _Documents(("127.0.0.1", 0), _Handler)
    server.answers = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _issuer(server: _Documents) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def _discovery(issuer: str, **changes: Any) -> dict[str, Any]:
    document = {
        "issuer": issuer,
        "authorization_endpoint": issuer + "/auth",
        "token_endpoint": issuer + "/token",
        "jwks_uri": issuer + "/jwks",
        "end_session_endpoint": issuer + "/logout",
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    document.update(changes)
    return {k: v for k, v in document.items() if v is not None}


RSA_PUBLIC = RSAKey.generate_key(2048, parameters={"kid": "r1", "use": "sig"}).as_dict(
    private=False
)
JWKS = {"keys": [RSA_PUBLIC]}


@pytest.mark.parametrize(
    ("case", "expected", "exit_code"),
    [
        (
            "not-json",
            "discovery document at {issuer}/.well-known/openid-configuration is not JSON",
            1,
        ),
        ("http-500", "openid-configuration answered HTTP 500", 1),
        ("no-jwks-uri", "lacks jwks_uri", 1),
        ("jwks-empty", "the JWKS at {issuer}/jwks holds no keys", 1),
        ("jwks-other-type", "holds no public signing key for an allowed algorithm (ES256)", 1),
        (
            "jwks-symmetric",
            "holds no public signing key for an allowed algorithm (RS256, ES256)",
            1,
        ),
        (
            "post-unsupported",
            "does not support token_endpoint_auth_method = 'client_secret_post'",
            1,
        ),
        ("no-pkce", "does not support PKCE S256", 1),
        ("no-code-flow", "does not offer the authorization code flow", 1),
        ("hs256-id-tokens", "signs ID tokens with HS256, none of the algorithms", 1),
        ("no-end-session", "WARNING  no end_session_endpoint: signing out of the portal", 0),
    ],
)
def test_check_online_says_what_is_wrong_with_the_documents(
    tmp_path: Path, case: str, expected: str, exit_code: int
) -> None:
    with _provider_documents() as server:
        issuer = _issuer(server)
        discovery: dict[str, Any] = _discovery(issuer)
        jwks: dict[str, Any] = JWKS
        extra = ""
        method = "client_secret_basic"
        if case == "no-jwks-uri":
            discovery = _discovery(issuer, jwks_uri=None)
        elif case == "jwks-empty":
            jwks = {"keys": []}
        elif case == "jwks-other-type":
            extra = 'algorithms = ["ES256"]\n'
        elif case == "jwks-symmetric":
            jwks = {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}
        elif case == "post-unsupported":
            discovery = _discovery(
                issuer, token_endpoint_auth_methods_supported=["private_key_jwt"]
            )
            method = "client_secret_post"
        elif case == "no-pkce":
            discovery = _discovery(issuer, code_challenge_methods_supported=["plain"])
        elif case == "no-code-flow":
            discovery = _discovery(issuer, response_types_supported=["id_token"])
        elif case == "hs256-id-tokens":
            discovery = _discovery(issuer, id_token_signing_alg_values_supported=["HS256"])
        elif case == "no-end-session":
            discovery = _discovery(issuer, end_session_endpoint=None)
        body = json.dumps(discovery).encode()
        answer = (200, "application/json", body)
        if case == "not-json":
            answer = (200, "text/html", b"<html>Sign in</html>")
        elif case == "http-500":
            answer = (500, "text/plain", b"oops")
        server.answers["/.well-known/openid-configuration"] = answer
        server.answers["/jwks"] = (200, "application/json", json.dumps(jwks).encode())
        file = _settings(tmp_path, issuer, extra=extra, method=method)
        done = run_cli(file, "check", "--online")
    assert expected.format(issuer=issuer) in done.stdout, done.stdout
    assert done.returncode == exit_code, done.stdout
    if exit_code:
        assert "online: FAILED" in done.stdout
    else:
        assert "online: OK, 0 error(s), 1 warning(s)" in done.stdout
