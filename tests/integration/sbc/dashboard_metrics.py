#!/usr/bin/env python3
"""Checks that every query of a Grafana dashboard names only metrics a scrape exports.

    dashboard_metrics.py DASHBOARD.json SCRAPE.txt

Each target's `expr` is reduced to its metric names: string literals, label matchers {...},
range selectors [...], grouping clauses (by/without (...)), function calls and PromQL keywords
are removed; every identifier left must be a sample name of the scrape. A dashboard with no
query, or a query naming no metric, fails too.
"""
import json
import re
import sys

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan", "le"}


def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$__\w+|\$\w+", "", e)  # Grafana variables
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation
        if word.lower() in KEYWORDS or re.fullmatch(r"[0-9eE.]+", word):
            continue
        names.add(word)
    return names


def targets(node):
    if isinstance(node, dict):
        if "expr" in node and isinstance(node["expr"], str):
            yield node["expr"]
        for v in node.values():
            yield from targets(v)
    elif isinstance(node, list):
        for v in node:
            yield from targets(v)


def main():
    dashboard = json.load(open(sys.argv[1]))
    exported = set()
    for line in open(sys.argv[2]):
        if line.startswith("# TYPE "):
            # A declared family counts even before its first sample (a rule that never fired).
            _, _, name, kind = line.split()[:4]
            exported.add(name)
            if kind == "histogram":
                exported.update(name + s for s in ("_bucket", "_sum", "_count"))
            continue
        if line.startswith("#") or not line.strip():
            continue
        exported.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    exported.add("up")  # Prometheus' own per-target series
    exprs = list(targets(dashboard))
    if not exprs:
        print("no query in the dashboard")
        return 1
    bad = 0
    used = set()
    for expr in exprs:
        names = metric_names(expr)
        if not names:
            print(f"query names no metric: {expr}")
            bad += 1
        for n in sorted(names - exported):
            print(f"not exported: {n} (in {expr})")
            bad += 1
        used |= names
    print(f"dashboard: {len(exprs)} queries over {len(used)} metrics, {bad} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
