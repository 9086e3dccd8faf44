"""The pages a person sees, on a real portal over real HTTP: the catalogue grouped by level and
sorted by title, the refusal pages framed like every other page (title, the signed-in user's
header and a working Sign-out form), `GET /auth/logout` explaining itself, a failed sign-in
keeping the username, and a public page that does not offer "Sign in" to a signed-in user."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser

import httpx2
import pytest

from .cli_runner import mint_token
from .helpers import HTML, JSON, SESSION_COOKIE, bearer, csrf_token
from .servers import RunningPortal, serve

# Titles sort otherwise than paths, and two levels hold two products each.
MOUNTS = """
[[mount]]
path = "/zz-notes"
app = "products.test.app:app"
level = "public"
title = "Anyone's notes"

[[mount]]
path = "/about"
app = "products.about.app:app"
level = "public"
title = "Welcome"

[[mount]]
path = "/aa-tool"
app = "products.test.app:app"
level = "stable"
title = "Zeta tool"

[[mount]]
path = "/bb-tool"
app = "products.test.app:app"
level = "stable"
title = "alpha tool"

[[mount]]
path = "/mm"
app = "products.test.app:app"
level = "ea"
title = "Mid"

[[mount]]
path = "/dd"
app = "products.test.app:app"
level = "ea"
title = "Delta"

[[mount]]
path = "/cc"
app = "products.test.app:app"
level = "devel"
title = "Beta"

[[mount]]
path = "/top"
app = "products.test.app:app"
level = "admin"
title = "Top secret"
"""

# What each user's catalogue shows: (level, [titles]) in page order.
PUBLIC_GROUP = ("public", ["Anyone's notes", "Welcome"])
STABLE_GROUP = ("stable", ["alpha tool", "Zeta tool"])
ADMIN_VIEW = [
    ("admin", ["Top secret"]),
    ("devel", ["Beta"]),
    ("ea", ["Delta", "Mid"]),
    STABLE_GROUP,
    PUBLIC_GROUP,
]
STABLE_VIEW = [STABLE_GROUP, PUBLIC_GROUP]


@pytest.fixture(scope="module")
def pages_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPortal]:
    with serve(tmp_path_factory.mktemp("pages"), mounts=MOUNTS) as running:
        for name, level in (("user-stable", "stable"), ("user-admin", "admin")):
            running.add_user(name, level, email=f"{name}@example.org")
        running.wait_until(lambda: running.knows("user-stable", "user-admin"))
        yield running


class _Groups(HTMLParser):
    """The catalogue page's groups: each section's level and its tiles' titles, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[tuple[str, list[str]]] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "section" and "level-group" in classes:
            level = next(c[len("level-") :] for c in classes[1:] if not c.startswith("level-rank"))
            self.groups.append((level, []))
        self._in_title = tag == "span" and "tile-title" in classes

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.groups[-1][1].append(data)
            self._in_title = False


def groups_on(page: str) -> list[tuple[str, list[str]]]:
    parser = _Groups()
    parser.feed(page)
    return parser.groups


def form_token(page: str, action: str) -> str:
    """The CSRF token of the form posting to `action` on `page`."""
    match = re.search(
        rf'<form method="post" action="{re.escape(action)}"[^>]*>\s*'
        r'<input type="hidden" name="csrf_token" value="([^"]+)">',
        page,
    )
    assert match, page
    return match.group(1)


def signed_out(portal: RunningPortal, client: httpx2.Client, page: str) -> None:
    """Post the Sign-out form found on `page`, and check that it ended the session."""
    answer = client.post("/auth/logout", data={"csrf_token": form_token(page, "/auth/logout")})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/auth/login"
    client.cookies.clear()


# -- the catalogue ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "view"), [("user-admin", ADMIN_VIEW), ("user-stable", STABLE_VIEW)]
)
def test_catalogue_groups_by_level_highest_first_then_title(
    pages_portal: RunningPortal, username: str, view: list[tuple[str, list[str]]]
) -> None:
    with pages_portal.logged_in(username) as client:
        page = client.get("/", headers=HTML)
        assert page.status_code == 200
        assert groups_on(page.text) == view
        listed = client.get("/", headers=JSON).json()["products"]
    assert [(row["level"], row["title"]) for row in listed] == [
        (level, title) for level, titles in view for title in titles
    ]


