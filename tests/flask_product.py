"""A test-only Flask product that uses the optional helpers of `portal_asgi.flask`."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

from portal_asgi.flask import current_user, mount_level, requires_level

app = Flask(__name__)


@app.get("/me")
def me() -> Response:
    user = current_user()
    return jsonify(
        {
            "user": user.username if user else None,
            "level": user.level if user else None,
            "email": user.email if user else None,
            "via": user.via if user else None,
            "mount_level": mount_level(),
            "header_user": request.headers.get("X-Portal-User", ""),
        }
    )


@app.get("/admin-only")
@requires_level("admin")
def admin_only() -> Response:
    return jsonify({"ok": True})
