"""The analytics dashboard for the store team, behind the agent console's login.

GET /console/analytics?from=YYYY-MM-DD&to=YYYY-MM-DD   the page (default: the last 30 days)
GET /console/analytics/{table}.csv?from=..&to=..        one table of the report as CSV
GET /console/analytics/unanswered.yml?from=..&to=..     the unanswered messages as a Rasa NLU stub

The pages only read. `copy_events_in_background` (started by web/server.py's main) copies new events
from Rasa's tracker store and credits recovered carts (shop.analytics.refresh) every
ANALYTICS_INGEST_SECONDS, off the request path, so a chat shows on the page within that interval.
Charts are inline SVG drawn here: no script, nothing from a CDN.
The pages live under /console because the agent session cookie is scoped to that path.
"""
from __future__ import annotations

import asyncio
import logging
import math
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Optional, Sequence, Tuple

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from shop.analytics import (
    AnalyticsError,
    AnalyticsReport,
    DateRange,
    build_report,
    ingest_interval_seconds,
    refresh,
    table_csv,
    unanswered_nlu_stub,
)
from shop.catalog import format_price
from shop.settings import shop_settings
from web.console import CONSOLE_KEY, SESSION_COOKIE, agent_of_cookie
from web.settings import SettingsError

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
DEFAULT_DAYS = 30
MAX_DAYS = 366
UNANSWERED_SHOWN = 20

ANALYTICS_ENGINE_KEY = web.AppKey("analytics_engine", Engine)
ANALYTICS_JINJA_KEY = web.AppKey("analytics_jinja", Environment)


@dataclass
class CopyStatus:
    """How the background copy of conversation events is doing, for the page's note."""

    interval: int  # seconds between two copies; 0: this server copies nothing
    copied_at: Optional[datetime] = None  # the end of the latest copy that worked
    failed_at: Optional[datetime] = None  # the latest copy that could not read the tracker store
    note: str = ""  # what the latest copy said (e.g. no tracker store yet)

    def page_note(self) -> str:
        if not self.interval:
            return ("This server does not copy conversation events (ANALYTICS_INGEST_SECONDS=0): the figures "
                    "show what `python -m shop analytics` or the event broker's consumer stored.")
        if self.failed_at is not None and (self.copied_at is None or self.failed_at > self.copied_at):
            return (f"Rasa's tracker store could not be read at {self.failed_at:%H:%M:%S} UTC; the figures may miss "
                    f"the latest chats. Trying again every {self.interval} s.")
        if self.copied_at is None:
            return f"The first copy of conversation events is under way; new chats show within {self.interval} s."
        return (f"Chats up to {self.copied_at:%H:%M:%S} UTC; new ones show within {self.interval} s."
                + (f" ({self.note})" if self.note else ""))


COPY_STATUS_KEY = web.AppKey("analytics_copy_status", CopyStatus)


# ----------------------------------------------------------------------------- access


def _agent(request: web.Request) -> Optional[str]:
    """The logged-in agent, by the agent console's own session cookie (web/console.py)."""
    return agent_of_cookie(request.app[CONSOLE_KEY], request.cookies.get(SESSION_COOKIE))


def _require_agent(request: web.Request) -> str:
    agent = _agent(request)
    if agent is None:
        raise web.HTTPFound("/console/login")
    return agent


# ----------------------------------------------------------------------------- the range


def _period(request: web.Request) -> DateRange:
    """The range asked for; AnalyticsError with a message fit for the page when it is unusable."""
    raw_first, raw_last = request.query.get("from", "").strip(), request.query.get("to", "").strip()
    try:
        first = date.fromisoformat(raw_first) if raw_first else None
        last = date.fromisoformat(raw_last) if raw_last else None
    except ValueError:
        raise AnalyticsError("Dates look like 2024-05-31.") from None
    period = DateRange.of(first, last, DEFAULT_DAYS)
    if (period.last - period.first).days >= MAX_DAYS:
        raise AnalyticsError(f"Choose at most {MAX_DAYS} days.")
    return period


async def _report(request: web.Request, period: DateRange) -> AnalyticsReport:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, partial(build_report, request.app[ANALYTICS_ENGINE_KEY], period))


# ----------------------------------------------------------------------------- the background copy


async def _copy_forever(engine: Engine, status: CopyStatus) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            synced = await loop.run_in_executor(None, refresh, engine)
            status.copied_at, status.note = datetime.utcnow(), synced.note
        except (SQLAlchemyError, AnalyticsError) as error:
            log.error("cannot copy conversation events from Rasa's tracker store: %s", error)
            status.failed_at = datetime.utcnow()
        except Exception:  # noqa: BLE001 - one bad round must not end the copying for the server's life
            log.exception("the copy of conversation events failed")
            status.failed_at = datetime.utcnow()
        await asyncio.sleep(status.interval)


