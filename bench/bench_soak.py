"""Soak: live workload with API faults and a ``kill -9`` every few minutes; RSS and truth.

What runs, all on this machine and all sharing its cores:
- a Kafka broker of our own (as in ``bench_pipeline``);
- the emulator in its own process, like the real service under load and misbehaving:
  ``--sessions`` sessions at start, learners at work (``--changes-per-second`` changes,
  saves included, and ``--new-sessions-per-second`` new sessions), 50-150 ms per answer
  (``--latency-ms`` plus up to ``--jitter-ms``), the key's quota on (1000 requests per
  5 s), and API faults: 500/502/503 answers, bursts of 429s, truncated bodies, connection
  resets and malformed records (``--malformed-kinds``, every kind by default); it writes
  every change and every malformed record it served to its truth file, and every request
  to its request log;
- the connector (``python -m connector run``, exactly once, starting from ``earliest``),
  ``kill -9``ed every ``--kill-every`` minutes and restarted at once, for ``--minutes``.
  The kill goes to the runner alone, as the OOM killer would send it; its fetch process
  must follow by itself (``PR_SET_PDEATHSIG``): each kill checks that it is gone.

Every ``--sample-seconds`` the connector's RSS is read from /proc (``VmRSS`` of the runner
plus that of its fetch process; multiprocessing's idle resource tracker is left out).
A *run* is the life of one connector process, from its start to its kill (the last run:
to its SIGTERM after the final check). Per run the table shows the RSS once it was ready
(state restored, first poll answered: ``/readyz`` 200), after warm-up and at its end.
**Warm-up** is the first ``--warmup-seconds`` (120) after the process started: the
restore, the re-read from the committed cursor, the first run's backfill of the initial
sessions, the allocator's and the interpreter's caches filling. The **steady** samples
are the ones from the end of warm-up to the end of the run. Target: in every run the
steady samples stay within 10 % of each other ((max - min) / min <= 10 %), and so do the
steady samples of every run after the first together (a restarted connector does not come
back bigger; the first run is left out of that one because it alone backfills the
``--sessions`` initial sessions from ``earliest``, so it holds what a backfill leaves
behind: its figures are in the table). A run with fewer than three steady samples is not
judged.

At the end the workload stops: the emulator is stopped (SIGTERM: it writes its sessions
to a file and closes its truth file) and started again on the same port from that file,
with no background changes and without the malformed-record fault (the other faults,
the latency and the quota stay), so the sessions' final state is fixed and nothing more
is lost to a fault. The connector rides out the gap (a few seconds of refused
connections) and catches up: its metrics show it when ``cursor_position_seconds`` has
reached the newest session's updated time and no backfill slice is pending or running.
Then a read_committed consumer reads the output and dead-letter topics and checks:
- truth: for every session, the last event equals the emulator's final state (its truth
  file's last line per session). Compared: status, score, max_score and subscores as
  ``tests/support/pipeline.py``'s ``content`` does, plus the other documented subscore
  fields (``num_attempted``, ``attempted_max_score``, ...), which the connector's
  fingerprint covers too: a session reopened and submitted again within one poll comes
  back to the same scores with another ``num_attempted``, and the connector rightly
  publishes that (``content`` alone would call the two events identical). A session
  whose final version was served malformed (a malformed fault logged after its last
  change) is explained, not a failure;
- no phantom event: every event is a version the emulator had (same session,
  ``dt_updated`` and content);
- no duplicate ``(event_id, dt_updated)``, no two identical consecutive events of a
  session, no session going backwards in ``dt_updated``;
- dead letters against the faults the emulator logged: every dead letter is a record
  the emulator served malformed (matched to its session by ``dt_updated`` and
  ``activity_id``; a session gets no more dead letters than malformed servings), and a
  malformed serving that left no dead letter was served shortly (``--kill-window``)
  before a kill, in work the kill threw away.

    .venv/bin/python bench/bench_soak.py                       # 30 min, a kill every 4 min
    .venv/bin/python bench/bench_soak.py --minutes 6 --kill-every 2 --warmup-seconds 45

Prints numbers and PASS/FAIL lines; not a test: nothing here fails the build.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/bench_soak.py` puts only bench/ there
    sys.path.insert(0, str(ROOT))

from bench.bench_catchup import BUDGET, QUOTA, QUOTA_WINDOW_MS, labelled, millis  # noqa: E402
from bench.bench_pipeline import (  # noqa: E402
    METRIC,
    children,
    connector_env,
    emulator_process,
    kafka_broker,
    machine_lines,
    rss,
    scrape,
    wait_metrics,
)
from connector.changes.fingerprint import SUBSCORE_FIELDS  # noqa: E402
from connector.emulator.faults import MALFORMED_KINDS  # noqa: E402
from connector.emulator.requestlog import read_request_log  # noqa: E402
from connector.emulator.truth import read_truth  # noqa: E402
from connector.kafka.reader import read_topic  # noqa: E402
from connector.kafka.serde import EventDecoder  # noqa: E402
from tests.support.connector_proc import ConnectorProcess, free_port  # noqa: E402
from tests.support.pipeline import Landed, content, duplicate_deliveries  # noqa: E402

MiB = 2**20
FLAT = 0.10  # the target: steady RSS within 10 %
POSITION = f"{METRIC}cursor_position_seconds"


def matters(record: dict[str, Any]) -> tuple[Any, ...]:
    """``content`` (status, score, max_score, subscore scores) plus every other documented
    subscore field (those the connector's fingerprint covers: what makes a change): a
    session can come back to the same scores with another ``num_attempted`` (reopened and
    submitted again within a poll), and that is a change."""

    def norm(name: str, value: Any) -> Any:
        if name == "items":
            return tuple(value or ())
        return float(value) if isinstance(value, int | float) else value

    subscores = tuple(
        tuple(norm(name, s.get(name)) for name in SUBSCORE_FIELDS)
        for s in (record.get("subscores") or [])
    )
    return (*content(record), subscores)


def verdict(met: bool) -> str:
    return "PASS" if met else "FAIL"


# --- the connector's runs and their RSS ----------------------------------------------------
@dataclass
class Sample:
    at: float  # seconds since the run's process started
    runner: int  # bytes
    fetch: int  # bytes

    @property
    def total(self) -> int:
        return self.runner + self.fetch


@dataclass
class Run:
    index: int
    proc: ConnectorProcess
    pid: int
    started: float  # monotonic
    started_wall: float
    ready_after: float | None = None
    ended_after: float | None = None
    end: str = "running"  # "kill -9", "exited N (on its own)", "SIGTERM -> N"
    samples: list[Sample] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)  # the last scrape
    orphans: str = ""  # what became of the fetch process after the kill

    def steady(self, warmup: float) -> list[Sample]:
        return [s for s in self.samples if s.at >= warmup]

    def at_ready(self) -> Sample | None:
        if self.ready_after is None:
            return None
        return next((s for s in self.samples if s.at >= self.ready_after), None)


def split_children(pid: int) -> tuple[int, int]:
    """(RSS of the fetch process, RSS of other children) of ``pid``, bytes."""
    fetch = other = 0
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" in cmdline:
            other += rss(child)
        else:
            fetch += rss(child)
    return fetch, other


class Sampler:
    """Reads the current run's RSS every ``interval`` seconds, in a thread of its own."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.current: Run | None = None
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def follow(self, run: Run | None) -> None:
        with self.lock:
            self.current = run
            if run is not None:
                self._sample(run)

    def _main(self) -> None:
        while not self._stop.wait(self.interval):
            with self.lock:
                if self.current is not None:
                    self._sample(self.current)

    @staticmethod
    def _sample(run: Run) -> None:
        if not run.proc.alive():
            return
        runner = rss(run.pid)
        fetch, _other = split_children(run.pid)
        if runner:
            run.samples.append(Sample(time.monotonic() - run.started, runner, fetch))


class Connector:
    """Starts, kills and restarts the connector process; keeps each run's record."""

    def __init__(self, env: dict[str, str], work: Path, sampler: Sampler) -> None:
        self.env = env
        self.work = work
        self.sampler = sampler
        self.runs: list[Run] = []
        self.kills: list[float] = []  # Unix times of the kills

    @property
    def run(self) -> Run:
        return self.runs[-1]

    def start(self) -> Run:
        proc = ConnectorProcess(self.env, self.work / f"connector-{len(self.runs) + 1}.log")
        started, wall = time.monotonic(), time.time()
        proc.start()
        assert proc.process is not None
        run = Run(len(self.runs) + 1, proc, proc.process.pid, started, wall)
        self.runs.append(run)
        self.sampler.follow(run)
        return run

    def await_ready(self, run: Run, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and run.proc.alive():
            if run.proc.get("/readyz")[0] == 200:
                run.ready_after = time.monotonic() - run.started
                return
            time.sleep(0.2)

    def kill(self, run: Run) -> None:
        """``kill -9`` the runner; the fetch process must go by itself."""
        run.metrics = scrape(run.proc) or run.metrics
        before = children(run.pid)
        self.sampler.follow(None)
        self.kills.append(time.time())
        run.proc.kill()  # SIGKILL to the runner, and reap it
        run.ended_after = time.monotonic() - run.started
        run.end = "kill -9"
        deadline = time.monotonic() + 10
        left = [c for c in before if Path(f"/proc/{c}").exists()]
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [c for c in left if Path(f"/proc/{c}").exists()]
        if left:
            run.orphans = f"{len(left)} child(ren) still alive 10 s after the kill: {left}"
        else:
            run.orphans = f"{len(before)} child(ren) gone"

    def exited(self, run: Run) -> None:
        run.ended_after = time.monotonic() - run.started
        run.end = f"exited {run.proc.returncode} on its own"
        self.sampler.follow(None)

    def stop(self, run: Run) -> None:
        run.metrics = scrape(run.proc) or run.metrics
        self.sampler.follow(None)
        try:
            rc = run.proc.terminate(60)
        except subprocess.TimeoutExpired:
            run.proc.kill()
            rc = -9
        run.ended_after = time.monotonic() - run.started
        run.end = f"SIGTERM -> exit {rc}"


def soak(connector: Connector, minutes: float, kill_every: float, began: float) -> None:
    """Run the connector until ``minutes`` after ``began``, killing it every ``kill_every``
    minutes of its life and restarting it at once; restart it too if it exits."""
    end = began + minutes * 60
    while True:
        run = connector.start()
        connector.await_ready(run)
        kill_at = run.started + kill_every * 60
        while time.monotonic() < min(kill_at, end) and run.proc.alive():
            time.sleep(0.5)
        if not run.proc.alive():
            connector.exited(run)
            print(f"  run {run.index}: {run.end}; restarting at once", flush=True)
            print("\n".join(f"    {line}" for line in run.proc.log_tail(5).splitlines()))
            continue  # the next run carries on (through the checks, if the time is up)
        if time.monotonic() >= end:
            return  # the last run goes on through the catch-up and the checks
        connector.kill(run)
        print(
            f"  {(time.monotonic() - began) / 60:5.1f} min: run {run.index} killed (-9) after "
            f"{run.ended_after:.0f} s; {run.orphans}; RSS at its end "
            f"{run.samples[-1].total / MiB if run.samples else 0:.0f} MiB",
            flush=True,
        )


def rss_table(runs: list[Run], warmup: float, began: float) -> tuple[list[str], list[bool]]:
    def mib(sample: Sample | None) -> str:
        return f"{sample.total / MiB:.1f}" if sample is not None else "-"

    lines = [
        f"{'run':>3} {'from min':>8} {'len s':>6} {'ready s':>7} {'at ready':>8} "
        f"{'warm-up':>8} {'end':>7} {'runner':>7} {'fetch':>6} {'steady min':>10} "
        f"{'max':>6} {'spread':>7} {'MiB/min':>8}  verdict; how it ended",
    ]
    judged: list[bool] = []
    for run in runs:
        steady = run.steady(warmup)
        end = run.samples[-1] if run.samples else None
        start_min = (run.started - began) / 60
        if len(steady) >= 3:
            low, high = min(s.total for s in steady), max(s.total for s in steady)
            spread = (high - low) / low
            slope = statistics.linear_regression(
                [s.at / 60 for s in steady], [s.total / MiB for s in steady]
            ).slope
            ok = spread <= FLAT
            judged.append(ok)
            figures = (
                f"{low / MiB:>10.1f} {high / MiB:>6.1f} {100 * spread:>6.1f}% {slope:>+8.2f}  "
                f"{verdict(ok)}"
            )
        else:
            figures = f"{'-':>10} {'-':>6} {'-':>7} {'-':>8}  not judged ({len(steady)} steady)"
        lines.append(
            f"{run.index:>3} {start_min:>8.1f} {run.ended_after or 0:>6.0f} "
            f"{run.ready_after if run.ready_after is not None else float('nan'):>7.1f} "
            f"{mib(run.at_ready()):>8} {mib(next(iter(steady), None)):>8} {mib(end):>7} "
            f"{(end.runner / MiB if end else 0):>7.1f} {(end.fetch / MiB if end else 0):>6.1f} "
            f"{figures}; {run.end}"
        )
    return lines, judged


# --- the truth and what landed --------------------------------------------------------------
@dataclass
class Truth:
    final: dict[str, dict[str, Any]]  # session -> its last change line
    last_seq: dict[str, int]  # session -> seq of its last change
    versions: dict[tuple[str, int], list[tuple[Any, ...]]]  # (session, dt_updated ms) -> content
    by_served: dict[tuple[str, str], set[str]]  # (dt_updated ISO, activity_id) -> sessions
    faults: dict[str, list[tuple[int, float, str]]]  # session -> (seq, ~Unix time, how)
    changes: int
    history: dict[str, list[dict[str, Any]]]  # session -> its truth lines, changes and faults

    @property
    def malformed(self) -> int:
        return sum(len(v) for v in self.faults.values())


def load_truth(path: Path) -> Truth:
    final: dict[str, dict[str, Any]] = {}
    last_seq: dict[str, int] = {}
    versions: dict[tuple[str, int], list[tuple[Any, ...]]] = defaultdict(list)
    by_served: dict[tuple[str, str], set[str]] = defaultdict(set)
    faults: dict[str, list[tuple[int, float, str]]] = defaultdict(list)
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    newest_us = changes = 0
    for line in read_truth(path):
        if "session_id" in line:
            history[line["session_id"]].append(line)
        if line["kind"] == "change":
            sid = line["session_id"]
            final[sid], last_seq[sid] = line, line["seq"]
            versions[(sid, line["updated_us"] // 1000)].append(matters(line))
            by_served[(line["dt_updated"], line["activity_id"])].add(sid)
            newest_us = max(newest_us, line["updated_us"])
            changes += 1
        elif line.get("fault") == "malformed":
            # a fault line has no time: the newest change before it is within ~1/rate
            faults[line["session_id"]].append((line["seq"], newest_us / 1e6, line["how"]))
    return Truth(final, last_seq, versions, by_served, faults, changes, history)


def read_events(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    decoder = EventDecoder()
    return [
        decoder.decode(m.value or b"")
        for m in read_topic({"bootstrap.servers": bootstrap}, topic, idle_timeout=5.0)
    ]


_SERVED = re.compile(rb'"(dt_updated|activity_id)"\s*:\s*"([^"]*)"')


def served_as(value: bytes) -> tuple[str, str] | None:
    """(dt_updated, activity_id) of a dead letter's original JSON, read off its bytes
    (a malformed record need not parse: bad UTF-8, nesting past a parser's limit)."""
    found = {k.decode(): v.decode("utf-8", "replace") for k, v in _SERVED.findall(value)}
    if "dt_updated" in found and "activity_id" in found:
        return found["dt_updated"], found["activity_id"]
    return None


@dataclass
class Checks:
    lines: list[str] = field(default_factory=list)
    verdicts: list[tuple[str, bool]] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str, examples: Iterable[str] = ()) -> None:
        self.verdicts.append((name, ok))
        self.lines.append(f"{verdict(ok)}  {name}: {detail}")
        self.lines += [f"      {line}" for line in examples]


def check_topic(
    events: list[dict[str, Any]],
    truth: Truth,
    saved: dict[str, dict[str, Any]],
    kills: list[float],
    checks: Checks,
) -> dict[str, int]:
    by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:  # per partition order is kept, and a session is on one partition
        by_session[event["session_id"]].append(event)

    stray = [
        s for s in saved if s not in truth.final or matters(saved[s]) != matters(truth.final[s])
    ]
    checks.add(
        "the truth file agrees with the emulator's saved sessions",
        not stray and len(saved) == len(truth.final),
        f"{len(saved):,} saved, {len(truth.final):,} in the truth file, {len(stray)} differ",
    )

    wrong: list[str] = []
    explained: list[str] = []
    for sid, last in truth.final.items():
        got = by_session.get(sid)
        if got and matters(got[-1]) == matters(last):
            continue
        late_fault = any(seq > truth.last_seq[sid] for seq, _t, _how in truth.faults.get(sid, []))
        (explained if late_fault else wrong).append(sid)
    unknown = [sid for sid in by_session if sid not in truth.final]
    checks.add(
        "every session's last event equals the emulator's final state",
        not wrong and not unknown,
        f"{len(truth.final) - len(wrong) - len(explained):,} of {len(truth.final):,} match; "
        f"{len(explained)} differ because their final version was served malformed (a "
        f"dead letter, explained); {len(wrong)} differ unexplained"
        + (f", e.g. {wrong[:3]}" if wrong else "")
        + f"; {len(unknown)} sessions in the topic the emulator never had",
        [line for sid in wrong[:3] for line in story(sid, by_session.get(sid, []), truth, kills)],
    )

    phantom = [
        e
        for e in events
        if matters(e) not in truth.versions.get((e["session_id"], millis(e["dt_updated"])), [])
    ]
    checks.add(
        "every event is a version the emulator had (session, dt_updated, content)",
        not phantom,
        f"{len(phantom)} of {len(events):,} events are not",
        [
            line
            for e in phantom[:3]
            for line in story(e["session_id"], by_session[e["session_id"]], truth, kills)
        ],
    )

    duplicates = duplicate_deliveries(Landed(events=events))
    checks.add(
        "no duplicate (event_id, dt_updated)",
        not duplicates,
        f"{len(duplicates)} duplicates among {len(events):,} events",
    )
    same: list[str] = []
    backwards: list[str] = []
    for sid, session_events in by_session.items():
        for before, after in itertools.pairwise(session_events):
            if matters(before) == matters(after):
                same.append(sid)
            if millis(after["dt_updated"]) < millis(before["dt_updated"]):
                backwards.append(sid)
    checks.add(
        "no two identical consecutive events of a session",
        not same,
        f"{len(same)} pairs over {len(by_session):,} sessions",
        [line for sid in same[:6] for line in story(sid, by_session[sid], truth, kills)],
    )
    checks.add(
        "no session goes backwards (dt_updated)",
        not backwards,
        f"{len(backwards)} pairs",
        [line for sid in backwards[:3] for line in story(sid, by_session[sid], truth, kills)],
    )
    return {"events": len(events), "sessions": len(by_session), "explained": len(explained)}


def story(sid: str, events: list[dict[str, Any]], truth: Truth, kills: list[float]) -> list[str]:
    """A session's truth lines and events side by side, in time, with the kills between
    (for a check that failed: what happened to it)."""
    rows: list[tuple[float, str]] = []
    for line in truth.history.get(sid, []):
        if line["kind"] == "change":
            rows.append(
                (
                    line["updated_us"] / 1e6,
                    f"truth #{line['seq']} {line['change']:<9} {_what(line)} "
                    f"dt_updated {line['dt_updated']}",
                )
            )
        else:  # a fault: placed at the newest change before it (seq order)
            at = max((t for t, _ in rows), default=0.0)
            rows.append((at + 1e-6, f"truth #{line['seq']} FAULT {line.get('how')} served"))
    for e in events:
        observed = millis(e["observed_at"]) / 1000
        rows.append(
            (
                observed,
                f"event {str(e['event_id'])[:8]} {e['change']:<14} {_what(e)} dt_updated "
                f"{_iso(millis(e['dt_updated']) / 1000)} observed {_iso(observed)}",
            )
        )
    span = (min(t for t, _ in rows), max(t for t, _ in rows)) if rows else (0.0, 0.0)
    rows += [(k, f"KILL -9 at {_iso(k)}") for k in kills if span[0] <= k <= span[1]]
    return [f"session {sid}:", *(f"  {text}" for _t, text in sorted(rows))]


def _iso(unix: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix)) + f".{int(unix * 1000) % 1000:03d}Z"
    )


def _what(record: dict[str, Any]) -> str:
    status, score, max_score, subscores = content(record)
    return f"{status!s:<15} {score}/{max_score} ({len(subscores)} subscores)"


def check_dead_letters(
    bootstrap: str, topic: str, truth: Truth, kills: list[float], window: float, checks: Checks
) -> None:
    reasons: Counter[str] = Counter()
    per_session: Counter[str] = Counter()
    unmatched: list[str] = []
    letters = 0
    for message in read_topic({"bootstrap.servers": bootstrap}, topic, idle_timeout=5.0):
        letters += 1
        headers = dict(message.headers)
        reasons[headers.get("error.reason", b"?").decode(errors="replace")] += 1
        served = served_as(message.value or b"")
        sessions = truth.by_served.get(served, set()) if served else set()
        faulted = [s for s in sessions if truth.faults.get(s)]
        if faulted:
            per_session[faulted[0]] += 1
        else:
            unmatched.append(
                f"{headers.get('error.reason', b'?').decode(errors='replace')}: "
                f"{(message.value or b'')[:120]!r}"
            )
    kinds = Counter(how for faults in truth.faults.values() for _s, _t, how in faults)
    checks.lines.append(
        f"dead letters: {letters} ({', '.join(f'{r} {n}' for r, n in reasons.most_common())}); "
        f"malformed records the emulator served: {truth.malformed} "
        f"({', '.join(f'{k} {n}' for k, n in kinds.most_common())})"
    )
    over = {s: n for s, n in per_session.items() if n > len(truth.faults[s])}
    checks.add(
        "every dead letter is a record the emulator served malformed",
        not unmatched and not over,
        f"{letters - len(unmatched)} of {letters} matched to a malformed serving of their "
        f"session; {len(over)} sessions with more dead letters than malformed servings"
        + (f"; unmatched, e.g. {unmatched[:2]}" if unmatched else ""),
    )
    # per session, the earliest servings are the ones a kill threw away (a re-read after
    # the restart is served again, malformed or not)
    lost: list[float] = []
    for sid, faults in truth.faults.items():
        lost += [t for _seq, t, _how in sorted(faults)[: max(0, len(faults) - per_session[sid])]]
    kills = sorted(kills)
    unexplained = []
    for t in lost:
        i = bisect.bisect_left(kills, t)
        if i == len(kills) or kills[i] - t > window:
            unexplained.append(t)
    checks.add(
        f"every malformed serving without a dead letter was served <= {window:g} s before a kill",
        not unexplained,
        f"{len(lost)} without a dead letter, {len(lost) - len(unexplained)} of them just "
        f"before one of the {len(kills)} kills; {len(unexplained)} not"
        + (
            f" (served ~{[time.strftime('%H:%M:%S', time.gmtime(t)) for t in unexplained[:5]]} UTC)"
            if unexplained
            else ""
        ),
    )


# --- main ----------------------------------------------------------------------------------
def emulator_flags(args: argparse.Namespace, port: int, work: Path, *, drain: bool) -> list[str]:
    flags = [
        "--port",
        str(port),
        "--fault-latency-ms",
        str(args.latency_ms),
        "--fault-latency-jitter-ms",
        str(args.jitter_ms),
        "--rate-limit",
        str(QUOTA),
        "--rate-window",
        str(QUOTA_WINDOW_MS / 1000),
        "--fault-error-rate",
        str(args.error_rate),
        "--fault-429-burst-every",
        str(args.burst_every),
        "--fault-429-burst-length",
        str(args.burst_length),
        "--fault-truncate-rate",
        str(args.truncate_rate),
        "--fault-reset-rate",
        str(args.reset_rate),
    ]
    if drain:  # the workload stops: no changes, nothing more lost to a malformed record
        return [*flags, "--load", str(work / "final.jsonl")]
    return [
        *flags,
        "--changes-per-second",
        str(args.changes_per_second),
        "--new-sessions-per-second",
        str(args.new_sessions_per_second),
        "--fault-malformed-rate",
        str(args.malformed_rate),
        "--fault-malformed-kinds",
        args.malformed_kinds,
        "--truth",
        str(work / "truth.jsonl"),
        "--save",
        str(work / "final.jsonl"),
        "--request-log",
        str(work / "requests.log"),
    ]


def log_summary(work: Path) -> list[str]:
    """Warnings and errors in the connector's logs, by event, over every run."""
    found: Counter[tuple[str, str]] = Counter()
    for log in sorted(work.glob("connector-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                found[("raw", line[:100])] += 1
                continue
            if isinstance(entry, dict) and entry.get("level") in ("warning", "error"):
                found[(entry["level"], str(entry.get("event"))[:100])] += 1
    return [f"  {n:>6} {level:<7} {event}" for (level, event), n in found.most_common(15)]


def totals(runs: list[Run]) -> dict[str, float]:
    """Counters summed over the runs (each run's last scrape: just before its kill)."""
    summed: dict[str, float] = defaultdict(float)
    for run in runs:
        for name, value in run.metrics.items():
            if name.endswith("_total"):
                summed[name] += value
    return summed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="of live workload")
    parser.add_argument("--kill-every", type=float, default=4.0, help="minutes of a run's life")
    parser.add_argument("--warmup-seconds", type=float, default=120.0)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--changes-per-second", type=float, default=40.0)
    parser.add_argument("--new-sessions-per-second", type=float, default=2.0)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--jitter-ms", type=float, default=100.0)
    parser.add_argument("--error-rate", type=float, default=0.03, help="500/502/503")
    parser.add_argument("--burst-every", type=int, default=250, help="a 429 burst every N")
    parser.add_argument("--burst-length", type=int, default=5)
    parser.add_argument("--truncate-rate", type=float, default=0.02)
    parser.add_argument("--reset-rate", type=float, default=0.02)
    parser.add_argument("--malformed-rate", type=float, default=0.03, help="of pages")
    parser.add_argument("--malformed-kinds", default=",".join(MALFORMED_KINDS))
    parser.add_argument("--kill-window", type=float, default=30.0, help="seconds; see above")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    for line in machine_lines():
        print(line)
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    ok = False
    try:
        with kafka_broker(work) as broker:
            ok = measure(args, broker.bootstrap_servers, work)
    finally:
        if args.keep or not ok:
            print(f"work directory (logs, truth file, request log) kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def measure(args: argparse.Namespace, bootstrap: str, work: Path) -> bool:
    port = free_port()
    sampler = Sampler(args.sample_seconds)
    sampler.start()
    checks = Checks()
    began = time.monotonic()
    with emulator_process(
        args.sessions,
        work / "emulator.log",
        args.seed,
        emulator_flags(args, port, work, drain=False),
    ) as (_emu_pid, url):
        env = {
            **connector_env(url, bootstrap, args.poll_interval),
            "LEARNOSITY_MAX_REQUESTS_PER_SECOND": str(BUDGET),
            "LOG_LEVEL": "INFO",
        }
        connector = Connector(env, work, sampler)
        print(
            f"emulator: {args.sessions:,} sessions, {args.changes_per_second:g} changes/s and "
            f"{args.new_sessions_per_second:g} new sessions/s, {args.latency_ms:g}-"
            f"{args.latency_ms + args.jitter_ms:g} ms per answer, quota {QUOTA} per 5 s; faults: "
            f"{args.error_rate:g} 5xx, 429 x{args.burst_length} every {args.burst_every} requests, "
            f"{args.truncate_rate:g} truncated, {args.reset_rate:g} resets, "
            f"{args.malformed_rate:g} of pages with a malformed record ({args.malformed_kinds})",
            flush=True,
        )
        print(
            f"connector: exactly once, poll {args.poll_interval:g} s, budget {BUDGET} requests/s; "
            f"kill -9 every {args.kill_every:g} min for {args.minutes:g} min; RSS every "
            f"{args.sample_seconds:g} s, warm-up {args.warmup_seconds:g} s",
            flush=True,
        )
        began = time.monotonic()
        soak(connector, args.minutes, args.kill_every, began)
        stopped = time.time()
        print(f"  {(time.monotonic() - began) / 60:5.1f} min: workload stopping", flush=True)
    # the emulator wrote its final sessions and closed its truth file and request log
    saved = {}
    with (work / "final.jsonl").open() as lines:
        for line in lines:
            record = json.loads(line)
            saved[record["session_id"]] = record
    newest = max(r["updated_us"] for r in saved.values()) / 1e6
    with emulator_process(
        0, work / "emulator-drain.log", args.seed, emulator_flags(args, port, work, drain=True)
    ):
        restarted = time.time()
        run = connector.run
        caught_up = None
        try:

            def done(m: dict[str, float]) -> bool:
                if m.get(POSITION, 0) < newest - 0.001:
                    return False
                slices = labelled(run.proc.get("/metrics")[1], f"{METRIC}slices", "state")
                return not slices.get("pending", 0) and not slices.get("running", 0)

            wait_metrics(run.proc, done, args.drain_timeout, "the catch-up", interval=0.5)
            caught_up = time.time() - restarted
            time.sleep(args.poll_interval + 1)  # nothing more should come
        except RuntimeError as exc:
            checks.lines.append(f"catch-up: {exc}".splitlines()[0])
        checks.add(
            "the connector caught up after the workload stopped (metrics)",
            caught_up is not None,
            f"cursor_position_seconds reached the newest session's updated time, no slice "
            f"left, {caught_up:.1f} s after the emulator came back "
            f"({restarted - stopped:.1f} s without it)"
            if caught_up is not None
            else f"not within {args.drain_timeout:g} s",
        )
        truth = load_truth(work / "truth.jsonl")
        events = read_events(bootstrap, env["KAFKA_TOPIC"])
        counts = check_topic(events, truth, saved, connector.kills, checks)
        if args.keep:
            with (work / "events.jsonl").open("w") as dump:
                for event in events:
                    dump.write(json.dumps(event, default=str) + "\n")
        check_dead_letters(
            bootstrap, f"{env['KAFKA_TOPIC']}.dlq", truth, connector.kills, args.kill_window, checks
        )
        if run.proc.alive():
            connector.stop(run)
        else:
            connector.exited(run)
    sampler.stop()

    runs = connector.runs
    table, judged = rss_table(runs, args.warmup_seconds, began)
    print()
    print(
        f"connector RSS, MiB (runner + fetch process, VmRSS every {args.sample_seconds:g} s); "
        f"warm-up = the first {args.warmup_seconds:g} s of each run; steady = the samples after it"
    )
    for line in table:
        print(line)
    # the first run backfilled the initial sessions: the restarted ones are compared
    steady_all = [s.total for r in runs[1:] for s in r.steady(args.warmup_seconds)]
    exits = [r for r in runs if "on its own" in r.end]
    orphans = [r for r in runs if "still alive" in r.orphans]
    requests = read_request_log(work / "requests.log")
    statuses = Counter(status for _ms, status in requests)
    summed = totals(runs)
    print()
    print(
        f"workload: {truth.changes - args.sessions:,} changes after start (saves included), "
        f"{len(truth.final):,} sessions at the end; {counts['events']:,} events in the topic"
    )
    print(
        f"API (emulator request log, first emulator): {len(requests):,} requests; 200: "
        f"{statuses[200]:,}, 429: {statuses[429]:,}, 5xx: "
        f"{sum(n for s, n in statuses.items() if s >= 500):,}, resets: {statuses[0]:,}; "
        f"truncated bodies are not logged"
    )
    print(
        "connector counters over every run (each run's last scrape, just before its kill): "
        + ", ".join(
            f"{name.removeprefix(METRIC)} {value:,.0f}"
            for name, value in sorted(summed.items())
            if name.startswith(METRIC) and value
        )
    )
    print(
        f"changes_emitted over the runs "
        f"{summed.get(f'{METRIC}changes_emitted_total', 0):,.0f}; "
        f"events read back {counts['events']:,}"
    )
    print("connector warnings and errors, by event, over every run:")
    for line in log_summary(work):
        print(line)
    print()
    if steady_all:
        spread = (max(steady_all) - min(steady_all)) / min(steady_all)
        checks.add(
            "RSS flat after warm-up in every judged run (max - min <= 10 % of min)",
            bool(judged) and all(judged),
            f"{sum(judged)} of {len(judged)} judged runs",
        )
        checks.add(
            "RSS flat after warm-up over the restarted runs (2 to the last) together",
            spread <= FLAT,
            f"{min(steady_all) / MiB:.1f} to {max(steady_all) / MiB:.1f} MiB, "
            f"spread {100 * spread:.1f} %",
        )
    checks.add(
        "the connector never exited on its own",
        not exits,
        f"{len(exits)} exits: {[r.end for r in exits]}" if exits else f"{len(runs)} runs",
    )
    checks.add(
        "the fetch process followed every kill -9 within 10 s",
        not orphans,
        f"{len(connector.kills)} kills" + (f"; {[r.orphans for r in orphans]}" if orphans else ""),
    )
    for line in checks.lines:
        print(line)
    passed = all(ok for _name, ok in checks.verdicts)
    met = sum(ok for _name, ok in checks.verdicts)
    print(f"soak: {verdict(passed)} ({met} of {len(checks.verdicts)} checks)")
    return passed


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