def test_level_badges_carry_one_colour_class_per_rank(pages_portal: RunningPortal) -> None:
    with pages_portal.logged_in("user-admin") as client:
        page = client.get("/", headers=HTML).text
    for rank, level in enumerate(("public", "stable", "ea", "devel", "admin")):
        assert f'<span class="level level-{level} level-rank-{rank}">{level}</span>' in page
    # the header shows the user's own level in its colour
    assert '<span class="name">user-admin</span>' in page
    assert page.count('class="level level-admin level-rank-4"') == 3  # header, intro, group


# -- refusals framed like every page --------------------------------------------------------

REFUSALS = [
    # (method, path, status, heading), for user-stable
    ("GET", "/nothing/here", 404, "Not found"),
    ("GET", "/top/", 403, "Not for your level"),
    ("POST", "/", 405, "Method not allowed"),
]


@pytest.mark.parametrize(("method", "path", "status", "heading"), REFUSALS)
def test_refusal_pages_carry_the_title_and_the_signed_in_users_header(
    pages_portal: RunningPortal, method: str, path: str, status: int, heading: str
) -> None:
    with pages_portal.logged_in("user-stable") as client:
        page = client.request(method, path, headers=HTML)
        assert page.status_code == status
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert f"<title>{heading} · Test Portal</title>" in page.text
        assert '<a class="brand" href="/">Test Portal</a>' in page.text
        assert '<span class="name">user-stable</span>' in page.text
        assert '<span class="level level-stable level-rank-1">stable</span>' in page.text
        assert f'<p class="status">Error {status}</p>' in page.text
        assert '<a class="button primary" href="/">Back to your products</a>' in page.text
        if status == 405:
            assert set(page.headers["allow"].split(", ")) == {"GET", "HEAD"}  # a set in Starlette
        # the browser holds the CSRF cookie of its login form: no new one
        assert "set-cookie" not in page.headers
        # and the Sign-out form on the refusal page works
        signed_out(pages_portal, client, page.text)


def test_a_refusal_page_hands_out_a_csrf_cookie_when_the_browser_has_none(
    pages_portal: RunningPortal,
) -> None:
    """A browser that kept its session but lost the CSRF cookie (it ends with the browser
    session) can still sign out from the page it is shown."""
    with pages_portal.logged_in("user-stable") as signed_in:
        session = str(signed_in.cookies[SESSION_COOKIE])
    with pages_portal.client(cookies={SESSION_COOKIE: session}) as client:
        page = client.get("/nothing/here", headers=HTML)
        assert page.status_code == 404
        assert re.fullmatch(
            r"portal_csrf=[\w-]+; Path=/; HttpOnly; SameSite=Lax", page.headers["set-cookie"]
        )
        signed_out(pages_portal, client, page.text)
        assert client.get("/", headers=JSON).status_code == 401  # the session ended


def test_an_anonymous_refusal_page_offers_sign_in_and_no_header(
    pages_portal: RunningPortal,
) -> None:
    with pages_portal.client() as client:
        page = client.get("/nothing/here", headers=HTML)
    assert page.status_code == 404
    assert '<a class="brand" href="/">Test Portal</a>' in page.text
    assert '<a class="button primary" href="/auth/login">Sign in</a>' in page.text
    assert "Sign out" not in page.text
    assert 'name="csrf_token"' not in page.text
    assert "set-cookie" not in page.headers


def test_a_token_holder_is_named_but_offered_no_sign_out(pages_portal: RunningPortal) -> None:
    """An API token is not a session: nothing to sign out of, no CSRF cookie handed out."""
    token = mint_token(pages_portal.settings_file, "user-stable")
    with pages_portal.client() as client:
        page = client.get("/top/", headers={**HTML, **bearer(token)})
    assert page.status_code == 403
    assert '<span class="name">user-stable</span>' in page.text
    assert "Sign out" not in page.text
    assert "set-cookie" not in page.headers


