#!/usr/bin/env python3
"""CPU and wake-ups of one process and of each of its threads.

Usage: procstat.py PID              print a snapshot
       procstat.py PID SNAPSHOT     print what changed since SNAPSHOT

A snapshot is one line per thread, "TID NAME TICKS SWITCHES", after a first
line "total TICKS SWITCHES": CPU time in clock ticks (utime + stime; the
first line's is the process's, all threads, those that ended included) and
context switches (voluntary + involuntary: each is a sleep or a
preemption).  The difference is one line: "TICKS SWITCHES", then one
NAME=TICKS/SWITCHES field per thread that used any (threads of equal names
summed).
"""
import os
import sys


def ticks(path):
    with open(path) as f:
        text = f.read()
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def switches(path):
    n = 0
    with open(path) as f:
        for line in f:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                n += int(line.split()[1])
    return n


def snapshot(pid):
    threads = {}
    total_switches = 0
    for tid in os.listdir("/proc/%s/task" % pid):
        base = "/proc/%s/task/%s" % (pid, tid)
        try:
            with open(base + "/comm") as f:
                name = f.read().strip().replace(" ", "_") or "?"
            t, s = ticks(base + "/stat"), switches(base + "/status")
        except OSError:
            continue
        threads[tid] = (name, t, s)
        total_switches += s
    return ticks("/proc/%s/stat" % pid), total_switches, threads


def main():
    pid = sys.argv[1]
    total, sw, threads = snapshot(pid)
    if len(sys.argv) == 2:
        print("total", total, sw)
        for tid, (name, t, s) in sorted(threads.items(), key=lambda x: int(x[0])):
            print(tid, name, t, s)
        return
    before = {}
    with open(sys.argv[2]) as f:
        first = f.readline().split()
        total0, sw0 = int(first[1]), int(first[2])
        for line in f:
            tid, name, t, s = line.split()
            before[tid] = (int(t), int(s))
    per_name = {}
    for tid, (name, t, s) in threads.items():
        t0, s0 = before.get(tid, (0, 0))
        dt, ds = per_name.get(name, (0, 0))
        per_name[name] = (dt + t - t0, ds + s - s0)
    fields = ["%s=%d/%d" % (name, t, s) for name, (t, s) in sorted(per_name.items())
              if t or s]
    print(total - total0, sw - sw0, " ".join(fields))


if __name__ == "__main__":
    main()
