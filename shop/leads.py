"""Leads: bulk, team and wholesale enquiries, qualified in the chat, scored, stored once, exported, sent to a CRM.

A shopper who asks about bulk orders answers a few questions (company, role, quantity or team size,
budget, timeline, need, email, consent). This module reads those answers (`parse_*`), scores them,
stores one lead per conversation (`store_lead`), writes leads as CSV (`export_leads_csv`) and pushes
them to the CRM webhook from a separate worker (`deliver_due_leads`), never from the chat.

Scoring model (BANT: budget, authority, need, timing), 100 points at most
--------------------------------------------------------------------------
Budget (30)     total budget of $10,000 or more: 30; $2,000 to $9,999: 20; $500 to $1,999: 10;
                less, or not given: 0. A per-unit amount ("$20 each") counts times the quantity.
Authority (25)  decides or buys (owner, founder, C-level, director, head of, VP, partner, procurement,
                purchasing, buyer): 25; influences the decision (manager, lead, coordinator, HR, office,
                assistant, admin, organiser): 12; anything else or not given: 0.
Need (25)       quantity or team size of 100 or more: 15; 25 to 99: 10; 10 to 24: 5; fewer or not given: 0;
                plus 10 when the need is described in at least three words.
Timing (20)     needed within 30 days (asap, this week, this month, in 3 weeks): 20; within 90 days
                (next month, in 2 months, this quarter): 12; within a year: 4; later, no date or not given: 0.
Stage           hot at SHOP_LEAD_HOT_SCORE points or more (default 70), warm at SHOP_LEAD_WARM_SCORE or more
                (default 40), cold below. Every factor adds one plain-words reason, stored with the lead.

Hot leads are offered a person now (the handoff) or a call-back. All amounts are in the shop's currency;
"$", "dollars", "euros" and the like are read as that currency, never converted.

CRM outbox
----------
Every stored or changed lead is `pending` for the CRM. `deliver_due_leads` POSTs each due lead as JSON to
SHOP_CRM_WEBHOOK_URL (timeout SHOP_CRM_TIMEOUT_SECONDS) with an `Idempotency-Key` that names the lead and
its version, so a CRM that received a post whose answer got lost can drop the repeat. A 2xx answer marks
the lead `delivered`; anything else (refused, timed out, 4xx/5xx) waits SHOP_CRM_RETRY_BASE_SECONDS,
doubling each time up to SHOP_CRM_RETRY_MAX_SECONDS, for SHOP_CRM_MAX_ATTEMPTS attempts, then the lead is
`failed` (kept, exported, and sent again by `python -m shop leads deliver --retry-failed`). Without a
webhook URL leads simply wait as `pending`. With SHOP_CRM_WEBHOOK_SECRET set, each post carries
`X-Shop-Signature: sha256=<HMAC of the body>`.
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Sequence, TextIO, Tuple

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shop.carts import CartError, normalise_email, utc_naive
from shop.models import Lead
from shop.policy import format_money

__all__ = [
    "CRM_STATUSES", "CrmSettings", "LeadAnswers", "LeadError", "LeadScore", "StoredLead", "add_lead_commands",
    "authority_level", "cmd_leads", "crm_settings", "deliver_due_leads", "export_leads_csv", "find_email", "http_post",
    "is_skip", "lead_for_conversation", "lead_payload", "parse_budget", "parse_phone", "parse_quantity",
    "record_callback", "requeue_failed", "score_lead", "stage_thresholds", "store_lead", "timeline_days",
]

STAGES = ("cold", "warm", "hot")
CRM_STATUSES = ("pending", "delivered", "failed")
SOURCE_CHAT = "chat"
MAX_QUANTITY = 1_000_000
MAX_BUDGET_CENTS = 1_000_000_000  # $10 million: fits the column and is beyond any chat enquiry
TEXT_LIMITS = {"company": 160, "role": 120, "timeline": 120, "need": 2000, "name": 160}


class LeadError(ValueError):
    """An answer or request the shop cannot take; `message` is a clear prompt for the shopper."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# ----------------------------------------------------------------------------- reading answers