def test_refusals_to_scripts_stay_json(pages_portal: RunningPortal) -> None:
    with pages_portal.logged_in("user-stable") as client:
        missing = client.get("/nothing/here", headers=JSON)
        wrong = client.post("/", headers=JSON)
    assert (missing.status_code, missing.json()) == (404, {"error": "not_found"})
    assert (wrong.status_code, wrong.json()) == (405, {"error": "method_not_allowed"})
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert "set-cookie" not in missing.headers


# -- GET /auth/logout ------------------------------------------------------------------------


def test_get_logout_explains_itself_and_offers_the_button(pages_portal: RunningPortal) -> None:
    with pages_portal.logged_in("user-stable") as client:
        page = client.get("/auth/logout", headers=HTML)
        assert page.status_code == 405
        assert page.headers["allow"] == "POST"
        assert page.headers["cache-control"] == "no-store"
        assert "<h1>Sign out with the button</h1>" in page.text
        assert '<span class="name">user-stable</span>' in page.text
        assert '<button type="submit" class="button primary">Sign out</button>' in page.text
        # opening the address signed nobody out
        assert client.get("/", headers=JSON).status_code == 200
        signed_out(pages_portal, client, page.text)
        assert client.get("/", headers=JSON).status_code == 401


def test_get_logout_when_signed_out_says_so(pages_portal: RunningPortal) -> None:
    with pages_portal.client() as client:
        page = client.get("/auth/logout", headers=HTML)
        script = client.get("/auth/logout", headers=JSON)
    assert page.status_code == 405
    assert "<p>You are not signed in.</p>" in page.text
    assert '<a class="button primary" href="/auth/login">Sign in</a>' in page.text
    assert 'action="/auth/logout"' not in page.text
    assert (script.status_code, script.json()) == (405, {"error": "method_not_allowed"})
    assert script.headers["allow"] == "POST"


# -- sign-in ---------------------------------------------------------------------------------


def test_a_failed_sign_in_keeps_the_username_and_never_the_password(
    pages_portal: RunningPortal,
) -> None:
    wrong = "not-the-password-42"
    with pages_portal.client() as client:
        answer = pages_portal.login(client, "user-stable", wrong)
    assert answer.status_code == 401
    assert (
        '<input name="username" value="user-stable" autocomplete="username" required>'
        in answer.text
    )
    # the password field is empty, and has the focus
    assert (
        '<input name="password" type="password" autocomplete="current-password" required'
        " autofocus>" in answer.text
    )
    assert wrong not in answer.text


def test_a_kept_username_is_escaped(pages_portal: RunningPortal) -> None:
    with pages_portal.client() as client:
        answer = pages_portal.login(client, '"><script>x</script>', "nope")
    assert answer.status_code == 401
    assert 'value="&#34;&gt;&lt;script&gt;x&lt;/script&gt;"' in answer.text
    assert "<script>" not in answer.text


def test_the_login_form_starts_empty(pages_portal: RunningPortal) -> None:
    with pages_portal.client() as client:
        page = client.get("/auth/login", headers=HTML)
    assert '<input name="username" value="" autocomplete="username" required autofocus>' in (
        page.text
    )
    assert csrf_token(page.text)


# -- the public page -------------------------------------------------------------------------


def test_the_public_page_offers_sign_in_to_a_visitor_only(pages_portal: RunningPortal) -> None:
    with pages_portal.client() as client:
        visitor = client.get("/about/", headers=HTML)
    assert visitor.status_code == 200
    assert '<a class="button primary" href="/auth/login">Sign in</a>' in visitor.text
    with pages_portal.logged_in("user-stable") as client:
        member = client.get("/about/", headers=HTML)
    assert member.status_code == 200
    assert "Sign in" not in member.text
    assert "You are signed in as <strong>user-stable</strong>." in member.text
    assert '<a class="button primary" href="/">Your products</a>' in member.text


def test_the_login_page_still_lists_public_products(pages_portal: RunningPortal) -> None:
    with pages_portal.client() as client:
        page = client.get("/auth/login", headers=HTML)
    # by title, as the catalogue: "Anyone's notes" (/zz-notes) before "Welcome" (/about)
    listed = re.findall(r'<li><a href="([^"]+)">', page.text)
    assert listed == ["/zz-notes/", "/about/"]
