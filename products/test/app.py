"""The original system's hello page: a plain Flask app that says who you are and at which level
it was mounted. It imports nothing from portal-asgi: the trusted X-Portal-* headers are enough."""

from __future__ import annotations

from flask import Flask, Response, jsonify, render_template_string, request

app = Flask(__name__)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Test product</title>
<link rel="stylesheet" href="/static/portal.css"></head>
<body><main class="narrow"><section class="card">
<h1>Hello, {{ user or "visitor" }}</h1>
<p>This is the <strong>test</strong> product, mounted at <code>{{ root }}</code>
at level <span class="level level-{{ mount_level }}">{{ mount_level }}</span>.</p>
<ul>
  <li>Your level: <span class="level level-{{ level }}">{{ level or "none" }}</span></li>
  <li>Your e-mail: {{ email or "(none)" }}</li>
</ul>
<p><a href="/">Back to the portal</a></p>
</section></main></body></html>"""


def mount_level() -> str:
    """The level of the mount this request came through, from the ASGI scope the portal fills."""
    scope = request.environ.get("asgi.scope") or {}
    return str((scope.get("portal") or {}).get("level", ""))


def who() -> dict[str, str]:
    return {
        "user": request.headers.get("X-Portal-User", ""),
        "email": request.headers.get("X-Portal-Email", ""),
        "level": request.headers.get("X-Portal-Level", ""),
        "root": request.script_root or "/",
        "mount_level": mount_level(),
    }


@app.get("/")
def hello() -> str:
    return render_template_string(PAGE, **who())


@app.get("/whoami")
def whoami() -> Response:
    """JSON for scripts and tests: what the product was told."""
    return jsonify(who() | {"path": request.path})


@app.post("/echo")
def echo() -> Response:
    return jsonify({"received": request.get_data(as_text=True), **who()})
