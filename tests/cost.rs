//! What indexing and deleting cost, counted rather than timed (issue 26 item 3): a noisy
//! machine changes how long a scan takes, never how many writes it makes. Each figure is
//! the difference between two runs of one size apart, so start-up, migrations and the
//! registry's first pages cancel out and what is left is the cost per file. The bounds are
//! a few times today's figures: generous for the noise of page splits and checkpoints,
//! far below a regression like issue 26's (a statement journal spilled to temporary
//! files: 8.6 writes per indexed file instead of 0.01). Timed ratios against `find` stay
//! in scripts/bench and BENCHMARKS.md.

mod common;

use std::collections::HashMap;
use std::fs;
use std::process::Command;
use std::time::Duration;

use common::*;

const SEGMENTS: &str = r#"
[[class]]
name = "segments"
store = "media"
match = ["**/*.ts"]
lifecycle = "segment"
keep_for = "1h"
"#;

/// Write system calls (SQLite writes pages with pwrite64, the log and stdout with write)
/// per 1,000 files of a first index into a fresh registry: about 14 today (the WAL frames
/// of the entries and their three indexes), 8,578 with issue 26's statement journal.
const INDEX_WRITES_PER_1000: f64 = 100.0;

/// Write system calls per 1,000 files of a rescan of an unchanged tree (a second `scan`):
/// 0.0 today (an unchanged file is only looked up), 12.8 on 97a8a2d, which wrote every
/// file's generation back (every page of the table, again at each scan).
const RESCAN_WRITES_PER_1000: f64 = 4.0;

/// System calls per file of a one-shot `gc` deleting expired files (scan, plan, lease,
/// re-check, trash rename, unlink, verify, audit), futexes left out (two threads wait on
/// each other as they will): about 25 today.
const GC_SYSCALLS_PER_FILE: f64 = 60.0;

/// `n` empty `.ts` files, 100 per directory, modified `age` ago.
fn tree(b: &Box_, n: usize, age: Duration) {
    for i in 0..n {
        let d = b.media.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(&d).unwrap();
        }
        let p = d.join(format!("seg{i:06}.ts"));
        fs::File::create(&p).unwrap();
        if !age.is_zero() {
            set_age(&p, age);
        }
    }
}

/// Runs `mediaretain --config CONFIG args…` under `strace -f -c`: its stdout and the
/// number of calls of each system call.
fn counted(b: &Box_, args: &[&str]) -> (String, HashMap<String, u64>) {
    let out_file = b.dir.path().join("strace.out");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-c", "-o"])
        .arg(&out_file)
        .arg(bin())
        .arg("--config")
        .arg(&b.config)
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("strace is needed for the cost checks (scripts/test installs it: apt-get install strace)");
    let run = Run::from(out).ok();
    (
        run.stdout,
        parse_strace(&fs::read_to_string(&out_file).unwrap()),
    )
}

/// The calls column of `strace -c`'s table, by system call name.
fn parse_strace(table: &str) -> HashMap<String, u64> {
    let mut calls = HashMap::new();
    for line in table.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors,] syscall
        if f.len() < 5
            || f[0].starts_with('%')
            || f[0].starts_with('-')
            || f.last() == Some(&"total")
        {
            continue;
        }
        if let (Ok(n), Some(name)) = (f[3].parse::<u64>(), f.last()) {
            calls.insert(name.to_string(), n);
        }
    }
    calls
}

fn writes(calls: &HashMap<String, u64>) -> u64 {
    ["pwrite64", "pwritev", "pwritev2", "write", "writev"]
        .iter()
        .map(|s| calls.get(*s).copied().unwrap_or(0))
        .sum()
}