_SKIP = re.compile(
    r"^\s*(skip( (it|this|that))?|pass|n/?a|none|no|nope|nah|not sure( yet)?|unsure|don'?t know( yet)?|do not know"
    r"|dunno|idk|no idea|rather not( say)?|i'?d rather not( say)?|prefer not to say|not yet|tbd|tbc"
    r"|no budget( yet)?|not decided( yet)?|undecided|doesn'?t matter|next question)\s*[.!]*\s*$",
    re.IGNORECASE,
)
_EMAIL_IN_TEXT = re.compile(r"[^\s@<>\"'(),;:]+@[^\s@<>\"'(),;:]+\.[A-Za-z]{2,}")
_WORD_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "dozen": 12, "a dozen": 12,
    "hundred": 100, "a hundred": 100, "one hundred": 100, "two hundred": 200, "five hundred": 500,
    "thousand": 1000, "a thousand": 1000, "one thousand": 1000,
}
_WORD_NUMBER = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _WORD_NUMBERS), key=len, reverse=True)) + r")\b",
                          re.IGNORECASE)
_MULTIPLIERS = {"k": 1_000, "thousand": 1_000, "grand": 1_000, "m": 1_000_000, "mil": 1_000_000,
                "million": 1_000_000}
# An amount: digits with separators, then an optional multiplier word or letter.
_AMOUNT = r"(\d+(?:[,.]\d+)*)\s*(k|m|mil|million|thousand|grand)?\b"
_RANGE = re.compile(_AMOUNT + r"\s*(?:-|–|to|and)\s*[$€£]?\s*" + _AMOUNT, re.IGNORECASE)
_SINGLE = re.compile(_AMOUNT, re.IGNORECASE)
_PER_UNIT = re.compile(r"\b(each|per (person|head|unit|item|piece|employee|member)|a head|apiece|a piece)\b",
                       re.IGNORECASE)

QUANTITY_PROMPT = ("Roughly how many units or people is it for? A number is enough, like 50, "
                   "or say \"skip\" if you don't know yet.")
BUDGET_PROMPT = ("I need a rough amount for the budget, like $5,000 or 5k (or \"$20 each\"). "
                 "Say \"skip\" if you'd rather not say.")
EMAIL_PROMPT = "That doesn't look like an email address. Please type it like name@company.com."
PHONE_PROMPT = "Please give a phone number with the country or area code, like +1 503 555 0142."


def is_skip(text: object) -> bool:
    """'skip', "don't know", 'rather not say', 'n/a': the shopper leaves a skippable question open."""
    return bool(_SKIP.match(str(text or "")))


def find_email(text: object) -> str:
    """The email address in 'it's Sam@Example.com thanks' -> 'sam@example.com'; LeadError when there is none."""
    found = _EMAIL_IN_TEXT.search(str(text or ""))
    try:
        return normalise_email(found.group(0).rstrip(".")) if found else normalise_email(text)
    except CartError:
        raise LeadError("invalid_email", EMAIL_PROMPT) from None


def _number(digits: str) -> float:
    """'5,000' -> 5000, '2.5' -> 2.5, '1.000.000' -> 1000000 (dots every three digits are separators)."""
    if re.fullmatch(r"\d{1,3}([.,]\d{3})+", digits):
        return float(re.sub(r"[.,]", "", digits))
    return float(digits.replace(",", ""))


def _amount(digits: str, multiplier: Optional[str]) -> float:
    return _number(digits) * _MULTIPLIERS.get((multiplier or "").lower(), 1)


def _first_amount(text: str) -> Optional[float]:
    """The lower end of a range ('5-10k' -> 5000) or the single amount in the text; None when there is none."""
    ranged = _RANGE.search(text)
    if ranged:
        low_digits, low_multiplier, _, high_multiplier = ranged.groups()
        # '5-10k' means 5k-10k: the lower number borrows the upper one's multiplier
        return _amount(low_digits, low_multiplier or high_multiplier)
    single = _SINGLE.search(text)
    if single:
        return _amount(*single.groups())
    worded = _WORD_NUMBER.search(text)
    if worded:
        value = float(_WORD_NUMBERS[worded.group(1).lower()])
        after = text[worded.end():].lower()
        multiplier = re.match(r"\s*(thousand|grand|million|k)\b", after)
        return value * _MULTIPLIERS[multiplier.group(1)] if multiplier and value < 1000 else value
    return None


