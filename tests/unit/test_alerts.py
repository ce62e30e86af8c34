"""The shipped alert rules and dashboard: well formed, on real metrics, and meaning what they say.

``promtool test rules`` would be the natural judge, but promtool comes only as the
Prometheus Go module: a cold ``go install`` took about 9 minutes on this 2-core machine,
too much for every fresh machine's first test run (``tools/install-promtool.sh`` installs
it for running ``promtool check rules`` by hand). So this test holds its own evaluator for
the small PromQL subset the rules use (aggregations by labels, ``rate``/``increase``,
``time()``, arithmetic, comparisons, ``and on``) and runs each alert over made-up series
the way Prometheus does: evaluated every minute, firing once the expression has held for
the rule's ``for``. Each alert gets a scenario where it must fire and one where it must
not (the false alarm it is designed to avoid).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.observability.metrics import (
    API_OUTCOMES,
    CHANGE_KINDS,
    TRANSACTION_OUTCOMES,
    Metrics,
)

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "helm" / "learnosity-connector" / "files"
OPERATIONS = REPO / "docs" / "operations.md"
ALERTS = FILES / "alerts.yaml"
DASHBOARD = FILES / "dashboard.json"
STEP = 60  # seconds between evaluations and between samples
LABELS = {"namespace": "prod", "job": "learnosity-connector"}

# --- a PromQL subset ---------------------------------------------------------------------

Labels = frozenset[tuple[str, str]]
Vector = dict[Labels, float]
Value = Vector | float
#: series name -> [(labels, samples by minute; None where absent)]
Series = dict[str, list[tuple[dict[str, str], list[float | None]]]]

TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<dur>\[\d+[smh]\])|(?P<str>\"[^\"]*\")"
    r"|(?P<op>==|!=|>=|<=|=~|!~|[-+*/><(){},=])|(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*))"
)
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "sum": lambda vs: float(sum(vs)),
    "max": max,
    "min": min,
}
ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b if b else float("nan"),
}


def tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        assert match and match.end() > pos, f"cannot read {text[pos:]!r}"
        tokens.append(match.group().strip())
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


@dataclass
class Query:
    """Recursive descent over the tokens; evaluates at ``t`` against ``series``."""

    tokens: list[str]
    series: Series
    t: int
    pos: int = 0
    used: set[str] = field(default_factory=set)

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.pos]
        assert expected is None or token == expected, f"expected {expected!r}, got {token!r}"
        self.pos += 1
        return token

    def evaluate(self) -> Value:
        value = self.or_expr()
        assert self.peek() is None, f"unread: {self.tokens[self.pos :]}"
        return value

    def or_expr(self) -> Value:
        left = self.and_expr()
        while self.peek() == "or":
            self.take()
            right = self.and_expr()
            assert isinstance(left, dict) and isinstance(right, dict)
            left = {**right, **left}
        return left

    def and_expr(self) -> Value:
        left = self.comparison()
        while self.peek() == "and":
            self.take()
            on = self.label_list() if self.peek() == "on" else None
            right = self.comparison()
            assert isinstance(left, dict) and isinstance(right, dict)
            keys = {self.project(k, on) for k in right}
            left = {k: v for k, v in left.items() if self.project(k, on) in keys}
        return left

    @staticmethod
    def project(labels: Labels, on: list[str] | None) -> Labels:
        return labels if on is None else frozenset((k, v) for k, v in labels if k in on)

    def comparison(self) -> Value:
        left = self.arith()
        op = self.peek()
        if op in COMPARISONS:
            self.take()
            right = self.arith()
            return self.binary(left, right, op)
        return left

    def arith(self) -> Value:
        left = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            left = self.binary(left, self.term(), op)
        return left

    def term(self) -> Value:
        left = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()
            left = self.binary(left, self.unary(), op)
        return left

    def binary(self, left: Value, right: Value, op: str) -> Value:
        if op in COMPARISONS:  # filters: keep the left side's samples where it holds
            compare = COMPARISONS[op]
            if isinstance(left, dict):
                return {
                    k: v
                    for k, v in left.items()
                    if (r := right if isinstance(right, float) else right.get(k)) is not None
                    and compare(v, r)
                }
            assert isinstance(right, dict), "scalar comparisons need bool"
            return {k: left for k, v in right.items() if compare(left, v)}
        apply = ARITHMETIC[op]
        if isinstance(left, float) and isinstance(right, float):
            return apply(left, right)
        if isinstance(left, float):
            assert isinstance(right, dict)
            return {k: apply(left, v) for k, v in right.items()}
        if isinstance(right, float):
            return {k: apply(v, right) for k, v in left.items()}
        return {k: apply(v, right[k]) for k, v in left.items() if k in right}

    def label_list(self) -> list[str]:
        self.take()  # by / on
        self.take("(")
        names = []
        while self.peek() != ")":
            names.append(self.take())
            if self.peek() == ",":
                self.take()
        self.take(")")
        return names

    def unary(self) -> Value:
        token = self.take()
        if re.fullmatch(r"\d+(\.\d+)?", token):
            return float(token)
        if token == "(":
            value = self.or_expr()
            self.take(")")
            return value
        if token in ("sum", "max", "min"):
            by = self.label_list() if self.peek() == "by" else None
            self.take("(")
            inner = self.or_expr()
            self.take(")")
            if by is None and self.peek() == "by":
                by = self.label_list()
            assert isinstance(inner, dict) and by is not None, "aggregate by labels"
            groups: dict[Labels, list[float]] = {}
            for labels, v in inner.items():
                groups.setdefault(self.project(labels, by), []).append(v)
            reduce = REDUCERS[token]
            return {k: float(reduce(vs)) for k, vs in groups.items()}
        if token == "time":
            self.take("(")
            self.take(")")
            return float(self.t)
        if token in ("rate", "increase"):
            self.take("(")
            name, matchers = self.selector(self.take())
            window = self.duration(self.take())
            self.take(")")
            out: Vector = {}
            for labels, samples in self.matching(name, matchers):
                points = [
                    (minute * STEP, v)
                    for minute, v in enumerate(samples)
                    if v is not None and self.t - window < minute * STEP <= self.t
                ]
                if len(points) >= 2:
                    # the slope between the first and last sample in the window (counter
                    # resets ignored); like Prometheus's extrapolation for steady series
                    growth = sum(max(0.0, b - a) for (_, a), (_, b) in itertools.pairwise(points))
                    per_second = growth / (points[-1][0] - points[0][0])
                    out[labels] = per_second * window if token == "increase" else per_second
            return out
        name, matchers = self.selector(token)
        out = {}
        for labels, samples in self.matching(name, matchers):
            minute = self.t // STEP
            recent = [v for v in samples[max(0, minute - 4) : minute + 1] if v is not None]
            if minute < len(samples) and recent:  # a sample in the last 5 minutes (staleness)
                out[labels] = recent[-1]
        return out

    def selector(self, name: str) -> tuple[str, list[tuple[str, str, str]]]:
        assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name), f"not a metric name: {name}"
        self.used.add(name)
        matchers = []
        if self.peek() == "{":
            self.take()
            while self.peek() != "}":
                label, op, text = self.take(), self.take(), self.take()
                matchers.append((label, op, text.strip('"')))
                if self.peek() == ",":
                    self.take()
            self.take("}")
        return name, matchers

    @staticmethod
    def duration(token: str) -> int:
        match = re.fullmatch(r"\[(\d+)([smh])\]", token)
        assert match, f"not a range: {token}"
        return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]

    def matching(
        self, name: str, matchers: list[tuple[str, str, str]]
    ) -> list[tuple[Labels, list[float | None]]]:
        found = []
        for labels, samples in self.series.get(name, []):
            ok = True
            for label, op, text in matchers:
                actual = labels.get(label, "")
                hit = actual == text if op in ("=", "!=") else bool(re.fullmatch(text, actual))
                ok = ok and (hit if op in ("=", "=~") else not hit)
            if ok:
                found.append((frozenset(labels.items()), samples))
        return found


def evaluate(expr: str, series: Series, t: int) -> Value:
    return Query(tokenize(expr), series, t).evaluate()


def metric_names(expr: str) -> set[str]:
    query = Query(tokenize(expr), {}, 0)
    query.evaluate()
    return query.used


def expand(notation: str) -> list[float | None]:
    """promtool's series notation: ``1x3`` → 1 1 1 1; ``0+5x2`` → 0 5 10; ``_`` → absent."""
    out: list[float | None] = []
    for part in notation.split():
        if part == "_":
            out.append(None)
            continue
        match = re.fullmatch(r"(-?[\d.]+)(?:([+-][\d.]+))?x(\d+)", part)
        if match is None:
            out.append(float(part))
            continue
        start, step, times = float(match.group(1)), float(match.group(2) or 0), int(match[3])
        out.extend(start + step * i for i in range(times + 1))
    return out


