"""Reads a `mediaretain gc --json` report of any build: old builds write `millis` and
`snapshot_max_us`, new ones `took` and `snapshot_max`, durations as the config writes them
("1m 2s 345ms"); both are given back under the old names."""
import json
import re

UNITS = {"d": 86400e3, "h": 3600e3, "m": 60e3, "s": 1e3, "ms": 1, "us": 1e-3, "ns": 1e-6}


def millis(d):
    """A duration such as "1s 250ms", in milliseconds."""
    return sum(float(n) * UNITS[u] for n, u in re.findall(r"(\d+)([a-z]+)", d))


def load(path):
    r = json.load(open(path))
    if "millis" not in r and "took" in r:
        r["millis"] = millis(r["took"])
    if "snapshot_max_us" not in r and "snapshot_max" in r:
        r["snapshot_max_us"] = millis(r["snapshot_max"]) * 1000
    return r
