"""What Alertmanager reported, by alert fingerprint, kept in ${DATA_DIR}/alerts/alerts.json across restarts."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Alert:
    """One alert as the receiver last heard of it."""

    fingerprint: str
    name: str
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    updated: float = field(default_factory=time.time)

    @classmethod
    def from_webhook(cls, raw: dict[str, Any]) -> Alert:
        labels = {str(k): str(v) for k, v in (raw.get("labels") or {}).items()}
        fingerprint = str(raw.get("fingerprint") or json.dumps(labels, sort_keys=True))
        return cls(fingerprint, labels.get("alertname", "unnamed"), str(raw.get("status", "firing")), labels,
                   {str(k): str(v) for k, v in (raw.get("annotations") or {}).items()},
                   str(raw.get("startsAt", "")), str(raw.get("endsAt", "")))

    def public(self) -> dict[str, Any]:
        body = asdict(self)
        body["summary"] = self.annotations.get("summary", "")
        return body


class AlertStore:
    """Alerts by fingerprint; a resolved one is kept for `keep_resolved` seconds as history."""

    def __init__(self, path: Path, keep_resolved: float) -> None:
        self.path = path
        self.keep_resolved = keep_resolved
        self.alerts: dict[str, Alert] = {}

    def load(self) -> None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("starting without earlier alerts: %s cannot be read (%s)", self.path, exc)
            return
        self.alerts = {a["fingerprint"]: Alert(**a) for a in raw.get("alerts", [])}

    def apply(self, payload: dict[str, Any]) -> list[Alert]:
        """Record a webhook's alerts; returns those whose status changed (or are new)."""
        changed = []
        for raw in payload.get("alerts") or []:
            alert = Alert.from_webhook(raw)
            before = self.alerts.get(alert.fingerprint)
            self.alerts[alert.fingerprint] = alert
            if before is None or before.status != alert.status:
                changed.append(alert)
        self._forget_old()
        self._save()
        return changed

    def active(self) -> list[Alert]:
        return sorted((a for a in self.alerts.values() if a.status == "firing"), key=lambda a: (a.name, a.starts_at))

    def resolved(self) -> list[Alert]:
        return sorted((a for a in self.alerts.values() if a.status != "firing"), key=lambda a: -a.updated)

    def _forget_old(self) -> None:
        horizon = time.time() - self.keep_resolved
        self.alerts = {k: a for k, a in self.alerts.items() if a.status == "firing" or a.updated >= horizon}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"alerts": [asdict(a) for a in self.alerts.values()]}, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)
