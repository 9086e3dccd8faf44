"""The security middlewares one by one, each around a tiny inline ASGI app (STYLE.md: build tiny
apps inline), for what a running portal over plain http cannot show: HSTS, IPv6 proxies, the
sampler's windows, and the settings that configure them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from portal_asgi.audit import DenialSampler
from portal_asgi.exceptions import SettingsError
from portal_asgi.middleware import inbound
from portal_asgi.middleware.crosssite import is_cross_site
from portal_asgi.middleware.headers import SecurityHeaders
from portal_asgi.middleware.proxies import Proxies, is_forwarding_header
from portal_asgi.settings import SecuritySettings, load_settings
from portal_asgi.types import Scope

from ..servers import RunningPortal, settings_text


def test_hsts_on_every_answer_over_https_and_form_action_names_the_provider() -> None:
    """ASVS 9.1.1 (HSTS); the CSP lets logout reach the provider's end_session_endpoint."""
    policy = SecurityHeaders(
        product_headers=(("x-content-type-options", "nosniff"),),
        https=True,
        hsts_max_age=600,
        form_targets=("https://idp.example",),
    )
    own = [(b"x-frame-options", b"SAMEORIGIN")]
    for product in (False, True):
        headers = dict(policy.headers_for(list(own), product=product))
        assert headers[b"strict-transport-security"] == b"max-age=600"
    headers = dict(policy.headers_for(list(own), product=False, no_store=True))
    assert b"form-action 'self' https://idp.example;" in headers[b"content-security-policy"]
    assert headers[b"cache-control"] == b"no-store"
    headers = dict(policy.headers_for(list(own), product=True))
    assert (
        headers[b"x-frame-options"] == b"SAMEORIGIN" and b"content-security-policy" not in headers
    )


def test_trusted_proxy_chain_with_ipv6_ports_and_malformed_hops() -> None:
    """uvicorn's --forwarded-allow-ips semantics, networks included."""
    proxies = Proxies(["10.0.0.0/8", "::1"])
    assert proxies.client_from(["2001:db8::5, 10.1.2.3"], "::1") == "2001:db8::5"
    assert proxies.client_from(["198.51.100.7:5555, [2001:db8::9]:80"], "10.0.0.1") == "2001:db8::9"
    assert proxies.client_from(["203.0.113.1, junk"], "10.0.0.1") == "10.0.0.1"
    assert proxies.client_from(["10.0.0.2, 10.0.0.3"], "10.0.0.1") == "10.0.0.2"
    scope: Scope = {
        "type": "http",
        "client": ("192.0.2.1", 1),
        "headers": [(b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-proto", b"https")],
    }
    read = inbound.read(scope)
    proxies.apply(scope, read)
    assert scope["client"] == ("192.0.2.1", 1) and read.headers == [] and "scheme" not in scope
    scope["client"] = ("10.9.9.9", 1)
    read = inbound.read(scope)
    proxies.apply(scope, read)
    assert scope["client"] == ("1.2.3.4", 0) and scope["scheme"] == "https"
    assert is_forwarding_header(b"X_Forwarded_For") and is_forwarding_header(b"forwarded")
    assert not is_forwarding_header(b"x-portal-user")


def test_fetch_metadata_decides_before_origin() -> None:
    def scope(**headers: str) -> Scope:
        return {"headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}

    origin = "https://portal.example"
    assert is_cross_site(scope(sec_fetch_site="cross-site", origin=origin), origin)
    assert not is_cross_site(
        scope(sec_fetch_site="same-origin", origin="https://evil.example"), origin
    )
    assert is_cross_site(scope(origin="https://portal.example.evil.example"), origin)
    assert not is_cross_site(scope(origin="https://PORTAL.example:443"), origin)
    assert not is_cross_site(scope(), origin)


def test_denial_sampler_caps_each_window_and_reports_the_rest() -> None:
    sampler = DenialSampler(3, window=60)
    kept = [sampler.admit(100.0 + i)[0] for i in range(10)]
    assert kept.count(True) == 3
    keep, suppressed = sampler.admit(200.0)
    assert keep and suppressed == 7


def test_security_settings_defaults_and_checks(tmp_path: Path) -> None:
    file = tmp_path / "settings.toml"
    file.write_text(
        settings_text(
            tmp_path, mounts='[[mount]]\npath = "/a"\napp = "x:y"\nlevel = "stable"\ncsrf = false\n'
        )
    )
    loaded = load_settings(file)
    assert loaded.security == SecuritySettings()
    assert (loaded.security.max_retries, loaded.security.find_time, loaded.security.ban_time) == (
        5,
        120,
        300,
    )
    assert loaded.mounts[0].csrf is False
    bad = {
        'trusted_proxies = ["not-an-address"]': "security.trusted_proxies",
        "max_retries = 0": "security.max_retries",
        'ban_time = "soon"': "security.ban_time",
        'product_headers = { "x-a" = 1 }': "security.product_headers",
        "surprise = 1": "security.surprise",
    }
    for line, key in bad.items():
        file.write_text(settings_text(tmp_path, mounts=f"[security]\n{line}\n"))
        with pytest.raises(SettingsError) as caught:
            load_settings(file)
        assert caught.value.key == key
    file.write_text(
        settings_text(
            tmp_path, mounts='[[mount]]\npath = "/a"\napp = "x:y"\nlevel = "stable"\ncsrf = "no"\n'
        )
    )
    with pytest.raises(SettingsError):
        load_settings(file)


def test_passwords_are_stored_as_argon2id(secure_portal: RunningPortal) -> None:
    """ASVS 2.4.1: an approved one-way KDF, with a salt of its own per password."""
    from sqlalchemy import select

    from portal_asgi.db.models import User

    async def work(db: Any) -> list[str | None]:
        async with db.session() as session:
            return list(
                await session.scalars(
                    select(User.password_hash).where(User.username.like("user-%"))
                )
            )

    hashes = secure_portal.run_db(work)
    assert hashes and all(h and h.startswith("$argon2id$") for h in hashes)
    assert len({h.split("$")[4] for h in hashes if h}) == len(hashes)  # salts all differ
