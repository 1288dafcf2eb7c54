#!/usr/bin/env python3
"""CPU time and memory of the processes bench/peers.sh measures.

  procwatch.py ticks PID...        CPU clock ticks (user + system, with those
      of reaped children) of each PID and of all its live descendants, summed
  procwatch.py peak PID OUTPUT     read PID's memory every 20 ms until it
      exits or this gets SIGTERM, then write to OUTPUT its peak private
      resident memory (RssAnon) and peak resident set (VmRSS), in kB;
      OUTPUT appears, with the first reading, once SIGTERM is handled

A PostgreSQL process's VmRSS counts the pages of shared buffers it touched,
which its private memory does not; the JVM's and Python's are nearly all
private.  Both are kept so that the table can show either.
"""
import os
import signal
import sys
import time


def ticks(roots):
    children, own = {}, {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(name))
        own[int(name)] = sum(int(x) for x in fields[11:15])
    total, seen, todo = 0, set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            total += own.get(pid, 0)
            todo.extend(children.get(pid, []))
    return total


def peak(pid, output):
    anon = rss = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    first = True
    while not stop:
        try:
            with open("/proc/%s/status" % pid) as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        anon = max(anon, int(line.split()[1]))
                    elif line.startswith("VmRSS:"):
                        rss = max(rss, int(line.split()[1]))
        except OSError:
            # a process in the middle of exec() may refuse to be read
            if not os.path.exists("/proc/%s" % pid):
                break
        if first:
            # tells the caller that SIGTERM is now safe to send
            write(output, anon, rss)
            first = False
        time.sleep(0.02)
    write(output, anon, rss)


def write(output, anon, rss):
    with open(output + ".tmp", "w") as f:
        f.write("%d %d\n" % (anon, rss))
    os.replace(output + ".tmp", output)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "ticks":
        print(ticks([int(p) for p in sys.argv[2:]]))
    elif len(sys.argv) == 4 and sys.argv[1] == "peak":
        peak(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