# --- the rules -------------------------------------------------------------------------


def load_rules() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return {rule["alert"]: rule for group in data["groups"] for rule in group["rules"]}


RULES = load_rules()


def for_seconds(rule: dict[str, Any]) -> int:
    return Query.duration(f"[{rule.get('for', '0s')}]")


def firing(alert: str, series: dict[str, str], at_minute: int) -> list[dict[str, str]]:
    """Label sets of ``alert`` firing at ``at_minute``, as Prometheus would decide it."""
    rule = RULES[alert]
    parsed: Series = {}
    for selector, notation in series.items():
        name, _, rest = selector.partition("{")
        labels = dict(LABELS)
        for pair in filter(None, rest.rstrip("}").split(",")):
            key, _, text = pair.partition("=")
            labels[key.strip()] = text.strip().strip('"')
        parsed.setdefault(name, []).append((labels, expand(notation)))
    hold = for_seconds(rule)
    since: dict[Labels, int] = {}
    result: Vector = {}
    for minute in range(at_minute + 1):  # every evaluation up to the moment asked about
        value = evaluate(rule["expr"], parsed, minute * STEP)
        assert isinstance(value, dict), f"{alert}: the expression is not a vector"
        since = {k: since.get(k, minute * STEP) for k in value}
        result = {k: v for k, v in value.items() if minute * STEP - since[k] >= hold}
    return [dict(k) for k in result]