def parse_quantity(text: object) -> int:
    """'about 50' / '50 people' / 'a team of 12' / '50-100' (the lower end) / 'a dozen' -> a whole number."""
    value = _first_amount(str(text or ""))
    if value is None or value < 1 or value > MAX_QUANTITY:
        raise LeadError("invalid_quantity", QUANTITY_PROMPT)
    return int(value)


def parse_budget(text: object, quantity: Optional[int] = None) -> int:
    """'$5k' / '5000 dollars' / '10 grand' / '$5,000-$10,000' (the lower end) -> cents.

    A per-unit amount ('$20 each', '30 per person') is multiplied by the quantity; without a quantity
    the shopper is asked for the total. Words without an amount ('lots', 'a fair bit') are refused."""
    said = str(text or "")
    value = _first_amount(said)
    if value is None or value <= 0:
        raise LeadError("invalid_budget", BUDGET_PROMPT)
    if _PER_UNIT.search(said):
        if not quantity:
            raise LeadError("budget_per_unit", "What's the total budget for the whole order, roughly? "
                                               "Like $5,000, or say \"skip\".")
        value *= quantity
    cents = round(value * 100)
    if cents > MAX_BUDGET_CENTS:
        raise LeadError("invalid_budget", f"That's more than {format_money(MAX_BUDGET_CENTS)}, which I can't "
                                          "take in the chat. Please give a rough total, or say \"skip\".")
    return cents


def parse_phone(text: object) -> str:
    """'call me on +1 (503) 555-0142' -> '+1 503 555 0142'; 7 to 15 digits, as international numbers have."""
    found = re.search(r"\+?\d[\d\s().-]{5,}\d", str(text or ""))
    digits = re.findall(r"\d+", found.group(0)) if found else []
    if not 7 <= len("".join(digits)) <= 15:
        raise LeadError("invalid_phone", PHONE_PROMPT)
    return ("+" if found.group(0).startswith("+") else "") + " ".join(digits)


_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_UNIT_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
_TIMELINE_PHRASES: Sequence[Tuple[str, Optional[int]]] = (
    (r"\b(no rush|no hurry|no deadline|just (looking|browsing)|someday|some day|eventually|not sure|don'?t know)\b",
     None),
    (r"\b(asap|urgent(ly)?|immediately|right away|straight away|right now|today|tomorrow)\b", 7),
    (r"\bthis week\b", 7),
    (r"\bnext week\b", 14),
    (r"\b(this|end of (the|this)) month\b", 30),
    (r"\bnext month\b", 60),
    (r"\bthis quarter\b", 90),
    (r"\bnext quarter\b", 180),
    (r"\b(this|end of (the|this)) year\b", 180),
    (r"\bnext year\b", 365),
)


def timeline_days(text: object, today: date) -> Optional[int]:
    """Roughly how many days from `today` until the order is needed; None when the answer gives no date."""
    said = str(text or "").lower()
    counted = re.search(r"\b(\d+|a|an|one|two|three|four|five|six|eight|ten|twelve)\s*(day|week|month|year)s?\b", said)
    if counted:
        amount = {"a": 1, "an": 1}.get(counted.group(1)) or _WORD_NUMBERS.get(counted.group(1))
        return int(amount or counted.group(1)) * _UNIT_DAYS[counted.group(2)]
    for pattern, days in _TIMELINE_PHRASES:
        if re.search(pattern, said):
            return days
    month = re.search(r"\b(" + "|".join(m[:3] for m in _MONTHS) + r")[a-z]*\b", said)
    if month:
        number = [m[:3] for m in _MONTHS].index(month.group(1)) + 1
        year = today.year if number >= today.month else today.year + 1
        return max((date(year, number, 1) - today).days, 7)
    return None


