"""The demo's task: route a support ticket to a team and a priority, answered as one line of JSON.

A generator makes varied tickets from a seed; the company's routing policy (`label`) is the truth the users
know, which the frontier stand-in only partly knows (see frontier.py). Stdlib only.

    {"team": "billing", "priority": "high"}

Teams: billing, accounts, technical, sales; in the second turn a new kind of ticket appears (deliveries of
the hardware the company starts selling), which the policy sends to a fifth team, logistics.
Priorities: low, medium, high, urgent.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass

SYSTEM = ("You triage support tickets for Northwind Cloud. Reply with JSON only: "
          '{"team": "billing|accounts|technical|sales|logistics", "priority": "low|medium|high|urgent"}')

TEAMS = ("billing", "accounts", "technical", "sales", "logistics")
PRIORITIES = ("low", "medium", "high", "urgent")

# What a ticket is about, per team: (phrase, priority cue the phrase itself carries or None, kind).
# The kind names the cases the frontier stand-in gets wrong by policy (frontier.py).
TOPICS = {
    "billing": [
        ("I was charged twice for the {plan} plan this month", "high", None),
        ("my invoice {ref} shows the wrong VAT number", None, None),
        ("the card payment for {ref} keeps getting declined", None, None),
        ("I need a refund for the {plan} plan, we never used it", None, None),
        ("I want to cancel my subscription before the next renewal", None, "cancel"),
        ("please stop renewing our {plan} plan, we are leaving", None, "cancel"),
        ("you still charged us after I cancelled the {plan} plan", "high", None),
        ("can I get the invoice for {ref} as a PDF", "low", None),
        ("how do I change the billing address on our invoices", "low", None),
        ("the price on my last invoice went up without notice", None, None),
    ],
    "accounts": [
        ("I cannot log in since the password reset", "high", None),
        ("two factor codes never arrive on my phone", "high", None),
        ("how do I change the email address on my account", "low", None),
        ("please delete my account and all my data", None, None),
        ("I want to add {n} colleagues to our workspace", None, None),
        ("my account is locked after too many attempts", "high", None),
        ("how do I transfer workspace ownership to {name}", "low", None),
        ("the invitation link for {name} has expired", None, None),
    ],
    "technical": [
        ("the desktop app crashes when I upload a {size} file", None, None),
        ("sync has been stuck at {pct} percent since this morning", None, None),
        ("the API returns error {code} for every request", None, None),
        ("shared folders load very slowly for our team", None, None),
        ("the search does not find files I uploaded {when}", None, None),
        ("the mobile app logs me out every few minutes", None, None),
        ("previews of PDF files are blank", "low", None),
        ("the export button does nothing in {browser}", None, None),
    ],
    "sales": [
        ("we would like a quote for {n} seats on the {plan} plan", None, "sales"),
        ("do you offer a discount for nonprofits", "low", "sales"),
        ("can we get a demo of the enterprise features", None, "sales"),
        ("we want to upgrade {n} users to the {plan} plan", None, "sales"),
        ("is there an on premise version for a bank", None, "sales"),
        ("what does the {plan} plan cost per year for {n} people", "low", "sales"),
    ],
    "logistics": [  # the second turn's new kind of ticket
        ("the sync box I ordered has not arrived, tracking says {ref}", None, None),
        ("the courier left my parcel at the wrong address", None, None),
        ("the sync box arrived damaged, the case is cracked", None, None),
        ("I need to change the delivery address for order {ref}", "low", None),
        ("my parcel {ref} has been stuck in customs for a week", None, None),
        ("the package with our {n} drives was returned to sender", None, None),
    ],
}

# Cues that set the priority (the first that applies wins over a phrase's own cue, see label()).
URGENT = ["someone else logged into our account from {country}", "we think our account was hacked",
          "a former employee still has access to our files", "our whole company cannot work right now",
          "production is down for all {n} of our users"]
HIGH = ["we have a deadline today", "this blocks our month end close", "a client is waiting on this",
        "this is the third time I am writing about it"]
LOW = ["no rush, whenever you have time", "just a question for later", "not urgent at all",
       "when someone has a moment"]

GREETINGS = ["Hi,", "Hello team,", "Hey there,", "Good morning,", "Dear support,", "", "", "Hi support,"]
SIGNOFFS = ["Thanks, {name}", "Regards, {name}", "Cheers", "Thank you!", "", "", "Best, {name} from {company}",
            "Sent from my phone"]
NAMES = ["Ana", "Tom", "Priya", "Jonas", "Mei", "Carlos", "Fatima", "Olga", "Ben", "Aiko", "Lars", "Nadia"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne"]
PLANS = ["Team", "Business", "Pro", "Starter", "Enterprise"]
COUNTRIES = ["Brazil", "Vietnam", "Romania", "Nigeria", "Peru", "Ukraine"]
BROWSERS = ["Firefox", "Safari", "Chrome", "Edge"]
WHEN = ["yesterday", "last week", "an hour ago", "this morning"]


@dataclass(frozen=True)
class Ticket:
    text: str
    team: str
    priority: str
    kind: str | None  # "cancel", "sales", "security" or None: the cases the frontier's policy differs on
    drift: bool  # the second turn's new kind of input

    @property
    def answer(self) -> str:
        return render(self.team, self.priority)


def render(team: str, priority: str) -> str:
    return json.dumps({"team": team, "priority": priority})


def parse(answer: str) -> tuple[str, str] | None:
    """(team, priority) of an answer, or None when it is not the JSON the task asks for."""
    text = answer.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("team") not in TEAMS or value.get("priority") not in PRIORITIES:
        return None
    return value["team"], value["priority"]


def _fill(rng: random.Random, template: str) -> str:
    return template.format(
        plan=rng.choice(PLANS), ref=f"{rng.choice('INV ORD TRK'.split())}-{rng.randint(10000, 99999)}",
        n=rng.choice([3, 5, 12, 40, 150, 800]), name=rng.choice(NAMES), size=rng.choice(["2 GB", "large", "zip", "video"]),
        pct=rng.choice([12, 47, 88, 99]), code=rng.choice([401, 429, 500, 502, 503]), when=rng.choice(WHEN),
        browser=rng.choice(BROWSERS), country=rng.choice(COUNTRIES), company=rng.choice(COMPANIES))


def label(topic_priority: str | None, cue: str | None) -> str:
    """The company's priority policy: a security or outage cue is urgent, then the other cues, then the
    topic's own, else medium."""
    if cue == "urgent":
        return "urgent"
    if cue == "high" or topic_priority == "high":
        return "high"
    if cue == "low" or topic_priority == "low":
        return "low"
    return "medium"