async def copy_events_in_background(app: web.Application) -> AsyncIterator[None]:
    """For app.cleanup_ctx: copies new conversation events every ANALYTICS_INGEST_SECONDS while serving."""
    status = app[COPY_STATUS_KEY]
    task = asyncio.create_task(_copy_forever(app[ANALYTICS_ENGINE_KEY], status)) if status.interval else None
    yield
    if task is not None:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


# ----------------------------------------------------------------------------- charts


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str  # the tooltip


@dataclass(frozen=True)
class Axis:
    x: float
    text: str


@dataclass(frozen=True)
class ColumnChart:
    """Columns per day (stacked when several series), with a y scale and sparse day labels."""

    key: str
    title: str
    width: int
    height: int
    bars: List[Bar]
    labels: List[Axis]
    top_label: str
    legend: List[Tuple[str, str]]
    empty: bool


CHART_WIDTH, CHART_HEIGHT, PLOT_TOP, PLOT_BOTTOM, PLOT_LEFT = 640, 220, 20, 190, 44
GREEN, AMBER, RED, BLUE, GREY = "#2f9e6b", "#e0a526", "#d0573f", "#2d6cdf", "#9aa3b2"


def _nice_top(value: float) -> float:
    if value <= 0:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def column_chart(key: str, title: str, days: Sequence[date], series: Sequence[Tuple[str, str, Sequence[float]]],
                 value_text=str, smallest_top: float = 1) -> ColumnChart:
    """`series`: (name, colour, one value per day), stacked bottom-up in that order."""
    totals = [sum(values[i] for _, _, values in series) for i in range(len(days))]
    top = _nice_top(max(max(totals, default=0), smallest_top))
    plot_height = PLOT_BOTTOM - PLOT_TOP
    slot = (CHART_WIDTH - PLOT_LEFT - 8) / max(len(days), 1)
    width = max(slot * 0.7, 1.5)
    bars = []
    for i, day in enumerate(days):
        base = PLOT_BOTTOM
        x = PLOT_LEFT + i * slot + (slot - width) / 2
        for name, colour, values in series:
            height = values[i] / top * plot_height
            if height > 0:
                base -= height
                bars.append(Bar(round(x, 1), round(base, 1), round(width, 1), round(height, 1), colour,
                                f"{day:%a %d %b}: {value_text(values[i])} {name}"))
    step = max(1, math.ceil(len(days) / 8))
    labels = [Axis(round(PLOT_LEFT + i * slot + slot / 2, 1), f"{day:%d %b}") for i, day in enumerate(days)
              if i % step == 0]
    return ColumnChart(key, title, CHART_WIDTH, CHART_HEIGHT, bars, labels, value_text(top),
                       [(name, colour) for name, colour, _ in series], not any(totals))


@dataclass(frozen=True)
class Row:
    label: str
    value: str
    width: float  # percent of the widest bar
    note: str = ""


def bar_rows(items: Sequence[Tuple[str, float]], value_text=str, notes: Sequence[str] = ()) -> List[Row]:
    widest = max((value for _, value in items), default=0) or 1
    notes = list(notes) + [""] * (len(items) - len(notes))
    return [Row(label, value_text(value), round(value / widest * 100, 1), note)
            for (label, value), note in zip(items, notes)]


def _percent(rate: Optional[float]) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


