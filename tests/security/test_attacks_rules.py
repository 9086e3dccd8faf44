"""Every path trick of the attack corpus (test_attacks_paths.py), replayed as raw request lines
against a blocked rule path and a raised rule path inside a mount, through real uvicorn: none
reaches them. The product behind is deliberately lax (tests/rule_product.py): it reads a path
every loose way a server might and shows a secret whenever any reading lands in a rule path, so
a trick the portal let through would show."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from ..rule_product import MARKER, SECRETS, lax_read
from ..servers import RunningPortal, serve
from .helpers import RawResponse, get, runtime_of
from .test_attacks_paths import ATTACKS

MOUNTS = """
[[mount]]
path = "/ruled"
app = "tests.rule_product:app"
level = "stable"
rules = [{ path = "/admin", level = "admin" }, { path = "/debug", block = true }]

[[mount]]
path = "/open"
app = "tests.rule_product:app"
level = "public"
rules = [{ path = "/admin", level = "stable" }, { path = "/debug", block = true }]
"""

# The corpus aims from one mount at another (`/stable/../devel/...`); here the same tricks aim
# from inside the mount at its rule path: the mount `/stable` becomes the ordinary sub-path
# `open`, the target mount the rule path, and the whole target moves under the mount.
_AIMS = [
    (b"disagg/v1/../v2/", b"open/../TARGET/"),
    (b"disagg/v1/%2e%2e/v2/", b"open/%2e%2e/TARGET/"),
    (b"disagg%2fv2/", b"open%2fTARGET/"),
    (b"dashboard", b"TARGET"),
    (b"stable", b"open"),
    (b"DEVEL", b"UPPER"),
    (b"Devel", b"Title"),
    (b"TOP", b"UPPER"),
    (b"devel", b"TARGET"),
    (b"top", b"TARGET"),
]


def aimed(attack: bytes, mount: bytes, target: str) -> bytes:
    """`attack` moved under `mount` and aimed at the rule path `target` (`debug`, `admin`)."""
    for old, new in _AIMS:
        attack = attack.replace(old, new)
    name = target.encode()
    attack = (
        attack.replace(b"UPPER", name.upper())
        .replace(b"Title", name.title())
        .replace(b"TARGET", name)
    )
    if attack.startswith(b"/"):
        return mount + attack
    if attack.startswith(b"http://"):
        scheme, _, rest = attack.partition(b"//")
        host, _, path = rest.partition(b"/")
        return scheme + b"//" + host + mount + b"/" + path
    return attack  # "*"


# Tricks of the rules' own: what a lax product might read as the rule path.
EXTRA = [
    b"/TARGET",
    b"/TARGET/",
    b"/TARGET/x",
    b"/TARGET;x",
    b"/TARGET;/x",
    b"/TARGET.",
    b"/TARGET./x",
    b"/TARGET%2e",
    b"/TARGET%20",
    b"/TARGET%20./x",
    b"/ENCODED",  # a letter encoded: the server decodes it, the rules read the decoded path
    b"/TWICE",  # encoded twice, for a product that decodes twice
    b"/THRICE",
    b"//TARGET",
    b"/./TARGET",
    b"/open/..;/TARGET",
    b"/open/...;/TARGET",
    b"/open/%2e%2e;/TARGET",
    b"/;x/TARGET",
    b"/FULLWIDTH",  # its first letter in fullwidth
    b"/open/%ef%bc%8e%ef%bc%8e/TARGET",  # fullwidth dots
    b"/open%ef%bc%8f..%ef%bc%8fTARGET",  # fullwidth slashes
    b"/open/%c0%ae%c0%ae/TARGET",
    b"/TARGET%00",
    b"/TARGET%c0%80",
    b"/open/%252e%252e/TARGET",
    b"/open/%%32%65%%32%65/TARGET",
]


def disguises(target: str) -> dict[bytes, bytes]:
    """The rule path's name with its first letter encoded once, twice, thrice, or fullwidth."""
    first, rest = target[0], target[1:]
    once = f"%{ord(first):02X}"
    thrice = "%25" + "".join(f"%{ord(c):02X}" for c in once[1:])
    fullwidth = quote(chr(ord(first) + 0xFEE0))
    return {
        b"ENCODED": (once + rest).encode(),
        b"TWICE": ("%25" + once[1:] + rest).encode(),
        b"THRICE": (thrice + rest).encode(),
        b"FULLWIDTH": (fullwidth + rest).encode(),
        b"TARGET": target.encode(),
    }


def targets(mount: bytes, target: str) -> list[bytes]:
    aimed_corpus = [aimed(attack, mount, target) for attack in ATTACKS]
    extra = []
    for trick in EXTRA:
        for placeholder, value in disguises(target).items():
            trick = trick.replace(placeholder, value)
        extra.append(mount + trick)
    return aimed_corpus + extra


