"""An alert's shape, and the generic webhook that carries it (a JSON POST: Slack, PagerDuty and
the like take it through a small bridge). Shared by the alert monitor (telepay.ops.alerts) and
the services' own alerts (telepay.services.messages), so a receiver sees one format: `status`
is `firing` or `resolved` for a monitored condition, `notice` for a one-off fact (a refund
after fulfilment, a run of refused IPNs) that no "resolved" will follow.

Imports nothing of TelePay's, so the services can use it without importing the monitor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx

PREFIX = "🛎 TelePay"


@dataclass
class Alert:
    key: str            # the check's name (or the fact's key): one alert per condition
    level: str
    text: str
    status: str = "firing"  # or "resolved"; "notice" for a one-off fact
    since: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def as_json(self) -> dict:
        return {"service": "telepay", "status": self.status, "alert": self.key, "level": self.level,
                "text": self.text, "since": self.since.isoformat(),
                "at": datetime.now(timezone.utc).isoformat()}

    def as_message(self) -> str:
        if self.status == "resolved":
            return f"{PREFIX} ✅ resolved: {self.key}: {self.text}"
        if self.status == "notice":
            return f"{PREFIX}: {self.text}"
        return f"{PREFIX} ⚠️ {self.level}: {self.key}: {self.text}"


class WebhookChannel:
    """A JSON POST (Slack, PagerDuty and the like take it through a small bridge)."""

    name = "webhook"

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url
        self.timeout = timeout

    async def send(self, alert: Alert) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await client.post(self.url, json=alert.as_json())
            response.raise_for_status()
