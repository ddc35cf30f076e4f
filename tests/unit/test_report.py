"""The daily report over real rows (leads, feedback, a reminded cart checked out with its code) on SQLite and
PostgreSQL, and `python -m shop report` in both formats."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest

from shop.cli import main
from shop.db import session_scope
from shop.models import Feedback, Lead
from shop.reminders import mark_recovered_carts, run_due_reminders
from shop.report import build_daily_report, report_table
from tests.unit.recovery_helpers import DELAY, T0, RecordingSender, check_out_and_pay, fill_cart, url_of
from tests.unit.service_helpers import catalog

DAY = T0.date()


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    monkeypatch.setenv("SHOP_CART_REMINDER_DELAY_SECONDS", str(DELAY))
    monkeypatch.setenv("SHOP_CART_REMINDER_MAX", "1")


def add_facts(engine, when: datetime):
    """Three leads, three ratings (one a complaint without a rating), and one recovered cart, at `when`."""
    with session_scope(engine) as session:
        variants = catalog(session)
        tee, cream = variants["tee"].id, variants["cream"].id
        session.add_all([Lead(stage="hot", created_at=when), Lead(stage="cold", created_at=when),
                         Lead(stage="hot", created_at=when - timedelta(days=1))])
        session.add_all([Feedback(rating=5, created_at=when), Feedback(rating=2, is_complaint=True, created_at=when),
                         Feedback(rating=None, is_complaint=True, comment="late", created_at=when),
                         Feedback(rating=4, created_at=when - timedelta(days=1))])
    fill_cart(engine, "chat-1", (tee, 1), now=when)
    fill_cart(engine, "chat-2", (cream, 1), now=when)  # reminded, never bought
    sender = RecordingSender()
    with session_scope(engine) as session:
        assert run_due_reminders(session, when + timedelta(seconds=DELAY), sender) == 2
    code = next(entities["discount_code"] for conversation, _, entities in sender.calls if conversation == "chat-1")
    order = check_out_and_pay(engine, "chat-1", when + timedelta(seconds=DELAY + 30), code=code)
    return order.total_cents


def test_the_report_counts_each_figure_on_its_day(engine):
    total = add_facts(engine, T0)
    with session_scope(engine) as session:
        assert mark_recovered_carts(session, T0 + timedelta(hours=1)) == 1
        rows = build_daily_report(session, DAY - timedelta(days=2), DAY)

    assert [r.day for r in rows] == [DAY - timedelta(days=2), DAY - timedelta(days=1), DAY]
    before, yesterday, today = rows
    assert (before.leads_by_stage, before.ratings, before.reminders_sent) == ({"cold": 0, "warm": 0, "hot": 0}, 0, 0)
    assert yesterday.leads_by_stage == {"cold": 0, "warm": 0, "hot": 1}
    assert (yesterday.ratings, yesterday.average_rating, yesterday.complaints) == (1, 4.0, 0)
    assert today.leads_by_stage == {"cold": 1, "warm": 0, "hot": 1}
    assert (today.ratings, today.average_rating, today.complaints) == (2, 3.5, 2)
    assert (today.reminders_sent, today.carts_recovered, today.revenue_recovered_cents) == (2, 1, total)

    table = report_table(rows).splitlines()
    assert table[0].split() == ["day", "leads", "cold", "leads", "warm", "leads", "hot", "ratings", "avg", "rating",
                                "complaints", "reminders", "sent", "carts", "recovered", "revenue", "recovered"]
    assert table[-1].split()[:4] == ["total", "1", "0", "2"]


def test_the_command_prints_the_last_days_as_a_table_or_csv(engine, capsys):
    # A few minutes ago, but today (the report's last day) even just after midnight.
    start_of_today = datetime.combine(datetime.utcnow().date(), time.min)
    now = max(datetime.utcnow().replace(microsecond=0) - timedelta(minutes=5), start_of_today + timedelta(seconds=1))
    total = add_facts(engine, now)
    database_url = url_of(engine)

    assert main(["--database-url", database_url, "report", "--days", "2", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("day,leads_cold,leads_warm,leads_hot,ratings,avg_rating,complaints,reminders_sent,"
                        "carts_recovered,revenue_recovered")
    today = now.date().isoformat()
    assert lines[-1] == f"{today},1,0,1,2,3.50,2,2,1,{total / 100:.2f}"
    assert len(lines) == 3

    assert main(["--database-url", database_url, "report"]) == 0
    out = capsys.readouterr().out
    assert today in out and (date.fromisoformat(today) - timedelta(days=6)).isoformat() in out

    assert main(["--database-url", database_url, "report", "--days", "0"]) == 2
    assert "--days must be between 1 and 3660" in capsys.readouterr().err