@pytest.fixture(scope="module")
def ruled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPortal]:
    with serve(tmp_path_factory.mktemp("rules"), mounts=MOUNTS) as running:
        running.add_level_users()
        yield running


@pytest.fixture(scope="module")
def cookies(ruled: RunningPortal) -> dict[str, str]:
    name = runtime_of(ruled).cookie.name
    found = {}
    for level in ("stable", "admin"):
        with ruled.logged_in(f"user-{level}") as client:
            found[level] = f"{name}={client.cookies.get(name)}"
    return found


def ask(portal: RunningPortal, target: bytes, cookie: str | None) -> RawResponse:
    headers = {"Accept": "application/json"} | ({"Cookie": cookie} if cookie else {})
    response = get(portal.url, target, headers=headers)
    assert response.status not in (0, 500), (target, response.status, response.text[:300])
    assert "Traceback" not in response.text
    return response


def path_of(target: bytes) -> str:
    """The path of a request target (absolute-form included), as text."""
    text = target.decode("latin-1")
    if text.startswith("http://"):
        return "/" + text.partition("://")[2].partition("/")[2]
    return text


def leaked(response: RawResponse) -> list[str]:
    return [secret for secret in SECRETS.values() if secret in response.text]


# (mount, rule path, who attacks): the stable user at a stable mount whose /admin needs admin,
# and an anonymous caller at a public mount whose /admin needs stable; /debug blocked in both
CASES = [
    ("/ruled", "admin", "stable"),
    ("/ruled", "debug", "stable"),
    ("/open", "admin", None),
    ("/open", "debug", None),
]


@pytest.mark.parametrize(("mount", "target", "who"), CASES)
def test_path_tricks_never_reach_a_blocked_or_raised_rule_path(
    ruled: RunningPortal, cookies: dict[str, str], mount: str, target: str, who: str | None
) -> None:
    """ASVS 4.1.3 and 12.3.1 (path traversal): inside a mount, the rules' reading is the only
    one that matters, and no looser reading of the product's gets past it."""
    cookie = cookies[who] if who else None
    failures = []
    refusals = 0
    for trick in targets(mount.encode(), target):
        response = ask(ruled, trick, cookie)
        if leaked(response):
            failures.append((trick, response.status, response.text[:200]))
        # a trick whose loosest reading is the rule path is refused by the portal itself
        reading = lax_read(path_of(trick))
        aims_at = f"{mount}/{target}"
        if (reading == aims_at or reading.startswith(aims_at + "/")) and response.status < 400:
            failures.append((trick, response.status, "answered"))
        if response.status >= 400 and MARKER not in response.text:
            refusals += 1
    assert failures == []
    assert refusals >= len(ATTACKS)  # most of them never reached the product at all


def test_the_detector_is_not_blind(ruled: RunningPortal, cookies: dict[str, str]) -> None:
    """Whoever may reach the raised path sees its secret, and the lax product would show it for
    a path trick: the test above would notice a trick that got through."""
    allowed = ask(ruled, b"/ruled/admin/x", cookies["admin"])
    assert allowed.status == 200 and leaked(allowed) == [SECRETS["/admin"]]
    assert leaked(ask(ruled, b"/open/admin", cookies["stable"])) == [SECRETS["/admin"]]
    bare = ask(ruled, b"/ruled/open/x", cookies["stable"])
    assert bare.status == 200 and MARKER in bare.text and leaked(bare) == []
    # the lax product itself, asked directly, would read these tricks as the rule paths
    for trick in ("/ruled/open/%2e%2e/admin", "/ruled/ADMIN.", "/ruled/open/..;/debug"):
        assert lax_read(trick).startswith(("/ruled/admin", "/ruled/debug")), trick


def test_the_answers_for_rule_paths(ruled: RunningPortal, cookies: dict[str, str]) -> None:
    """A blocked path is a 404 like an absent one (behind the mount's level); a raised one is
    401 or 403 by the answers table."""
    assert ask(ruled, b"/ruled/debug", None).status == 401
    for path in (b"/ruled/debug", b"/ruled/debug/x", b"/open/debug"):
        response = ask(ruled, path, cookies["admin"])
        assert response.status == 404 and MARKER not in response.text
        assert response.text == ask(ruled, b"/nowhere/at/all", cookies["admin"]).text
    assert ask(ruled, b"/ruled/admin", None).status == 401
    assert ask(ruled, b"/ruled/admin", cookies["stable"]).status == 403
    assert ask(ruled, b"/open/admin/x", None).status == 401
    assert ask(ruled, b"/ruled/administer", cookies["stable"]).status == 200
