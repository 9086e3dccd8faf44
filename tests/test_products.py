"""What a product receives (products.py, flask.py, and inbound.py's removal of the client's own
`X-Portal-*` headers): the caller's identity and never a forged one, for Starlette and Flask
products, on nested mounts where the longest path wins; over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from portal_asgi.levels import Levels

from .cli_runner import mint_token
from .helpers import HTML, JSON, Credentials, assert_needs_login, bearer, get
from .servers import LEVELS, RunningPortal, serve

FORGED = {
    "X-Portal-User": "user-admin",
    "X-Portal-Email": "admin@evil.example",
    "X-Portal-Level": "admin",
}


def test_public_mount_anonymous_sees_no_forged_identity(portal: RunningPortal) -> None:
    response = get(portal, "/public/whoami", JSON, FORGED)
    assert response.status_code == 200
    body = response.json()
    assert (body["user"], body["email"], body["level"]) == ("", "", "")


@pytest.mark.parametrize("via", ["cookie", "bearer"])
def test_logged_in_user_sees_own_identity_not_forged(
    portal: RunningPortal, level_credentials: Credentials, via: str
) -> None:
    creds = level_credentials("stable", via)
    response = get(portal, "/stable/whoami", JSON, FORGED, creds)
    assert response.status_code == 200
    body = response.json()
    assert (body["user"], body["email"], body["level"]) == (
        "user-stable",
        "stable@example.org",
        "stable",
    )
    # the forged level does not open anything either
    assert get(portal, "/top/whoami", JSON, FORGED, creds).status_code == 403


def test_portal_headers_spelt_with_underscores_are_removed(
    portal: RunningPortal, level_tokens: dict[str, str]
) -> None:
    """A WSGI bridge maps `X_Portal_User` to the same `HTTP_X_PORTAL_USER` as `X-Portal-User`."""
    sneaky = {"X_Portal_User": "user-admin", "x_portal-level": "admin"}
    anonymous = get(portal, "/public/whoami", JSON, sneaky).json()
    assert (anonymous["user"], anonymous["level"]) == ("", "")
    signed_in = get(portal, "/stable/whoami", JSON, sneaky, bearer(level_tokens["stable"])).json()
    assert (signed_in["user"], signed_in["level"]) == ("user-stable", "stable")


@pytest.mark.parametrize("via", ["cookie", "bearer"])
@pytest.mark.parametrize("level", ["ea", "devel", "admin"])
def test_starlette_product_sees_request_user_and_scopes(
    portal: RunningPortal, level_credentials: Credentials, level: str, via: str
) -> None:
    response = get(portal, "/dashboard/me", JSON, level_credentials(level, via))
    assert response.status_code == 200
    body = response.json()
    assert body["authenticated"] is True
    assert body["identity"] == f"user-{level}"
    assert body["scopes"] == ["authenticated", *Levels(LEVELS).scopes(level)]
    assert body["portal"] == {"mount": "/dashboard", "level": "ea"}
    html = get(portal, "/dashboard/", HTML, level_credentials(level, via))
    assert f"Signed in as <strong>user-{level}</strong>" in html.text


def test_starlette_product_lifespan_ran(fresh_portal: RunningPortal) -> None:
    fresh_portal.add_user("erin", "ea", wait=True)
    with fresh_portal.logged_in("erin") as client:
        body = client.get("/dashboard/me").json()
    assert body["identity"] == "erin"
    assert body["lifespan_ran"] is True


# --- custom mounts: nested mounts and Flask helpers ------------------------------------------

OUTER = '[[mount]]\npath = "/seistech"\napp = "products.test.app:app"\nlevel = "stable"\n\n'
INNER = (
    '[[mount]]\npath = "/seistech/svc_disagg"\napp = "products.test.app:app"\nlevel = "devel"\n\n'
)
FLASK = (
    '[[mount]]\npath = "/flask"\napp = "tests.flask_product:app"\nlevel = "stable"\n\n'
    '[[mount]]\npath = "/flaskpub"\napp = "tests.flask_product:app"\nlevel = "public"\n\n'
)


@pytest.fixture(scope="module", params=["outer-first", "inner-first"])
def custom_portal(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPortal]:
    mounts = (OUTER + INNER if request.param == "outer-first" else INNER + OUTER) + FLASK
    with serve(tmp_path_factory.mktemp("custom"), mounts=mounts) as running:
        running.add_level_users()
        yield running


def test_nested_mounts_longest_path_wins(custom_portal: RunningPortal) -> None:
    minted = {level: mint_token(custom_portal.settings_file, f"user-{level}") for level in LEVELS}
    stable, devel = bearer(minted["stable"]), bearer(minted["devel"])
    outer = get(custom_portal, "/seistech/whoami", JSON, stable)
    assert outer.status_code == 200
    assert outer.json()["root"] == "/seistech"
    inner = get(custom_portal, "/seistech/svc_disagg/whoami", JSON, stable)
    assert inner.status_code == 403
    assert "svc_disagg" not in inner.text
    inner = get(custom_portal, "/seistech/svc_disagg/whoami", JSON, devel)
    assert inner.status_code == 200
    assert inner.json()["root"] == "/seistech/svc_disagg"
    assert inner.json()["path"] == "/whoami"
    assert_needs_login(
        get(custom_portal, "/seistech/svc_disagg/", HTML),
        browser=True,
        path="/seistech/svc_disagg/",
    )
    # Without the trailing slash: a redirect to the inner mount's slash form, never the outer
    # product answering for its own `/svc_disagg`.
    bare = get(custom_portal, "/seistech/svc_disagg?x=1", JSON, stable)
    assert bare.status_code == 307
    assert bare.headers["location"] == "/seistech/svc_disagg/?x=1"


def test_flask_current_user(custom_portal: RunningPortal) -> None:
    with custom_portal.logged_in("user-ea") as client:
        body = client.get("/flask/me", headers=FORGED).json()
        assert body == {
            "user": "user-ea",
            "level": "ea",
            "email": "ea@example.org",
            "via": "session",
            "mount_level": "stable",
            "header_user": "user-ea",
        }
        assert client.get("/flask/admin-only").status_code == 403
    token = mint_token(custom_portal.settings_file, "user-admin")
    body = get(custom_portal, "/flask/me", bearer(token)).json()
    assert (body["user"], body["via"]) == ("user-admin", "token")
    assert get(custom_portal, "/flask/admin-only", bearer(token)).json() == {"ok": True}


def test_flask_current_user_anonymous_on_public_mount(custom_portal: RunningPortal) -> None:
    body = get(custom_portal, "/flaskpub/me", FORGED).json()
    assert body == {
        "user": None,
        "level": None,
        "email": None,
        "via": None,
        "mount_level": "public",
        "header_user": "",
    }
    assert_needs_login(get(custom_portal, "/flask/me", JSON), browser=False, path="/flask/me")
