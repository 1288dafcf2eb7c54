#!/usr/bin/env python3
"""Tables and plots of bench/peers.sh.

Usage: report.py RESULTS SETTINGS IMG_DIR

RESULTS has one line per run, tab-separated: kind (drain or latency),
relay (io, dbz, poll), round, payload size or rate, then key=value pairs.
SETTINGS has key=value lines: date, versions and every setting of the run.
Prints a markdown section for docs/benchmarks.md; writes its plots into
IMG_DIR as peers-*.png.  Where there are several rounds a cell shows the
median and, in brackets, every round's value in order.
"""
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RELAYS = ("io", "dbz", "poll")
NAMES = {"io": "inbox_outbox relay", "dbz": "Debezium Server", "poll": "polling relay"}
COLORS = {"io": "#1f77b4", "dbz": "#d62728", "poll": "#2ca02c"}


def read_results(path):
    runs = []
    with open(path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 4:
                continue
            run = {"kind": fields[0], "relay": fields[1], "round": int(fields[2]),
                   "param": int(fields[3])}
            for kv in fields[4:]:
                k, _, v = kv.partition("=")
                run[k] = v
            runs.append(run)
    return runs


def read_settings(path):
    with open(path) as f:
        return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def fmt(x, digits):
    if x is None:
        return "–"
    if digits == 0:
        return "{:,.0f}".format(x)
    return "{:,.{}f}".format(x, digits)


def cell(values, digits=0):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return fmt(values[0], digits)
    return "%s (%s)" % (fmt(statistics.median(values), digits),
                        " / ".join(fmt(v, digits) for v in values))


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def select(runs, kind, relay, param=None):
    return sorted((r for r in runs if r["kind"] == kind and r["relay"] == relay
                   and (param is None or r["param"] == param)), key=lambda r: r["round"])


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def drain_rows(runs, size):
    def col(fn, digits=0):
        return [cell([fn(r) for r in select(runs, "drain", s, size)], digits) for s in RELAYS]

    def per_s(key):
        return lambda r: int(r["events"]) / num(r[key]) if num(r[key]) else None

    def mb(key):
        return lambda r: num(r[key]) / 1024

    def per_event(key):
        return lambda r: num(r[key]) / int(r["events"])

    return [
        ["**events/s, first → last message** (broker's append times)"] + col(per_s("span_s")),
        ["events/s, relay start → last message"] + col(per_s("start_s")),
        ["CPU s, relay process"] + col(lambda r: num(r["relay_cpu_s"]), 1),
        ["CPU s, rest of PostgreSQL"] + col(lambda r: num(r["pg_cpu_s"]), 1),
        ["CPU s, broker"] + col(lambda r: num(r["broker_cpu_s"]), 1),
        ["CPU µs per event, relay + PostgreSQL"] +
        col(lambda r: 1e6 * (num(r["relay_cpu_s"]) + num(r["pg_cpu_s"])) / int(r["events"]), 1),
        ["peak memory of the relay process, private (RssAnon) MB"] + col(mb("peak_private_kb")),
        ["peak memory of the relay process, resident (VmRSS) MB"] + col(mb("peak_rss_kb")),
        ["WAL bytes per event: load"] + col(per_event("wal_load")),
        ["WAL bytes per event: drain"] + col(per_event("wal_drain")),
        ["WAL bytes per event: load + drain"] +
        col(lambda r: (num(r["wal_load"]) + num(r["wal_drain"])) / int(r["events"])),
        ["messages in the topic"] + col(lambda r: num(r["messages"])),
        ["other processes on the machine, % of its CPU"] + col(lambda r: num(r.get("others_pct"))),
    ]


def latency_rows(runs, rate):
    def col(fn, digits=2):
        return [cell([fn(r) for r in select(runs, "latency", s, rate)], digits) for s in RELAYS]

    def f(key):
        return lambda r: num(r[key])

    return [
        ["**p50 ms**"] + col(f("p50")),
        ["p90 ms"] + col(f("p90")),
        ["**p99 ms**"] + col(f("p99")),
        ["p99.9 ms"] + col(f("p999")),
        ["max ms"] + col(f("max")),
        ["events published / received"] +
        [" · ".join("%s / %s" % (r["published"], r["received"]) for r in select(runs, "latency", s, rate))
         or "–" for s in RELAYS],
        ["all received after publishing stopped, s"] + col(f("cleared_s")),
        ["CPU s, relay process"] + col(f("relay_cpu_s"), 1),
        ["CPU s, rest of PostgreSQL (pgbench's backends included)"] + col(f("pg_cpu_s"), 1),
        ["CPU s, broker (serving the consumer included)"] + col(f("broker_cpu_s"), 1),
        ["peak memory of the relay process, private MB"] + col(lambda r: num(r["peak_private_kb"]) / 1024, 0),
        ["peak memory of the relay process, resident MB"] + col(lambda r: num(r["peak_rss_kb"]) / 1024, 0),
        ["WAL bytes per event"] + col(lambda r: num(r["wal"]) / max(1, int(r["published"])), 0),
        ["other processes on the machine, % of its CPU"] + col(lambda r: num(r.get("others_pct")), 0),
    ]


def highest(runs, relay, rnd):
    """The highest sustained rate of one relay in one round, its run, and
    the first rate it did not sustain (or None)."""
    steps = sorted((r for r in runs if r["kind"] == "latency" and r["relay"] == relay
                    and r["round"] == rnd), key=lambda r: r["param"])
    best, failed = None, None
    for r in steps:
        if r["sustained"] == "yes":
            if best is None or r["param"] > best["param"]:
                best = r
        elif failed is None or r["param"] < failed["param"]:
            failed = r
    return best, failed


def why(r):
    n = int(r["published"])
    target = r["param"] * float(r["seconds"])
    if n < 0.97 * target:
        return "publishers reached %.0f%%" % (100 * n / target)
    if r["cleared_s"] == "-":
        return "%s of %s events received" % (r["received"], r["published"])
    return "backlog took %s s" % r["cleared_s"]


def highest_rows(runs, rounds):
    rows = []
    for s in RELAYS:
        for rnd in rounds:
            best, failed = highest(runs, s, rnd)
            if best is None:
                rows.append([NAMES[s], str(rnd), "none", "–", "–", "–", "–",
                             "%d: %s" % (failed["param"], why(failed)) if failed else "–"])
                continue
            secs = float(best["seconds"])
            rows.append([NAMES[s], str(rnd), "{:,}".format(best["param"]),
                         "{:,.0f}".format(int(best["published"]) / secs),
                         "%s / %s" % (best["p50"], best["p99"]), best["max"],
                         "%.0f%%" % (100 * float(best["relay_cpu_s"]) / secs),
                         "%d: %s" % (failed["param"], why(failed)) if failed else "none failed"])
    return rows


def plot_drain(runs, sizes, path):
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for i, s in enumerate(RELAYS):
            rates = [int(r["events"]) / float(r["span_s"]) for r in select(runs, "drain", s, size)
                     if num(r["span_s"])]
            if rates:
                ax.bar(i, statistics.median(rates), color=COLORS[s])
                ax.plot([i] * len(rates), rates, "k.", markersize=5)
        ax.set_xticks(range(len(RELAYS)), [NAMES[s] for s in RELAYS], fontsize=8)
        ax.set_title("drain, %s-byte events" % size)
        ax.set_ylabel("events/s (first → last message)")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: "{:,.0f}".format(v)))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_latency(runs, path):
    fig, ax = plt.subplots(figsize=(7, 4))
    keys = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max"))
    width = 0.27
    for i, s in enumerate(RELAYS):
        sel = select(runs, "latency", s, 1000)
        if not sel:
            continue
        vals = [median([num(r[k]) for r in sel]) or 0 for k, _ in keys]
        ax.bar([j + (i - 1) * width for j in range(len(keys))], vals, width,
               color=COLORS[s], label=NAMES[s])
    ax.set_xticks(range(len(keys)), [label for _, label in keys])
    ax.set_yscale("log")
    ax.set_ylabel("ms, statement → consumer (log scale)")
    ax.set_title("latency at 1,000 events/s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_rates(runs, path):
    fig, ax = plt.subplots(figsize=(7, 4))
    for s in RELAYS:
        sel = [r for r in runs if r["kind"] == "latency" and r["relay"] == s]
        by_rate = {}
        for r in sel:
            by_rate.setdefault(r["param"], []).append(r)
        xs = sorted(by_rate)
        for key, style in (("p50", "-o"), ("p99", "--^")):
            ys = [median([num(r[key]) for r in by_rate[x]]) for x in xs]
            ax.plot(xs, ys, style, color=COLORS[s], label="%s %s" % (NAMES[s], key), markersize=4)
        bad = [x for x in xs if all(r["sustained"] != "yes" for r in by_rate[x])]
        if bad:
            ax.plot(bad, [median([num(r["p99"]) for r in by_rate[x]]) for x in bad], "x",
                    color="black", markersize=9)
    ax.set_yscale("log")
    ax.set_xlabel("offered rate, events/s (×: not sustained)")
    ax.set_ylabel("ms, statement → consumer (log scale)")
    ax.set_title("latency against rate")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_resources(runs, sizes, path):
    fig, (cpu, mem) = plt.subplots(1, 2, figsize=(10, 4))
    groups = ["drain %s B" % s for s in sizes] + ["1,000 events/s"]
    width = 0.27
    for i, s in enumerate(RELAYS):
        us, mb = [], []
        for size in sizes:
            sel = select(runs, "drain", s, size)
            us.append(median([1e6 * float(r["relay_cpu_s"]) / int(r["events"]) for r in sel]) or 0)
            mb.append(median([num(r["peak_private_kb"]) / 1024 for r in sel]) or 0)
        sel = select(runs, "latency", s, 1000)
        us.append(median([1e6 * float(r["relay_cpu_s"]) / max(1, int(r["published"])) for r in sel]) or 0)
        mb.append(median([num(r["peak_private_kb"]) / 1024 for r in sel]) or 0)
        xs = [j + (i - 1) * width for j in range(len(groups))]
        cpu.bar(xs, us, width, color=COLORS[s], label=NAMES[s])
        mem.bar(xs, mb, width, color=COLORS[s], label=NAMES[s])
    for ax, title, ylabel in ((cpu, "relay process CPU per event", "µs per event (log scale)"),
                              (mem, "relay process peak private memory", "MB (log scale)")):
        ax.set_xticks(range(len(groups)), groups, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
    cpu.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    runs = read_results(sys.argv[1])
    st = read_settings(sys.argv[2])
    img = sys.argv[3]
    sizes = [int(s) for s in st["sizes"].split()]
    rounds = sorted({r["round"] for r in runs})
    os.makedirs(img, exist_ok=True)
    plot_drain(runs, sizes, os.path.join(img, "peers-drain.png"))
    plot_latency(runs, os.path.join(img, "peers-latency.png"))
    plot_rates(runs, os.path.join(img, "peers-rates.png"))
    plot_resources(runs, sizes, os.path.join(img, "peers-resources.png"))

    head = ["", NAMES["io"], NAMES["dbz"], NAMES["poll"]]
    out = []
    out.append("## Outbox relays side by side — %s (at %s)" % (st["date"], st["commit"]))
    out.append("")
    out.append("Command: `bash bench/peers.sh`. %s cores shared by PostgreSQL, the broker, the relay "
               "under test, pgbench and the consumer; %s round(s), in each the relays take turns "
               "(inbox_outbox, Debezium, polling) at every workload. A cell shows the median and, "
               "in brackets, each round's value." % (st["cores"], st["rounds"]))
    out.append("")
    out.append("- PostgreSQL %s, `shared_buffers` 1GB, `max_wal_size` 4GB, `checkpoint_timeout` "
               "30min, **`wal_level = logical` for all three** (Debezium needs it), "
               "`synchronous_commit` on. Kafka %s, one broker (KRaft, %s, `-Xmx1g`), topics of 3 "
               "partitions with `message.timestamp.type=LogAppendTime`."
               % (st["postgresql"], st["kafka"], st["broker_java"]))
    out.append("- **inbox_outbox relay**: defaults (`batch_size` 5000, `linger.ms=0`, idempotent, "
               "acks=all), librdkafka %s; events from `outbox_publish()`." % st["librdkafka"])
    out.append("- **Debezium Server %s** on %s (JVM options: %s): PostgreSQL connector (pgoutput, "
               "`snapshot.mode=no_data`, slot created at the end of WAL before each run), outbox "
               "event router (its defaults: topic `outbox.event.<aggregatetype>`, key `aggregateid`, "
               "value `payload`, a text column), Kafka sink; `max.batch.size` %s, `max.queue.size` %s, `poll.interval.ms` %s, "
               "producer `linger.ms` %s, `batch.size` %s, acks=all, idempotent "
               "(bench/peers/debezium.properties). The application inserts each event into "
               "`dbz_outbox` and deletes it in the same transaction; the publication sends inserts only."
               % (st["debezium"], st["debezium_java"], st["debezium_java_opts"], st["dbz_max_batch"],
                  st["dbz_max_queue"], st["dbz_poll_ms"], st["dbz_linger_ms"], st["dbz_producer_batch"]))
    out.append("- **Polling relay** (bench/peers/poll_relay.py, Python %s, confluent-kafka %s, "
               "psycopg %s): one transaction per round locks up to %s rows in id order with "
               "`FOR UPDATE SKIP LOCKED`, produces them (idempotent), waits for every "
               "acknowledgement, deletes them and commits; it polls again at once after a full batch, "
               "after %s ms otherwise." % (st["python"], st["confluent_kafka"], st["psycopg"],
                                            st["poll_batch"], st["poll_interval_ms"]))
    out.append("")

    for size in sizes:
        out.append("### Drain of %s pending %s-byte events" % ("{:,}".format(int(st["events"])), size))
        out.append("")
        out.append("Written while no relay ran, %s events per transaction (Debezium: inserted and "
                   "deleted in each), then `VACUUM ANALYZE` and `CHECKPOINT`, then the relay started. "
                   "Events/s on the broker's clock; CPU from the relay's start until the last event is "
                   "in the topic (and, for inbox_outbox and the polling relay, deleted from the outbox); "
                   "WAL of the load and of the drain, per event." % st["load_tx"])
        out.append("")
        out.append(table(head, drain_rows(runs, size)))
        out.append("")
    out.append("![drain](img/peers-drain.png)")
    out.append("")

    out.append("### Latency at 1,000 events/s for %s s" % st["latency_seconds"])
    out.append("")
    out.append("pgbench `--rate` (Poisson arrivals), 4 clients, one event of about 200 bytes per "
               "transaction (`outbox_publish()`; `dbz_publish()`, insert and delete; an INSERT into "
               "`poll_outbox`), after %s s at 500 events/s to warm up. Latency = arrival at a kcat "
               "consumer (`fetch.wait.max.ms=1`, bench/outbox/consume.py) − `clock_timestamp()` of "
               "the publishing statement; it includes the commit and the consumer's fetch."
               % st["warmup_seconds"])
    out.append("")
    out.append(table(head, latency_rows(runs, 1000)))
    out.append("")
    out.append("![latency at 1,000 events/s](img/peers-latency.png)")
    out.append("")

    out.append("### Highest rate sustained")
    out.append("")
    out.append("Then, with the same relay running, %s events/s for %s s each, until one is not "
               "sustained: the publishers reach less than %.0f%% of it, or the consumer has not "
               "every event %s s after they stop."
               % (", ".join("{:,}".format(int(x)) for x in st["rates"].split()), st["step_seconds"],
                  100 * float(st["sustain_share"]), st["sustain_clear_s"]))
    out.append("")
    out.append(table(["relay", "round", "highest rate sustained, events/s", "published events/s",
                      "p50 / p99 ms", "max ms", "relay CPU, % of a core", "first rate not sustained"],
                     highest_rows(runs, rounds)))
    out.append("")
    out.append("![latency against rate](img/peers-rates.png)")
    out.append("")
    out.append("![CPU and memory of the relay processes](img/peers-resources.png)")
    out.append("")
    out.append("Memory: a PostgreSQL process's resident set counts the shared buffers it touched; "
               "its private memory (RssAnon) is what it holds of its own. CPU of the polling relay's "
               "backend and of Debezium's walsender is in \"rest of PostgreSQL\".")
    print("\n".join(out))


if __name__ == "__main__":
    main()
