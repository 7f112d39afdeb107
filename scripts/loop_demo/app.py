"""The app simulator: a support desk that triages its tickets through Flywheel with the official openai client
(only the base URL points at Flywheel), one episode per ticket, and sends its agents' reactions as feedback:

  * a right answer is accepted (`accepted`) by most agents; the rest say nothing;
  * a wrong one is mostly corrected: the agent moves the ticket, and the app sends the right JSON as the
    correction (`edited`); sometimes the agent asks for another answer instead, which the app sends as a new
    request with `x-flywheel-regenerates` (the first answer is then `rejected`), at most twice;
  * a few wrong answers go unnoticed (no feedback), as in real life.

The simulator knows each ticket's truth (task.Ticket); Flywheel only sees what a real app would send.
"""
from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import openai

try:  # openai >= 3 ships its HTTP client as httpx2; older stacks use httpx
    import httpx2 as httpx  # type: ignore
except ImportError:
    import httpx  # type: ignore

import task

FEEDBACK = {"accept_right": 0.9, "correct_wrong": 0.75, "regenerate_wrong": 0.15}  # the rest of wrong: unnoticed


@dataclass
class Served:
    ticket: task.Ticket
    request_id: str
    variant: str  # who answered: x-flywheel-variant (the model name when no policy split applies)
    right: bool
    feedback: str  # accepted, edited, regenerated or none
    seconds: float
    attempt: int


@dataclass
class Tally:
    served: list[Served] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, s: Served) -> None:
        with self.lock:
            self.served.append(s)

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)

    def window(self, start: int = 0) -> list[Served]:
        with self.lock:
            return list(self.served[start:])


class App:
    def __init__(self, base_url: str, *, model: str = "gpt-4.1", seed: int = 3, api_key: str = "demo-app", tags: str = "desk"):
        self.base_url = base_url.rstrip("/")
        self.tags = tags  # x-flywheel-tags: the desk's traffic apart from evaluations
        self.model = model
        self.client = openai.OpenAI(base_url=self.base_url + "/v1", api_key=api_key, max_retries=3, timeout=60)
        self.http = httpx.Client(base_url=self.base_url, timeout=60, headers={"authorization": f"Bearer {api_key}"})
        self.seed = seed
        self.tickets_taken = 0  # numbers the desk's tickets in the order they are taken, across runs
        self.tally = Tally()

    def close(self) -> None:
        self.http.close()
        self.client.close()

    def _roll(self, episode: str, attempt: int) -> float:
        """The agent's reaction as a number in [0, 1): a hash of the seed, the ticket and the attempt, so that a
        run's feedback does not depend on which thread answered first."""
        digest = hashlib.sha256(f"{self.seed}\0{episode}\0{attempt}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def feedback(self, request_id: str, signal: str, **extra) -> None:
        for attempt in range(5):
            r = self.http.post("/v1/feedback", json={"request_id": request_id, "signal": signal, "source": "desk", **extra},
                               headers={"idempotency-key": f"{request_id}-{signal}"})
            if r.status_code == 200:
                return
            if r.status_code != 503:
                raise RuntimeError(f"feedback {signal} for {request_id}: {r.status_code} {r.text}")
            time.sleep(float(r.headers.get("retry-after", "0.2")))
        raise RuntimeError(f"feedback {signal} for {request_id}: still 503")

    def handle(self, t: task.Ticket, number: int) -> None:
        """One ticket (the desk's `number`-th): asked, judged by the agent, fed back; a regenerated answer is
        asked again in the same episode."""
        episode = f"ticket-{self.seed}-{number}"
        regenerates = None
        for attempt in range(3):
            headers = {"x-flywheel-episode": episode, "x-flywheel-tags": self.tags}
            if regenerates:
                headers["x-flywheel-regenerates"] = regenerates
            started = time.monotonic()
            raw = self.client.chat.completions.with_raw_response.create(
                model=self.model, messages=task.messages(t), temperature=0, max_tokens=40, extra_headers=headers)
            completion = raw.parse()
            seconds = time.monotonic() - started
            request_id = raw.headers["x-request-id"]
            variant = raw.headers.get("x-flywheel-variant") or completion.model
            answer = completion.choices[0].message.content or ""
            right = task.parse(answer) == (t.team, t.priority)
            roll = self._roll(episode, attempt)
            if right:
                kind = "accepted" if roll < FEEDBACK["accept_right"] else "none"
            elif roll < FEEDBACK["correct_wrong"]:
                kind = "edited"
            elif roll < FEEDBACK["correct_wrong"] + FEEDBACK["regenerate_wrong"] and attempt < 2:
                kind = "regenerated"
            else:
                kind = "none"
            if kind == "accepted":
                self.feedback(request_id, "accepted")
            elif kind == "edited":
                self.feedback(request_id, "edited", correction=t.answer)
            self.tally.add(Served(t, request_id, variant, right, kind, seconds, attempt))
            if kind != "regenerated":
                return
            regenerates = request_id  # the next request marks this answer rejected

    def run(self, tickets, *, concurrency: int = 8, until=None) -> None:
        """Sends the tickets (an iterable, possibly endless) `concurrency` at a time, until they run out or
        `until()` says stop. A failure is counted, never swallowed silently."""
        source = iter(tickets)
        source_lock = threading.Lock()
        stop = threading.Event()

        def worker() -> None:
            while not stop.is_set():
                if until is not None and until():
                    stop.set()
                    return
                with source_lock:
                    t = next(source, None)
                    number = self.tickets_taken
                    self.tickets_taken += 1
                if t is None:
                    return
                try:
                    self.handle(t, number)
                except Exception as e:  # noqa: BLE001: reported by the caller
                    self.tally.fail(f"{type(e).__name__}: {e}")
                    if len(self.tally.failures) > 20:
                        stop.set()

        with ThreadPoolExecutor(concurrency) as pool:
            for f in [pool.submit(worker) for _ in range(concurrency)]:
                f.result()
