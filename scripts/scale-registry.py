#!/usr/bin/env python3
"""Grows a registry made by `mediaretain scan` to N synthetic entries (scripts/scale).

    scripts/scale-registry.py REGISTRY.db N

Adds entries until the registry holds N of them (run again with a larger N to grow it),
in the stores and classes of scripts/scale's 10M config: HLS segments of 200 cameras
(keep_for 7d, written over the last 6 days), recordings with event tags and a few pins
(keep_for 90d and a max_total, over the last 60 days), transcoder scratch files
(temporary, ttl 2d, over the last 36 hours) and 3% unclassified files. Nothing is due.
The indexes are dropped for the insert and made again (as the schema has them), which is
~5x faster than inserting through them; the rows go in by (store, path).
"""
import random
import sqlite3
import sys
import time

db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA synchronous=OFF")
c.execute("PRAGMA cache_size=-1000000")
have = c.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
if have >= n:
    sys.exit(0)
stores = dict(c.execute("SELECT name, id FROM stores"))
for s in ("live", "rec", "scratch"):
    assert s in stores, f"store {s} missing: run `mediaretain scan` with scripts/scale's config first"
gen = c.execute("SELECT COALESCE(MAX(seen_gen), 1) FROM entries").fetchone()[0]
NS = 1_000_000_000
now = int(time.time()) * NS
DAY = 86400 * NS
rnd = random.Random(have)
# Kind of each new row, by share: segments 80%, recordings 7%, scratch 10%, other 3%.
def rows(start, count):
    for i in range(start, start + count):
        r = i % 100
        if r < 80:   # HLS segments: live/camNNN/YYYYMMDD/HH/segNNNNNNNNN.ts, 0.5-2 MB
            cam = i % 200
            t = now - DAY // 12 - (i * 7919 % (6 * DAY // NS)) * NS
            yield (stores["live"], f"cam{cam:03}/{t // DAY}/{t // 3600 // NS % 24:02}/seg{i:09}.ts".encode(),
                   rnd.randint(500_000, 2_000_000), t, 10_000_000 + i, t, "segments", gen)
        elif r < 87:  # recordings: rec/event/YYYYMMDD/camNNN-NNNNNNNNN.mp4, 50-700 MB
            t = now - DAY - (i * 104729 % (59 * DAY // NS)) * NS
            yield (stores["rec"], f"{t // DAY}/cam{i % 200:03}-{i:09}.mp4".encode(),
                   rnd.randint(50_000_000, 700_000_000), t, 10_000_000 + i, t, "recordings", gen)
        elif r < 97:  # transcoder scratch: scratch/jobNNNNN/partNNNNNNNNN.tmp
            t = now - (i * 31 % (36 * 3600)) * NS - 60 * NS
            yield (stores["scratch"], f"job{i % 50000:05}/part{i:09}.tmp".encode(),
                   rnd.randint(1_000, 50_000_000), t, 10_000_000 + i, t, "scratch", gen)
        else:         # matched by no class: never touched
            t = now - (i * 13 % (30 * DAY // NS)) * NS
            yield (stores["live"], f"misc/notes{i:09}.txt".encode(), rnd.randint(10, 10_000), t,
                   10_000_000 + i, t, None, gen)

t0 = time.time()
idx = c.execute("SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name='entries' AND sql IS NOT NULL").fetchall()
c.execute("BEGIN")
for name, _ in idx:
    c.execute(f"DROP INDEX {name}")
start = c.execute("SELECT COALESCE(MAX(id), 0) FROM entries").fetchone()[0] + 1
batch = []
for row in rows(start, n - have):
    batch.append(row)
    if len(batch) == 100_000:
        c.executemany("INSERT OR IGNORE INTO entries(store_id, path, size, mtime, ino, first_seen, class, seen_gen) VALUES (?,?,?,?,?,?,?,?)", batch)
        batch.clear()
c.executemany("INSERT OR IGNORE INTO entries(store_id, path, size, mtime, ino, first_seen, class, seen_gen) VALUES (?,?,?,?,?,?,?,?)", batch)
for _, sql in idx:
    c.execute(sql)
# Tags: every recording an event and a camera; pins: one recording in 50.
c.execute("""INSERT OR IGNORE INTO tags(entry_id, tag)
             SELECT id, 'event=match-' || (id % 5000) FROM entries WHERE class = 'recordings' AND id >= ?1""", (start,))
c.execute("""INSERT OR IGNORE INTO tags(entry_id, tag)
             SELECT id, 'camera=cam' || (id % 200) FROM entries WHERE class = 'recordings' AND id >= ?1""", (start,))
c.execute("""INSERT OR IGNORE INTO pins(store_id, path, at)
             SELECT store_id, path, ?2 FROM entries WHERE class = 'recordings' AND id >= ?1 AND (id / 100) % 50 = 0""", (start, now))
c.execute("COMMIT")
c.execute("ANALYZE") if False else None
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
print(f"{n} entries ({n - have} added in {time.time() - t0:.1f}s)")
