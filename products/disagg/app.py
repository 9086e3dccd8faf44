"""One product, two versions at two levels: v1 (stable) and v2 (early access)."""

from __future__ import annotations

from flask import Flask, Response, jsonify


def create_app(version: str) -> Flask:
    app = Flask(f"disagg_{version}")

    @app.get("/")
    def index() -> Response:
        return jsonify({"product": "disagg", "version": version})

    return app


v1 = create_app("v1")
v2 = create_app("v2")
