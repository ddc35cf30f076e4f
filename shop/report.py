"""The daily report: `python -m shop report [--days N] [--format table|csv]`.

Per UTC day, for the last N days (today included):

* leads by stage: `leads` rows created that day, by `Lead.stage` (cold, warm, hot, and any other stage seen);
* ratings: how many `feedback` ratings were given that day and their average;
* complaints: `feedback` rows marked `is_complaint` that day;
* reminders sent: abandoned-cart reminders delivered that day (shop.reminders, by `sent_at`);
* carts recovered: carts checked out after a reminder, on the day the order was paid (`recovered_at`);
* revenue recovered: the totals of those orders.

The command first credits carts checked out since the worker's last round (`credit_recovered_carts`), so the
figures are current even while the worker is stopped. Rows are read once and grouped in Python, so SQLite
and PostgreSQL give the same days. The analytics dashboard (shop/analytics.py) reads its leads, feedback
ratings, reminders and recovered carts from `build_daily_report` too, so both count them alike.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Dict, List, Optional, Sequence

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from shop.db import session_scope
from shop.models import Feedback, Lead
from shop.policy import format_money
from shop.reminders import CartReminder, mark_recovered_carts

__all__ = ["LEAD_STAGES", "DayRow", "add_report_command", "build_daily_report", "cmd_report",
           "credit_recovered_carts", "report_csv", "report_table"]

LEAD_STAGES = ("cold", "warm", "hot")


@dataclass
class DayRow:
    day: date
    leads_by_stage: Dict[str, int] = field(default_factory=dict)
    ratings: int = 0
    rating_total: int = 0
    complaints: int = 0
    reminders_sent: int = 0
    carts_recovered: int = 0
    revenue_recovered_cents: int = 0

    @property
    def average_rating(self) -> Optional[float]:
        return self.rating_total / self.ratings if self.ratings else None


def _bounds(first: date, last: date):
    return datetime.combine(first, time.min), datetime.combine(last + timedelta(days=1), time.min)


def build_daily_report(session: Session, first: date, last: date) -> List[DayRow]:
    """One row per day from `first` to `last` (both included), oldest first; days without activity too."""
    start, end = _bounds(first, last)
    rows = {first + timedelta(days=n): DayRow(first + timedelta(days=n)) for n in range((last - first).days + 1)}
    stages: Dict[date, Counter] = defaultdict(Counter)
    for created_at, stage in session.execute(
            select(Lead.created_at, Lead.stage).where(Lead.created_at >= start, Lead.created_at < end)):
        stages[created_at.date()][stage or "unknown"] += 1
    seen = sorted({stage for counter in stages.values() for stage in counter} - set(LEAD_STAGES))
    for day, row in rows.items():
        row.leads_by_stage = {stage: stages[day][stage] for stage in LEAD_STAGES + tuple(seen)}
    for created_at, rating, complaint in session.execute(
            select(Feedback.created_at, Feedback.rating, Feedback.is_complaint)
            .where(Feedback.created_at >= start, Feedback.created_at < end)):
        row = rows[created_at.date()]
        if rating is not None:
            row.ratings += 1
            row.rating_total += rating
        row.complaints += bool(complaint)
    for (sent_at,) in session.execute(
            select(CartReminder.sent_at).where(CartReminder.sent_at >= start, CartReminder.sent_at < end)):
        rows[sent_at.date()].reminders_sent += 1
    for recovered_at, cents in session.execute(
            select(CartReminder.recovered_at, CartReminder.recovered_cents)
            .where(CartReminder.status == "recovered", CartReminder.recovered_at >= start,
                   CartReminder.recovered_at < end)):
        row = rows[recovered_at.date()]
        row.carts_recovered += 1
        row.revenue_recovered_cents += cents
    return [rows[day] for day in sorted(rows)]


def credit_recovered_carts(engine: Engine, now: Optional[datetime] = None) -> int:
    """Credit the carts checked out after a reminder since the worker's last round; how many were credited."""
    with session_scope(engine) as session:
        return mark_recovered_carts(session, now or datetime.utcnow())


def _columns(rows: Sequence[DayRow]) -> List[str]:
    stages = list(rows[0].leads_by_stage) if rows else list(LEAD_STAGES)
    return (["day"] + [f"leads {stage}" for stage in stages]
            + ["ratings", "avg rating", "complaints", "reminders sent", "carts recovered", "revenue recovered"])


def _values(row: DayRow, money) -> List[str]:
    average = "" if row.average_rating is None else f"{row.average_rating:.2f}"
    return ([row.day.isoformat()] + [str(n) for n in row.leads_by_stage.values()]
            + [str(row.ratings), average, str(row.complaints), str(row.reminders_sent), str(row.carts_recovered),
               money(row.revenue_recovered_cents)])


def report_csv(rows: Sequence[DayRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([name.replace(" ", "_") for name in _columns(rows)])
    for row in rows:  # money in plain units, so spreadsheets can add it up
        writer.writerow(_values(row, lambda cents: f"{cents / 100:.2f}"))
    return out.getvalue()


def report_table(rows: Sequence[DayRow]) -> str:
    header = _columns(rows)
    body = [_values(row, format_money) for row in rows]
    totals = DayRow(date.min, {stage: sum(r.leads_by_stage[stage] for r in rows) for stage in
                               (rows[0].leads_by_stage if rows else LEAD_STAGES)},
                    sum(r.ratings for r in rows), sum(r.rating_total for r in rows), sum(r.complaints for r in rows),
                    sum(r.reminders_sent for r in rows), sum(r.carts_recovered for r in rows),
                    sum(r.revenue_recovered_cents for r in rows))
    body.append(["total"] + _values(totals, format_money)[1:])
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def add_report_command(commands, common) -> None:
    report = commands.add_parser(
        "report", parents=[common], help="per day: leads by stage, ratings, complaints, cart reminders and recoveries",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Print, per UTC day of the last --days days (today included): leads by stage, feedback ratings\n"
            "(count and average), complaints, cart reminders sent, carts recovered (checked out after a\n"
            "reminder) and the revenue recovered."
        ),
    )
    report.add_argument("--days", type=int, default=7, metavar="N", help="how many days (default: 7)")
    report.add_argument("--format", choices=("table", "csv"), default="table", help="output (default: table)")


def cmd_report(args: argparse.Namespace) -> int:
    from shop.db import database_url, make_engine

    if args.days < 1 or args.days > 3660:
        print("report: --days must be between 1 and 3660", file=sys.stderr)
        return 2
    engine = make_engine(getattr(args, "database_url", None) or database_url())
    now = datetime.utcnow()
    credit_recovered_carts(engine, now)
    with session_scope(engine) as session:
        rows = build_daily_report(session, now.date() - timedelta(days=args.days - 1), now.date())
    print(report_csv(rows) if args.format == "csv" else report_table(rows), end="\n" if args.format == "table" else "")
    return 0
