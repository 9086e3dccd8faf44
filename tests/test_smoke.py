from __future__ import annotations

from .servers import RunningPortal


def test_user_at_ea_reaches_ea_not_devel(portal: RunningPortal) -> None:
    with portal.logged_in("user-ea") as client:
        ok = client.get("/ea/whoami")
        assert ok.status_code == 200
        assert ok.json()["user"] == "user-ea"
        assert client.get("/devel/whoami").status_code == 403