def test_every_required_alert_is_shipped_and_well_formed() -> None:
    required = {"NotReady", "CursorStalled", "LagHigh", "DeadLetters", "RateLimited"}
    assert {f"LearnosityConnector{name}" for name in required} <= set(RULES)
    for name, rule in RULES.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert for_seconds(rule) >= 300, f"{name}: a blip should not page anyone"
        # every label an annotation shows survives the expression's aggregation
        shown = set(re.findall(r"\$labels\.(\w+)", json.dumps(rule["annotations"])))
        kept = set(re.findall(r"by \(([^)]*)\)", rule["expr"])[0].replace(" ", "").split(","))
        assert shown <= kept, f"{name} shows labels its expression drops: {shown - kept}"


def test_rules_use_only_exposed_metrics_and_label_values() -> None:
    suffixes = {"counter": ("_total",), "info": ("_info",), "gauge": ("",)}
    exposed = {
        family.name + suffix
        for family in Metrics("v").registry.collect()
        for suffix in suffixes.get(family.type, ("_bucket", "_count", "_sum"))
    }
    values = {"outcome": set(API_OUTCOMES) | set(TRANSACTION_OUTCOMES), "change": set(CHANGE_KINDS)}
    for name, rule in RULES.items():
        used = metric_names(rule["expr"])
        assert used and used <= exposed, f"{name}: unknown metrics {used - exposed}"
        for label, op, text in re.findall(r'(\w+)(=~|=)"([^"]*)"', rule["expr"]):
            for wanted in text.split("|") if op == "=~" else [text]:
                assert wanted in values[label], f"{name}: {label} is never {wanted!r}"


