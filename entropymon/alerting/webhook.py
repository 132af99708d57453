"""POSTing alerts to a webhook without ever holding up training.

Why a thread of its own: an HTTP endpoint can be slow, down or unreachable, and the trainer must
not notice. ``send`` only puts the payload on a bounded queue (a full queue drops it and counts it);
a daemon thread POSTs each payload as JSON with a timeout, retrying a few times with a short
backoff, and counts what it could not deliver (``failed``), warning once. The payload is
Slack-compatible (a ``text`` field: Slack, Mattermost and Discord-with-/slack incoming webhooks show
it) and carries the whole alert under ``alert`` for anything else.

Usage::

    sender = WebhookSender("https://hooks.slack.com/services/...")
    sender.send({"text": "entropymon critical ...", "alert": alert.to_dict()})
    sender.close(timeout=2)
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request

from entropymon.errors import InputError
from entropymon.log.shutdown import keep_signals_on_the_main_thread

logger = logging.getLogger("entropymon")
_STOP = object()


class WebhookSender:
    """Delivers JSON payloads to ``url`` from a background thread: never blocks, never raises."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, retries: int = 2, backoff_s: float = 1.0,
                 queue_size: int = 100):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InputError(f"alert_webhook: expected an http:// or https:// URL, got {url!r}")
        if not timeout_s > 0 or retries < 0 or backoff_s < 0:
            raise InputError(f"timeout_s, retries, backoff_s: expected > 0, >= 0, >= 0, got {timeout_s}, {retries}, "
                             f"{backoff_s}")
        self.url = url
        self.timeout_s, self.retries, self.backoff_s = float(timeout_s), int(retries), float(backoff_s)
        self.sent = 0  # payloads the endpoint accepted (2xx)
        self.failed = 0  # payloads given up on after every retry, or dropped on a full queue
        self._warned = False
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="entropymon-webhook", daemon=True)
        self._thread.start()

    def send(self, payload: dict) -> None:
        """Queue ``payload`` for delivery; returns at once."""
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self._give_up(f"the webhook queue is full ({self._queue.maxsize} payloads): the endpoint is too slow")

    def close(self, timeout: float | None = 2.0) -> bool:
        """Stop after the queued payloads (waiting at most ``timeout`` s); True when the thread ended."""
        self._closing.set()
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        keep_signals_on_the_main_thread()
        while True:
            payload = self._queue.get()
            if payload is _STOP:
                return
            self._deliver(payload)

    def _deliver(self, payload: dict) -> None:
        body = json.dumps(payload, allow_nan=False, default=str).encode("utf-8")
        error = None
        for attempt in range(self.retries + 1):
            if attempt and self._closing.wait(self.backoff_s * attempt):
                break  # closing: do not keep retrying a dead endpoint
            try:
                request = urllib.request.Request(self.url, data=body, method="POST",
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if 200 <= response.status < 300:
                        self.sent += 1
                        return
                    error = f"HTTP {response.status}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        self._give_up(f"could not POST an alert to {self.url} after {self.retries + 1} tries ({error})")

    def _give_up(self, message: str) -> None:
        self.failed += 1
        if not self._warned:
            self._warned = True
            logger.warning("entropymon: %s; training continues (counted, warned once)", message)
