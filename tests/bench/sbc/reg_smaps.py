#!/usr/bin/env python3
"""Where a process's memory grew between two copies of /proc/PID/smaps.

  reg_smaps.py BEFORE AFTER [PER]

Prints the mappings whose Pss grew, largest first (start address, size, name: [heap], an
anonymous mapping, a file), the growth in KiB and, with PER, in bytes per PER (bindings).
Mappings are matched by start address; one that appeared counts whole.
"""
import sys


def read(path):
    maps, cur = {}, None
    for line in open(path):
        parts = line.split()
        if parts and "-" in parts[0] and not parts[0].endswith(":"):
            start, end = (int(x, 16) for x in parts[0].split("-"))
            name = parts[5] if len(parts) > 5 else "[anon]"
            cur = maps[start] = {"size": end - start, "name": name, "pss": 0, "rss": 0}
        elif cur is not None and parts and parts[0] in ("Pss:", "Rss:"):
            cur[parts[0][:-1].lower()] = int(parts[1]) * 1024
    return maps


def main():
    before, after = read(sys.argv[1]), read(sys.argv[2])
    per = int(sys.argv[3]) if len(sys.argv) > 3 and int(sys.argv[3]) > 0 else 0
    rows = []
    for start, m in after.items():
        grew = m["pss"] - before.get(start, {}).get("pss", 0)
        if grew:
            rows.append((grew, start, m))
    gone = sum(m["pss"] for s, m in before.items() if s not in after)
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows) - gone
    for grew, start, m in rows[:12]:
        tail = f" {grew / per:7.0f} B/binding" if per else ""
        print(f"smaps: {start:#x} {m['size'] >> 10:>9} KiB {m['name']:<28} Pss {grew >> 10:+8} KiB{tail}")
    tail = f" ({total / per:.0f} B per binding)" if per else ""
    print(f"smaps: Pss growth {total >> 10:+} KiB over {len(rows)} mappings, {gone >> 10} KiB in mappings gone{tail}")


if __name__ == "__main__":
    main()