/// The writes of a first index of `n` files into a fresh registry.
fn index_writes(n: usize) -> u64 {
    let b = Box_::new("", "", SEGMENTS);
    tree(&b, n, Duration::ZERO);
    let (stdout, calls) = counted(&b, &["scan", "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(stats[0]["files"], n as u64, "{stdout}");
    writes(&calls)
}

#[test]
fn a_first_index_writes_a_few_pages_per_thousand_files() {
    let (small, large) = (1_000, 5_000);
    let (w_small, w_large) = (index_writes(small), index_writes(large));
    let per_1000 = (w_large.saturating_sub(w_small)) as f64 * 1000.0 / (large - small) as f64;
    eprintln!(
        "index: {w_small} writes for {small} files, {w_large} for {large}: {per_1000:.1} per 1,000 files"
    );
    assert!(
        per_1000 <= INDEX_WRITES_PER_1000,
        "a first index makes {per_1000:.1} write calls per 1,000 files (bound {INDEX_WRITES_PER_1000}): \
         {w_small} for {small} files, {w_large} for {large} — look for a temporary b-tree, sorter or \
         statement journal (EXPLAIN QUERY PLAN, a trigger on a table written per file)"
    );
}

/// The writes of a second scan of `n` unchanged files (the first indexed them).
fn rescan_writes(n: usize) -> u64 {
    let b = Box_::new("", "", SEGMENTS);
    tree(&b, n, Duration::ZERO);
    counted(&b, &["scan", "--json"]);
    let (stdout, calls) = counted(&b, &["scan", "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(stats[0]["files"], n as u64, "{stdout}");
    assert_eq!(stats[0]["forgotten"], 0, "{stdout}");
    writes(&calls)
}

#[test]
fn a_rescan_of_unchanged_files_writes_almost_nothing() {
    let (small, large) = (1_000, 5_000);
    let (w_small, w_large) = (rescan_writes(small), rescan_writes(large));
    let per_1000 = (w_large.saturating_sub(w_small)) as f64 * 1000.0 / (large - small) as f64;
    eprintln!(
        "rescan: {w_small} writes for {small} files, {w_large} for {large}: {per_1000:.1} per 1,000 files"
    );
    assert!(
        per_1000 <= RESCAN_WRITES_PER_1000,
        "a rescan of unchanged files makes {per_1000:.1} write calls per 1,000 files (bound \
         {RESCAN_WRITES_PER_1000}): {w_small} for {small} files, {w_large} for {large} — is an \
         unchanged file written (its generation, a touched column)?"
    );
}

/// The system calls (futexes left out) of a one-shot `gc` deleting `n` expired files.
fn gc_syscalls(n: usize) -> u64 {
    let b = Box_::new("", "", SEGMENTS);
    tree(&b, n, Duration::from_secs(2 * 3600));
    let (stdout, calls) = counted(&b, &["gc", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["deleted_files"], n as u64, "{stdout}");
    assert_eq!(
        fs::read_dir(b.media.join("d000")).map_or(0, |d| d.count()),
        0
    );
    calls
        .iter()
        .filter(|(name, _)| name.as_str() != "futex")
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn a_one_shot_gc_makes_a_bounded_number_of_system_calls_per_deleted_file() {
    let (small, large) = (500, 2_500);
    let (c_small, c_large) = (gc_syscalls(small), gc_syscalls(large));
    let per_file = (c_large.saturating_sub(c_small)) as f64 / (large - small) as f64;
    eprintln!(
        "gc: {c_small} system calls for {small} expired files, {c_large} for {large}: {per_file:.1} per file"
    );
    assert!(
        per_file <= GC_SYSCALLS_PER_FILE,
        "a one-shot gc makes {per_file:.1} system calls per deleted file (bound {GC_SYSCALLS_PER_FILE}): \
         {c_small} for {small} files, {c_large} for {large}"
    );
}

/// Registry entries a lifecycle pass with nothing due reads (issue 26 item 4): a class
/// that only its time limit can thin is read past its limit (nothing there) and for the
/// few younger entries that say when the next falls due — 1 or 2 today, whatever the
/// class holds; the whole walk read every entry (10M entries: 56 s of CPU).
const NOTHING_DUE_READS: u64 = 10;

/// The entries read by the plan of a one-shot `gc` over `n` files of which none is due.
fn nothing_due_reads(n: usize) -> u64 {
    let b = Box_::new("", "", SEGMENTS);
    // Past the quiet period (30 s), well within keep_for (1h).
    tree(&b, n, Duration::from_secs(600));
    let out = b.cli(&["gc", "--json"]).ok();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["planned_files"], 0, "{}", out.stdout);
    assert_eq!(
        fs::read_dir(b.media.join("d000")).map_or(0, |d| d.count()),
        100
    );
    report["entries_read"]
        .as_u64()
        .unwrap_or_else(|| panic!("the gc report says no entries_read: {}", out.stdout))
}

#[test]
fn a_pass_with_nothing_due_reads_a_few_entries_whatever_the_registry_holds() {
    let (small, large) = (200, 4_000);
    let (r_small, r_large) = (nothing_due_reads(small), nothing_due_reads(large));
    eprintln!("nothing due: {r_small} entries read of {small}, {r_large} of {large}");
    assert!(
        r_small <= NOTHING_DUE_READS && r_large <= NOTHING_DUE_READS,
        "a pass with nothing due read {r_small} entries of {small} and {r_large} of {large} \
         (bound {NOTHING_DUE_READS}, whatever the number): the plan walks every entry again \
         (policy::plan_windowed)"
    );
}
