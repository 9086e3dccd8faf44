"""The admin area's audit log: who did what, when, from where, and whether it was refused,
newest first, filtered and paged in the database. `/admin/audit.csv` (the admin API's) exports
the same filters as CSV.

GET /admin/audit?user=&event=&client=&since=&outcome=&offset=
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..db.accounts import AuditRecord, is_refusal
from ..exceptions import DatabaseUnavailable
from ..pages.forms import sentence, with_query
from . import service
from .errors import AdminError
from .section import GET, PAGE_SIZE, EndpointSpec, Section

FILTERS = ("user", "event", "client", "since", "outcome")


def row(record: AuditRecord) -> dict[str, Any]:
    return {
        "at": record.at,
        "event": record.event,
        "username": record.username,
        "client": record.client,
        "detail": record.detail,
        "refused": is_refusal(record.event),
    }


class AuditPage(Section):
    heading = "Audit log"
    path = "/admin/audit"

    def endpoints(self) -> list[EndpointSpec]:
        return [("/admin/audit", self.show, GET)]

    async def show(self, request: Request) -> Response:
        params = request.query_params
        filters = {name: params.get(name, "").strip()[:200] for name in FILTERS}
        value = params.get("offset", "0")
        offset = int(value) if value.isdigit() and len(value) < 10 else 0
        status, error = 200, ""
        try:
            try:
                page = await service.list_audit(self.ctx, **filters, offset=offset, limit=PAGE_SIZE)
            except AdminError as exc:  # e.g. a `since` that is not a time: say so, show all
                status, error = exc.status, sentence(exc)
                if exc.field == "since":
                    error += " Write a date such as 2026-01-31, or a time such as 2026-01-31T12:00."
                page = await service.list_audit(self.ctx, offset=0, limit=PAGE_SIZE)
        except DatabaseUnavailable:
            return self.unavailable(request)
        active = {name: value for name, value in filters.items() if value}
        here = page.offset
        previous_url = (
            with_query("/admin/audit", **active, offset=max(0, here - PAGE_SIZE)) if here else ""
        )
        next_url = (
            with_query("/admin/audit", **active, offset=here + PAGE_SIZE)
            if here + PAGE_SIZE < page.total
            else ""
        )
        return self.admin_page(
            request,
            "admin/audit.html",
            status=status,
            events=[row(record) for record in page.events],
            filters=filters,
            filtered=bool(active),
            filter_query=with_query("", **active),
            total=page.total,
            offset=here,
            count=len(page.events),
            previous_url=previous_url,
            next_url=next_url,
            error=error,
        )