@pytest.mark.parametrize(
    ("alert", "fires", "quiet", "at"),
    [
        (
            "LearnosityConnectorNotReady",
            {"learnosity_connector_ready": "1x5 0x20"},
            {"learnosity_connector_ready": "1x5 0x5 1x15"},  # a restart: ready again
            20,
        ),
        (
            "LearnosityConnectorCursorStalled",
            {"learnosity_connector_stalled_cursor_total": "0x5 1+1x40"},
            {"learnosity_connector_stalled_cursor_total": "0x5 1x40"},  # once, then moved on
            40,
        ),
        (
            "LearnosityConnectorLagHigh",
            {  # reading a backlog, an hour behind and not gaining
                "learnosity_connector_lag_seconds": "3600+60x40",
                "learnosity_connector_records_fetched_total": "0+6000x40",
            },
            {  # a quiet source: lag grows, but there is nothing to read
                "learnosity_connector_lag_seconds": "3600+60x40",
                "learnosity_connector_records_fetched_total": "5000x40",
            },
            40,
        ),
        (
            "LearnosityConnectorNotPolling",
            # the timestamp stops moving at minute 5 (300 s)
            {"learnosity_connector_last_successful_poll_timestamp_seconds": "0+60x5 300x30"},
            {"learnosity_connector_last_successful_poll_timestamp_seconds": "0+60x35"},
            35,
        ),
        (
            "LearnosityConnectorDeadLetters",
            {'learnosity_connector_dead_letters_total{reason="invalid_record"}': "0x5 1+1x20"},
            {'learnosity_connector_dead_letters_total{reason="invalid_record"}': "3x25"},
            25,
        ),
        (
            "LearnosityConnectorRateLimited",
            {  # a third of the requests refused, for half an hour
                'learnosity_connector_api_requests_total{outcome="ok"}': "0+600x40",
                'learnosity_connector_api_requests_total{outcome="rate_limited"}': "0+300x40",
            },
            {  # 2% refused: the shared quota is tight, and the retries absorb it
                'learnosity_connector_api_requests_total{outcome="ok"}': "0+600x40",
                'learnosity_connector_api_requests_total{outcome="rate_limited"}': "0+12x40",
            },
            40,
        ),
        (
            "LearnosityConnectorTransactionsFailing",
            {
                'learnosity_connector_transactions_total{outcome="aborted"}': "0+1x40",
                'learnosity_connector_transactions_total{outcome="committed"}': "0+100x40",
            },
            {
                'learnosity_connector_transactions_total{outcome="aborted"}': "0x10 2x30",
                'learnosity_connector_transactions_total{outcome="committed"}': "0+100x40",
            },
            40,
        ),
    ],
)
def test_alert_fires_when_it_should_and_not_otherwise(
    alert: str, fires: dict[str, str], quiet: dict[str, str], at: int
) -> None:
    fired = firing(alert, fires, at)
    assert fired, f"{alert} did not fire"
    for labels in fired:
        assert {k: labels[k] for k in ("namespace", "job")} == LABELS, labels
    assert firing(alert, quiet, at) == [], f"{alert} fired on a harmless pattern"
    # and not before it has held for its `for`: the same series, asked earlier
    start = next(
        minute
        for minute in range(at + 1)
        if evaluate(RULES[alert]["expr"], _parse(fires), minute * STEP)
    )
    assert firing(alert, fires, start + for_seconds(RULES[alert]) // STEP - 1) == []


def _parse(series: dict[str, str]) -> Series:
    parsed: Series = {}
    for selector, notation in series.items():
        name, _, rest = selector.partition("{")
        labels = dict(LABELS)
        for pair in filter(None, rest.rstrip("}").split(",")):
            key, _, text = pair.partition("=")
            labels[key.strip()] = text.strip().strip('"')
        parsed.setdefault(name, []).append((labels, expand(notation)))
    return parsed


def test_the_evaluator_itself() -> None:
    series = _parse(
        {
            'm_total{outcome="ok"}': "0+60x10",
            'm_total{outcome="bad"}': "0+30x10",
            "g": "5x10",
        }
    )
    job = frozenset({"job": LABELS["job"]}.items())
    assert evaluate("sum by (job) (rate(m_total[5m]))", series, 600) == pytest.approx({job: 1.5})
    ratio = evaluate(
        'sum by (job) (rate(m_total{outcome="bad"}[5m])) / sum by (job) (rate(m_total[5m]))',
        series,
        600,
    )
    assert list(ratio.values()) == [pytest.approx(1 / 3)]  # type: ignore[union-attr]
    assert evaluate("max by (job) (g) > 4", series, 300) != {}
    assert evaluate("max by (job) (g) > 5", series, 300) == {}
    assert evaluate("time() - 100", series, 300) == 200.0
    increase = evaluate('sum by (job) (increase(m_total{outcome=~"ok|bad"}[10m]))', series, 600)
    assert increase == pytest.approx({job: 900.0})  # 1.5/s over 10 minutes
    assert expand("1x2 _ 0+5x2") == [1, 1, 1, None, 0, 5, 10]


# --- the dashboard -----------------------------------------------------------------------


def test_dashboard_covers_the_operators_questions() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert 'namespace="$namespace"' in target["expr"], target["expr"]
            assert 'job=~"$job"' in target["expr"], target["expr"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']} is wider than the dashboard"
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    # throughput, lag, errors, rate limiting, transactions
    for needed in (
        "records_fetched_total",
        "changes_emitted_total",
        "repeats_dropped_total",
        "lag_seconds",
        "dead_letters_total",
        "produce_errors_total",
        'api_requests_total{namespace="$namespace", job=~"$job"}',
        "api_retries_total",
        "rate_budget_wait_seconds_total",
        "transactions_total",
        "transaction_commit_duration_seconds_bucket",
        "api_request_duration_seconds_bucket",
        # catch-up: slices by state, ETA, concurrency, stale records
        "slices{",
        "catchup_eta_seconds",
        "api_requests_in_flight",
        "fetch_workers",
        "stale_records_total",
    ):
        assert f"learnosity_connector_{needed}" in exprs, f"no panel shows {needed}"
    by_state = [
        t for p in panels for t in p["targets"] if "learnosity_connector_slices{" in t["expr"]
    ]
    assert any("by (state)" in t["expr"] and "{{state}}" in t["legendFormat"] for t in by_state)


# --- runbooks ------------------------------------------------------------------------------


def heading_anchors(markdown: str) -> dict[str, str]:
    """Each heading's anchor as GitHub (and most renderers) make it -> the heading."""
    anchors = {}
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors[slug] = heading
    return anchors


def section(markdown: str, title: str) -> str:
    """The text of one ``## title`` section, up to the next ``## ``."""
    start = markdown.index(f"\n## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end >= 0 else len(markdown)]


def test_every_alert_links_its_runbook_section() -> None:
    docs = OPERATIONS.read_text(encoding="utf-8")
    alerts_section = section(docs, "Alerts")
    anchors = heading_anchors(alerts_section)
    for name, rule in RULES.items():
        url = rule["annotations"].get("runbook_url")
        assert url == f"docs/operations.md#{name.lower()}", f"{name}: runbook_url {url!r}"
        anchor = url.partition("#")[2]
        assert anchor in anchors, f"{name}: no heading in operations.md's Alerts for #{anchor}"
        assert anchors[anchor].strip("`") == name
        # the section says what to do: more than its heading
        body = alerts_section.split(f"### {anchors[anchor]}\n", 1)[1].split("\n### ", 1)[0]
        assert len(body.split()) >= 30, f"{name}: its runbook section is too thin"


def test_heading_anchors_are_what_renderers_make() -> None:
    """The control for the test above."""
    anchors = heading_anchors("## Alerts\n### LearnosityConnectorNotReady\n## `status` and more\n")
    assert set(anchors) == {"alerts", "learnosityconnectornotready", "status-and-more"}