_DECIDES = re.compile(
    r"\b(owner|own the|founder|co-?founder|ceo|cfo|coo|cto|cmo|chief|president|director|head of|head|vp|"
    r"vice president|partner|principal|proprietor|procurement|purchasing|buyer|purchaser|managing|"
    r"i decide|decision maker|my (own )?(company|business|shop))\b", re.IGNORECASE)
_INFLUENCES = re.compile(
    r"\b(manager|lead|leader|coordinator|supervisor|hr|human resources|people ops|office|assistant|admin|"
    r"administrator|organi[sz]er|secretary|treasurer|captain|coach|planner|team)\b", re.IGNORECASE)


def authority_level(role: object) -> str:
    """'decides' (signs off purchases), 'influences' (recommends them) or 'unknown'."""
    said = str(role or "")
    if _DECIDES.search(said):
        return "decides"
    if _INFLUENCES.search(said):
        return "influences"
    return "unknown"


# ----------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class LeadAnswers:
    """What the shopper said, already parsed; empty text or None means skipped."""

    email: str = ""
    company: str = ""
    role: str = ""
    quantity: Optional[int] = None
    budget_cents: Optional[int] = None
    timeline: str = ""
    need: str = ""
    name: str = ""


@dataclass(frozen=True)
class LeadScore:
    score: int
    stage: str  # cold, warm, hot
    reasons: List[str] = field(default_factory=list)  # one plain-words reason per BANT factor


def stage_thresholds(environ: Optional[Mapping[str, str]] = None) -> Tuple[int, int]:
    """(hot, warm) minimum scores from SHOP_LEAD_HOT_SCORE / SHOP_LEAD_WARM_SCORE (70 / 40)."""
    env = os.environ if environ is None else environ
    try:
        hot, warm = int(env.get("SHOP_LEAD_HOT_SCORE", "70")), int(env.get("SHOP_LEAD_WARM_SCORE", "40"))
    except ValueError:
        raise LeadError("bad_thresholds",
                        "SHOP_LEAD_HOT_SCORE and SHOP_LEAD_WARM_SCORE must be whole numbers") from None
    if not 0 < warm <= hot <= 100:
        raise LeadError("bad_thresholds", "lead scores need 0 < SHOP_LEAD_WARM_SCORE <= SHOP_LEAD_HOT_SCORE <= 100")
    return hot, warm


def _budget_points(answers: LeadAnswers) -> Tuple[int, str]:
    cents = answers.budget_cents
    if cents is None:
        return 0, "no budget given yet"
    points = 30 if cents >= 1_000_000 else 20 if cents >= 200_000 else 10 if cents >= 50_000 else 0
    return points, f"a budget of {format_money(cents)}" + (" (a small one for a bulk order)" if not points else "")


def _authority_points(answers: LeadAnswers) -> Tuple[int, str]:
    level = authority_level(answers.role)
    if level == "decides":
        return 25, f"you decide on the purchase ({answers.role})"
    if level == "influences":
        return 12, f"you have a say in the purchase ({answers.role})"
    return 0, "not known who decides on the purchase" if not answers.role else \
        f"not clear you decide on the purchase ({answers.role})"


def _need_points(answers: LeadAnswers) -> Tuple[int, str]:
    quantity = answers.quantity
    points = 0 if not quantity else 15 if quantity >= 100 else 10 if quantity >= 25 else 5 if quantity >= 10 else 0
    described = len(answers.need.split()) >= 3
    size = f"{quantity:,} units or people" if quantity else "no quantity yet"
    need = "a clear need" if described else "the need not described yet"
    return points + (10 if described else 0), f"{size} and {need}"


def _timing_points(answers: LeadAnswers, today: date) -> Tuple[int, str]:
    days = timeline_days(answers.timeline, today) if answers.timeline else None
    if days is None:
        return 0, "no date yet" if not answers.timeline else f"no firm date ({answers.timeline})"
    points = 20 if days <= 30 else 12 if days <= 90 else 4 if days <= 365 else 0
    when = "within a month" if days <= 30 else "within three months" if days <= 90 else \
        "within a year" if days <= 365 else "more than a year away"
    return points, f"needed {when} ({answers.timeline})"


