"""The chat's HTTP side: a plain Flask page. Its script (a static file: the portal's Content
Security Policy allows no inline script) opens a WebSocket at this same mount, where the
`websocket` app of the [[mount]] answers."""

from __future__ import annotations

from flask import Flask, render_template_string, request

app = Flask(__name__, static_folder="static", static_url_path="/static")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Chat</title>
<link rel="stylesheet" href="/static/portal.css">
<link rel="stylesheet" href="{{ url_for('static', filename='chat.css') }}">
<script src="{{ url_for('static', filename='chat.js') }}" defer></script></head>
<body><main class="narrow"><section class="card">
<h1>Chat</h1>
<p>Signed in as <strong>{{ user }}</strong>.
Status: <span id="status" class="muted">connecting...</span></p>
<ul id="messages" data-socket="{{ socket }}" aria-live="polite"></ul>
<form id="send" autocomplete="off">
  <label for="text">Message</label>
  <input id="text" name="text" maxlength="2000" required>
  <button type="submit" class="button primary">Send</button>
</form>
<p><a href="/">Back to the portal</a></p>
</section></main></body></html>"""


@app.get("/")
def page() -> str:
    return render_template_string(
        PAGE,
        user=request.headers.get("X-Portal-User", ""),
        socket=f"{request.script_root}/ws",
    )