def _view(report: AnalyticsReport) -> Dict[str, Any]:
    symbol = shop_settings().currency_symbol
    days = [d.day for d in report.daily]
    money = partial(format_price, currency_symbol=symbol)
    conversations = column_chart("conversations", "Conversations per day", days, [
        ("resolved by the bot", GREEN, [d.automated for d in report.daily]),
        ("kept by the bot after a fallback loop", AMBER, [d.contained - d.automated for d in report.daily]),
        ("handed to a person", RED, [d.handoffs for d in report.daily]),
    ])
    revenue = column_chart("revenue", "Revenue from chat orders per day", days,
                           [("from paid chat orders", BLUE, [d.revenue_cents for d in report.daily])],
                           value_text=lambda cents: money(int(cents)), smallest_top=100)
    recovered = column_chart("recovered", "Carts recovered after a reminder per day", days,
                             [("carts recovered", GREEN, [d.carts_recovered for d in report.daily])])
    funnel_notes = [("" if conversion is None else f"{_percent(conversion)} of the step before")
                    for _, _, conversion in report.funnel]
    tiles = [
        ("Conversations", str(report.conversations), f"{report.active_shoppers} shoppers"),
        ("Resolved by the bot", _percent(report.automated_resolution_rate), "no person, no fallback loop"),
        ("Containment", _percent(report.containment_rate), "never asked for a person"),
        ("Handoff rate", _percent(report.handoff_rate),
         f"{report.agent_joined} taken by an agent, {report.back_to_bot} back to the bot"),
        ("Fallback rate", _percent(report.fallback_rate), f"{report.fallback_messages} of {report.messages} messages"),
        ("CSAT", "-" if report.csat is None else f"{report.csat:.1f} / 5", f"{report.ratings} ratings"),
        ("Revenue from chat", money(report.revenue_cents), f"{report.chat_orders_paid} paid orders"),
        ("Carts recovered", str(report.carts_recovered),
         f"{money(report.revenue_recovered_cents)}; {report.reminders_sent} "
         f"reminder{'' if report.reminders_sent == 1 else 's'} sent"),
    ]
    return {
        "tiles": tiles,
        "column_charts": [conversations, revenue, recovered],
        "funnel": bar_rows([(step, n) for step, n, _ in report.funnel], notes=funnel_notes),
        "reasons": bar_rows([(reason.replace("_", " "), n) for reason, n in report.handoff_reasons]),
        "intents": bar_rows(report.top_intents),
        "unanswered": report.unanswered[:UNANSWERED_SHOWN],
        "unanswered_total": len(report.unanswered),
        "leads": bar_rows(report.leads_by_stage) if any(n for _, n in report.leads_by_stage) else [],
        "daily": report.daily,
        "money": money,
        "tables": list(report.tables()),
    }


# ----------------------------------------------------------------------------- handlers


def _query(period: DateRange) -> str:
    return f"from={period.first.isoformat()}&to={period.last.isoformat()}"


def _page(request: web.Request, status: int = 200, **context: Any) -> web.Response:
    body = request.app[ANALYTICS_JINJA_KEY].get_template("analytics.html").render(
        shop_name=shop_settings().name, **context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


async def analytics_page(request: web.Request) -> web.Response:
    agent = _require_agent(request)
    try:
        period = _period(request)
    except AnalyticsError as error:
        default = DateRange.of(days=DEFAULT_DAYS)
        return _page(request, status=400, agent=agent, error=str(error), period=default,
                     asked={"from": request.query.get("from", "")[:40], "to": request.query.get("to", "")[:40]},
                     query=_query(default), view=None, note="")
    report = await _report(request, period)
    return _page(request, agent=agent, error=None, period=period, query=_query(period), view=_view(report),
                 note=request.app[COPY_STATUS_KEY].page_note(),
                 asked={"from": period.first.isoformat(), "to": period.last.isoformat()})


def _download(body: str, filename: str, content_type: str) -> web.Response:
    return web.Response(text=body, content_type=content_type, charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                 "Cache-Control": "no-store"})


async def table_download(request: web.Request) -> web.Response:
    _require_agent(request)
    try:
        period = _period(request)
    except AnalyticsError as error:
        return web.Response(status=400, text=str(error))
    report = await _report(request, period)
    name = request.match_info["table"]
    if name not in report.tables():
        raise web.HTTPNotFound(text=f"There is no table called {name!r}.")
    return _download(table_csv(report, name), f"{name}_{period.first}_{period.last}.csv", "text/csv")


async def unanswered_download(request: web.Request) -> web.Response:
    _require_agent(request)
    try:
        period = _period(request)
    except AnalyticsError as error:
        return web.Response(status=400, text=str(error))
    report = await _report(request, period)
    return _download(unanswered_nlu_stub(report), f"unanswered_{period.first}_{period.last}.yml",
                     "application/yaml")


def add_analytics_routes(app: web.Application, engine: Engine) -> None:
    """Needs the agent console's routes (add_console_routes) for its login. Reads ANALYTICS_INGEST_SECONDS
    (a bad value raises SettingsError); the copying itself starts with copy_events_in_background."""
    try:
        interval = ingest_interval_seconds()
    except AnalyticsError as error:
        raise SettingsError(str(error)) from None
    app[ANALYTICS_ENGINE_KEY] = engine
    app[COPY_STATUS_KEY] = CopyStatus(interval)
    app[ANALYTICS_JINJA_KEY] = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)),
                                           autoescape=select_autoescape(default=True, default_for_string=True),
                                           trim_blocks=True, lstrip_blocks=True)
    app.router.add_get("/console/analytics", analytics_page, name="analytics")
    app.router.add_get("/console/analytics/unanswered.yml", unanswered_download, name="analytics_unanswered")
    app.router.add_get("/console/analytics/{table:[a-z_]+}.csv", table_download, name="analytics_table")