def score_lead(answers: LeadAnswers, today: date, thresholds: Optional[Tuple[int, int]] = None) -> LeadScore:
    """The BANT score (0-100), the stage and the reasons, as the module docstring defines them."""
    hot, warm = thresholds or stage_thresholds()
    parts = [_budget_points(answers), _authority_points(answers), _need_points(answers),
             _timing_points(answers, today)]
    score = sum(points for points, _ in parts)
    stage = "hot" if score >= hot else "warm" if score >= warm else "cold"
    return LeadScore(score, stage, [reason for _, reason in parts])


# ----------------------------------------------------------------------------- storing


@dataclass(frozen=True)
class StoredLead:
    id: int
    score: int
    stage: str
    reasons: List[str]
    email: str
    created: bool  # False: the conversation's lead already existed (a repeated or changed submission)
    changed: bool  # the stored answers changed (a new lead counts as changed)


def _clean(answers: LeadAnswers) -> LeadAnswers:
    def text(name: str) -> str:
        return " ".join(str(getattr(answers, name) or "").split())[:TEXT_LIMITS[name]]

    quantity, budget = answers.quantity, answers.budget_cents
    if quantity is not None and not 1 <= quantity <= MAX_QUANTITY:
        raise LeadError("invalid_quantity", QUANTITY_PROMPT)
    if budget is not None and not 0 < budget <= MAX_BUDGET_CENTS:
        raise LeadError("invalid_budget", BUDGET_PROMPT)
    return LeadAnswers(email=find_email(answers.email), company=text("company"), role=text("role"),
                       quantity=quantity, budget_cents=budget, timeline=text("timeline"), need=text("need"),
                       name=text("name"))


def lead_for_conversation(session: Session, conversation_id: str) -> Optional[Lead]:
    return session.execute(select(Lead).where(Lead.conversation_id == conversation_id)).scalars().first()


def _queue_for_crm(lead: Lead, now: datetime) -> None:
    """A new or changed lead goes (again) to the CRM, as a new version, starting now."""
    lead.crm_version = (lead.crm_version or 0) + 1
    lead.crm_status, lead.crm_attempts, lead.crm_next_attempt_at, lead.crm_last_error = "pending", 0, now, ""
    lead.updated_at = now


def store_lead(session: Session, conversation_id: str, answers: LeadAnswers, consent: bool, consent_text: str,
               now: Optional[datetime] = None, source: str = SOURCE_CHAT,
               thresholds: Optional[Tuple[int, int]] = None) -> StoredLead:
    """Score and keep the lead of this conversation: one row per conversation, whatever happens.

    Sending the same answers again returns the stored lead unchanged; different answers update it (and
    queue the new version for the CRM). Without consent nothing is stored (LeadError 'no_consent')."""
    if not consent:
        raise LeadError("no_consent", "I can only pass your enquiry on with your OK to be contacted.")
    if not conversation_id:
        raise LeadError("no_conversation", "A lead needs the conversation it came from.")
    moment = utc_naive(now)
    clean = _clean(answers)
    scored = score_lead(clean, moment.date(), thresholds)
    values = dict(email=clean.email, company=clean.company, role=clean.role, quantity=clean.quantity,
                  budget_cents=clean.budget_cents, timeline=clean.timeline, need=clean.need, name=clean.name,
                  score=scored.score, stage=scored.stage, reasons=list(scored.reasons), consent=True,
                  consent_text=consent_text[:500], source=source[:40])
    lead = lead_for_conversation(session, conversation_id)
    created = lead is None
    if created:
        lead = Lead(conversation_id=conversation_id, created_at=moment, consented_at=moment, **values)
        try:
            with session.begin_nested():  # a second submission racing this one hits the unique index
                session.add(lead)
                _queue_for_crm(lead, moment)
                session.flush()
        except IntegrityError:
            lead, created = lead_for_conversation(session, conversation_id), False
    changed = created or any(getattr(lead, name) != value for name, value in values.items())
    if changed and not created:
        for name, value in values.items():
            setattr(lead, name, value)
        lead.consented_at = moment
        _queue_for_crm(lead, moment)
        session.flush()
    return StoredLead(lead.id, lead.score, lead.stage, list(lead.reasons or []), lead.email, created, changed)


