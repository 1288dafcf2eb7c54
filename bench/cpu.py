#!/usr/bin/env python3
"""CPU time of the machine and of the benchmark's own processes.

Usage: cpu.py PID ...

Prints two numbers in clock ticks: the machine's busy time (all cores,
from /proc/stat), and the time used by the given processes, their reaped
children and all their live descendants.  The difference between two
readings, less the benchmark's share, is what other processes used.
"""
import os
import sys


def stat(pid):
    try:
        with open("/proc/%s/stat" % pid) as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    # fields[1] is ppid; utime, stime, cutime, cstime are fields 14-17 of stat
    return int(fields[1]), sum(int(x) for x in fields[11:15])


def main():
    children = {}
    ticks = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            s = stat(pid)
            if s:
                children.setdefault(s[0], []).append(int(pid))
                ticks[int(pid)] = s[1]
    ours = 0
    seen = set()
    todo = [int(p) for p in sys.argv[1:]]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        ours += ticks.get(pid, 0)
        todo.extend(children.get(pid, []))
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6]
    print(busy, ours)


if __name__ == "__main__":
    main()