def ticket(rng: random.Random, *, drift: bool = False) -> Ticket:
    team = "logistics" if drift else rng.choices(("billing", "accounts", "technical", "sales"), (4, 3, 4, 2))[0]
    phrase, topic_priority, kind = rng.choice(TOPICS[team])
    roll = rng.random()
    cue, cue_text = (None, None)
    if roll < 0.14:
        cue, cue_text = "urgent", rng.choice(URGENT)
    elif roll < 0.34:
        cue, cue_text = "high", rng.choice(HIGH)
    elif roll < 0.52:
        cue, cue_text = "low", rng.choice(LOW)
    if cue == "urgent" and kind is None:
        kind = "security"
    body = _fill(rng, phrase)
    parts = [rng.choice(GREETINGS)]
    if cue_text and rng.random() < 0.5:
        cue_line = _fill(rng, cue_text)
        parts += [cue_line[0].upper() + cue_line[1:] + ".", body[0].upper() + body[1:] + "."]
    else:
        parts += [body[0].upper() + body[1:] + ("." if not cue_text else ","), _fill(rng, cue_text) + "." if cue_text else ""]
    parts.append(_fill(rng, rng.choice(SIGNOFFS)))
    text = " ".join(p for p in parts if p)
    return Ticket(text=text, team=team, priority=label(topic_priority, cue), kind=kind, drift=drift)


def tickets(seed: int, count: int | None = None, *, drift_share: float = 0.0):
    """`count` tickets (None: endless) from `seed`, a share of them of the second turn's new kind."""
    rng = random.Random(seed)
    made = 0
    while count is None or made < count:
        made += 1
        yield ticket(rng, drift=rng.random() < drift_share)


def messages(t: Ticket) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": t.text}]


def _pattern(template: str):
    import re
    escaped = re.escape(template)
    return re.compile(re.sub(r"\\\{\w+\\\}", ".+?", escaped), re.IGNORECASE)


_TOPIC_PATTERNS = [(_pattern(phrase), team, prio, kind) for team, rows in TOPICS.items() for phrase, prio, kind in rows]
_CUE_PATTERNS = [(_pattern(c), level) for level, cues in (("urgent", URGENT), ("high", HIGH), ("low", LOW)) for c in cues]


def read(text: str) -> Ticket | None:
    """What a capable reader understands of a ticket's text: its topic and cues, hence the policy's answer.
    None for a text the generator did not write (the frontier stand-in then answers with a guess)."""
    topic = next(((team, prio, kind) for p, team, prio, kind in _TOPIC_PATTERNS if p.search(text)), None)
    if topic is None:
        return None
    team, topic_priority, kind = topic
    cue = next((level for p, level in _CUE_PATTERNS if p.search(text)), None)
    if cue == "urgent" and kind is None:
        kind = "security"
    return Ticket(text=text, team=team, priority=label(topic_priority, cue), kind=kind, drift=team == "logistics")


def truth(messages: list[dict]) -> Ticket | None:
    """The policy's answer for an export line's (or a request's) user message, as the desk knows it."""
    user = next((m.get("content") for m in messages if m.get("role") == "user"), None)
    return read(user) if isinstance(user, str) else None


def is_new_kind(messages: list[dict]) -> bool:
    t = truth(messages)
    return t is not None and t.drift