def record_callback(session: Session, conversation_id: str, phone: str, now: Optional[datetime] = None) -> Lead:
    """The shopper of this conversation's lead asks to be called back on `phone` (the CRM gets the update)."""
    lead = lead_for_conversation(session, conversation_id)
    if lead is None:
        raise LeadError("no_lead", "I can arrange a call-back once I know a little about your order. "
                                   "Tell me about it first: ask about bulk or team orders.")
    number = parse_phone(phone)
    moment = utc_naive(now)
    if lead.callback_phone != number or lead.callback_requested_at is None:
        lead.callback_phone, lead.callback_requested_at = number, moment
        _queue_for_crm(lead, moment)
        session.flush()
    return lead


# ----------------------------------------------------------------------------- CSV export

CSV_COLUMNS = (
    "id", "created_at", "updated_at", "stage", "score", "reasons", "company", "role", "quantity", "budget", "timeline",
    "need", "email", "consent", "consent_text", "consented_at", "callback_phone", "callback_requested_at", "source",
    "conversation_id", "crm_status", "crm_attempts", "crm_last_error",
)


def _cell(value: object) -> str:
    """Text as a spreadsheet shows it; shoppers' words starting with = + - @ must never run as a formula."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_leads_csv(session: Session, out: TextIO, stage: Optional[str] = None) -> int:
    """Every lead (or those of one stage), oldest first, as CSV with a header; returns the number of rows."""
    if stage is not None and stage not in STAGES:
        raise LeadError("bad_stage", f"stage must be one of {', '.join(STAGES)}")
    query = select(Lead).order_by(Lead.created_at, Lead.id)
    if stage:
        query = query.where(Lead.stage == stage)
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for lead in session.execute(query).scalars():
        budget = f"{lead.budget_cents / 100:.2f}" if lead.budget_cents is not None else ""
        row = {name: getattr(lead, name, None) for name in CSV_COLUMNS}
        row.update(reasons="; ".join(lead.reasons or []), budget=budget, consent="yes" if lead.consent else "no")
        writer.writerow([_cell(row[name]) for name in CSV_COLUMNS])
        count += 1
    return count


# ----------------------------------------------------------------------------- CRM delivery


@dataclass(frozen=True)
class CrmSettings:
    webhook_url: str  # empty: no CRM, leads wait as pending
    timeout_seconds: float
    retry_base_seconds: float
    retry_max_seconds: float
    max_attempts: int
    secret: str

    def delay_after(self, attempts: int) -> timedelta:
        """Wait after the n-th failed attempt: base, 2 x base, 4 x base, ... capped at the maximum."""
        return timedelta(seconds=min(self.retry_base_seconds * 2 ** (attempts - 1), self.retry_max_seconds))


def crm_settings(environ: Optional[Mapping[str, str]] = None) -> CrmSettings:
    env = os.environ if environ is None else environ
    numbers = {}
    for name, default in (("SHOP_CRM_TIMEOUT_SECONDS", "5"), ("SHOP_CRM_RETRY_BASE_SECONDS", "30"),
                          ("SHOP_CRM_RETRY_MAX_SECONDS", "3600"), ("SHOP_CRM_MAX_ATTEMPTS", "8")):
        raw = env.get(name, default)
        try:
            numbers[name] = float(raw)
        except ValueError:
            raise LeadError("bad_setting", f"{name} must be a number, got {raw!r}") from None
        if numbers[name] <= 0:
            raise LeadError("bad_setting", f"{name} must be more than 0, got {raw!r}")
    return CrmSettings(
        webhook_url=env.get("SHOP_CRM_WEBHOOK_URL", "").strip(),
        timeout_seconds=numbers["SHOP_CRM_TIMEOUT_SECONDS"],
        retry_base_seconds=numbers["SHOP_CRM_RETRY_BASE_SECONDS"],
        retry_max_seconds=numbers["SHOP_CRM_RETRY_MAX_SECONDS"],
        max_attempts=int(numbers["SHOP_CRM_MAX_ATTEMPTS"]),
        secret=env.get("SHOP_CRM_WEBHOOK_SECRET", ""),
    )


def _iso(moment: Optional[datetime]) -> Optional[str]:
    return moment.isoformat(timespec="seconds") + "Z" if moment else None


def lead_payload(lead: Lead) -> dict:
    """The JSON body the CRM receives: the lead, its score with reasons, consent and the source conversation."""
    return {
        "id": lead.id, "version": lead.crm_version, "source": lead.source, "conversation_id": lead.conversation_id,
        "created_at": _iso(lead.created_at), "updated_at": _iso(lead.updated_at),
        "email": lead.email, "name": lead.name, "company": lead.company, "role": lead.role,
        "quantity": lead.quantity, "budget_cents": lead.budget_cents, "timeline": lead.timeline, "need": lead.need,
        "score": lead.score, "stage": lead.stage, "reasons": list(lead.reasons or []),
        "consent": {"given": bool(lead.consent), "text": lead.consent_text, "at": _iso(lead.consented_at)},
        "callback": ({"phone": lead.callback_phone, "requested_at": _iso(lead.callback_requested_at)}
                     if lead.callback_requested_at else None),
    }


# post(url, body, headers, timeout) -> the HTTP status; raises OSError when the CRM can't be reached in time.
Post = Callable[[str, bytes, Mapping[str, str], float], int]


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


def _attempt(post: Post, settings: CrmSettings, lead: Lead) -> Optional[str]:
    """None when the CRM took the lead, else what went wrong (kept as crm_last_error)."""
    body = json.dumps(lead_payload(lead), sort_keys=True).encode("utf-8")
    headers = {"Content-Type": "application/json", "Idempotency-Key": f"lead-{lead.id}-v{lead.crm_version}"}
    if settings.secret:
        digest = hmac.new(settings.secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        headers["X-Shop-Signature"] = f"sha256={digest}"
    try:
        status = post(settings.webhook_url, body, headers, settings.timeout_seconds)
    except (OSError, http.client.HTTPException, ValueError) as error:  # refused, timed out, DNS, garbage, bad URL
        reason = getattr(error, "reason", error)
        return f"{type(error).__name__}: {reason}"[:500]
    return None if 200 <= status < 300 else f"HTTP {status}"


def deliver_due_leads(session: Session, now: datetime, post: Optional[Post] = None, limit: int = 100) -> int:
    """POST every lead due for the CRM (pending, its next attempt at or before `now`); returns how many the CRM took.

    Run by the worker, never by the chat. It commits `session` as it goes, so pass one with no other pending
    work. Each lead is first claimed (its next attempt moved past the timeout, committed) so that another
    worker skips it and no lock is held while the CRM answers; each outcome is committed at once, so a crash
    or a slow CRM loses nothing already done. A lead the chat changed meanwhile keeps its new version pending.
    Does nothing without SHOP_CRM_WEBHOOK_URL.
    """
    settings = crm_settings()
    if not settings.webhook_url:
        return 0
    post = post or http_post
    moment = utc_naive(now)
    due_ids = session.execute(
        select(Lead.id).where(Lead.crm_status == "pending",
                              or_(Lead.crm_next_attempt_at.is_(None), Lead.crm_next_attempt_at <= moment))
        .order_by(Lead.crm_next_attempt_at, Lead.id).limit(limit)
    ).scalars().all()
    session.commit()
    delivered = 0
    for lead_id in due_ids:
        lease_until = moment + timedelta(seconds=settings.timeout_seconds + 60)
        claimed = session.execute(
            update(Lead).where(Lead.id == lead_id, Lead.crm_status == "pending",
                               or_(Lead.crm_next_attempt_at.is_(None), Lead.crm_next_attempt_at <= moment))
            .values(crm_next_attempt_at=lease_until).execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        if not claimed:
            continue
        lead = session.get(Lead, lead_id, populate_existing=True)
        version, attempts = lead.crm_version, lead.crm_attempts + 1
        problem = _attempt(post, settings, lead)
        if problem is None:
            outcome = dict(crm_status="delivered", crm_attempts=attempts, crm_last_error="", crm_next_attempt_at=None,
                           crm_delivered_at=moment)
        elif attempts >= settings.max_attempts:
            outcome = dict(crm_status="failed", crm_attempts=attempts, crm_last_error=problem, crm_next_attempt_at=None)
        else:
            outcome = dict(crm_attempts=attempts, crm_last_error=problem,
                           crm_next_attempt_at=moment + settings.delay_after(attempts))
        session.execute(update(Lead).where(Lead.id == lead_id, Lead.crm_version == version).values(**outcome)
                        .execution_options(synchronize_session=False))
        session.commit()
        delivered += problem is None
    return delivered


def requeue_failed(session: Session, now: Optional[datetime] = None) -> int:
    """Failed leads get a fresh round of attempts (after the CRM is fixed); returns how many."""
    return session.execute(
        update(Lead).where(Lead.crm_status == "failed")
        .values(crm_status="pending", crm_attempts=0, crm_next_attempt_at=utc_naive(now))
        .execution_options(synchronize_session=False)
    ).rowcount


# ----------------------------------------------------------------------------- `python -m shop leads ...`


def add_lead_commands(commands, common) -> None:
    """The `leads` subcommand of shop/cli.py: `leads export` and `leads deliver`."""
    import argparse

    leads = commands.add_parser(
        "leads", parents=[common], help="export leads as CSV or send the due ones to the CRM now",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=("Leads from the chat's bulk-order questions (scoring model: shop/leads.py).\n"
                     "  leads export --out leads.csv [--stage hot]   every lead with score, reasons, consent, source\n"
                     "  leads deliver [--retry-failed]              one delivery run to SHOP_CRM_WEBHOOK_URL"),
    )
    actions = leads.add_subparsers(dest="leads_command", metavar="ACTION")
    actions.required = True
    export = actions.add_parser("export", parents=[common], help="write leads as CSV (to stdout without --out)")
    export.add_argument("--out", metavar="FILE", help="the CSV file to write (default: standard output)")
    export.add_argument("--stage", choices=STAGES, help="only leads of this stage")
    deliver = actions.add_parser("deliver", parents=[common], help="POST the leads due now to the CRM webhook")
    deliver.add_argument("--retry-failed", action="store_true",
                         help="first give leads that used up their attempts a fresh round")


def cmd_leads(args) -> int:
    from shop.db import database_url, make_engine, session_scope

    engine = make_engine(getattr(args, "database_url", None) or database_url())
    if args.leads_command == "export":
        with session_scope(engine) as session:
            if not args.out:
                count = export_leads_csv(session, sys.stdout, args.stage)
            else:
                out = Path(args.out)
                out.parent.mkdir(parents=True, exist_ok=True)
                with out.open("w", encoding="utf-8", newline="") as handle:
                    count = export_leads_csv(session, handle, args.stage)
        print(f"Exported {count} leads" + (f" to {args.out}" if args.out else ""), file=sys.stderr)
        return 0
    try:
        settings = crm_settings()
    except LeadError as error:
        print(f"leads deliver: {error.message}", file=sys.stderr)
        return 1
    with session_scope(engine) as session:
        if not settings.webhook_url:
            waiting = session.scalar(select(func.count()).select_from(Lead).where(Lead.crm_status == "pending"))
            print(f"leads deliver: SHOP_CRM_WEBHOOK_URL is not set; {waiting} leads wait as pending.", file=sys.stderr)
            return 1
        requeued = requeue_failed(session) if args.retry_failed else 0
        session.commit()
        delivered = deliver_due_leads(session, datetime.utcnow())
        counts = dict(session.execute(select(Lead.crm_status, func.count()).group_by(Lead.crm_status)).all())
    print((f"Gave {requeued} failed leads a fresh round. " if args.retry_failed else "")
          + f"Delivered {delivered} leads to the CRM. Now: " + ", ".join(
              f"{counts.get(status, 0)} {status}" for status in CRM_STATUSES) + ".")
    return 0
