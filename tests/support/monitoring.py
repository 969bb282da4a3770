"""The PromQL of the dashboards and alert rules, and the vector selectors inside it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "docker" / "monitoring"
RULES = sorted((MONITORING / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = MONITORING / "prometheus" / "tests" / "alerts_test.yml"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))

# Exposed only in Docker: cAdvisor measures containers, and there are none natively.
COMPOSE_ONLY = ("container_cpu_usage_seconds_total",)

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan"}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
AGGREGATIONS = {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
                "count_values"}
# strings, numbers and durations (5m, 0.05, 1h30m), names, then any other single character
TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|\d[\w.]*|[A-Za-z_:][A-Za-z0-9_:]*|\S')
MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:\\.|[^"\\])*")\s*,?')


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[tuple[str, str, str], ...]

    def family(self) -> str:
        """The metric family: a histogram's `_bucket`, `_sum` and `_count` belong to one name."""
        for suffix in HISTOGRAM_SUFFIXES:
            if self.metric.endswith(suffix):
                return self.metric.removesuffix(suffix)
        return self.metric

    def with_label(self, label: str) -> str:
        """A query for this metric's series that carry `label`, whatever its value."""
        return f'{self.metric}{{{label}!=""}}'


def _matchers(body: str) -> tuple[tuple[str, str, str], ...]:
    found, rest = [], body.strip()
    while rest:
        match = MATCHER.match(rest)
        if match is None:
            raise ValueError(f"cannot read label matchers {body!r}")
        found.append((match.group(1), match.group(2), json.loads(match.group(3))))
        rest = rest[match.end():].strip()
    return tuple(found)


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in a PromQL expression (functions, keywords, label lists and ranges skipped)."""
    tokens = TOKEN.findall(expr)
    found: list[Selector] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token == "[":
            i = tokens.index("]", i) + 1  # a range or subquery: durations, not metrics
            continue
        if token in LABEL_LISTS and following == "(":
            i = tokens.index(")", i) + 1
            continue
        if token in AGGREGATIONS and following in LABEL_LISTS:  # sum by (job) (...)
            i += 1
            continue
        if re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", token) and token.lower() not in KEYWORDS and following != "(":
            matchers: tuple[tuple[str, str, str], ...] = ()
            if following == "{":
                end = tokens.index("}", i)
                matchers = _matchers(" ".join(tokens[i + 2:end]).replace(" = ~", "=~").replace(" ! ~", "!~")
                                     .replace(" ! =", "!=").replace(" ~ ", "~").replace(" , ", ", "))
                i = end
            found.append(Selector(token, matchers))
        i += 1
    return found


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every Prometheus query in the dashboards; Loki's LogQL is left out."""
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                source = target.get("datasource") or panel.get("datasource") or {}
                if source.get("type") == "prometheus":
                    found.append((f"{path.name}: {panel['title']} ({target['refId']})", target["expr"]))
    return found


def status_page_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every chart on the app's Status page (services/web/charts.py)."""
    from services.web.charts import CHARTS

    return [(f"Status page: {chart.title}", chart.expr) for chart in CHARTS]


def rules() -> list[dict]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def rule_expressions() -> list[tuple[str, str]]:
    return [(rule.get("alert") or rule["record"], rule["expr"]) for rule in rules()]


def compose_only(expr: str) -> bool:
    """True when the expression reads a metric that only exists in Docker."""
    return any(s.metric in COMPOSE_ONLY for s in selectors(expr))
