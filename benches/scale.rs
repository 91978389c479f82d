//! The daemon's registry work over a big registry, timed in-process (scripts/scale): what
//! one scheduled pass with nothing due costs (the daemon's `run_pass`: the local
//! lifecycle pass and the two-writers check), the plan, `status` and a metrics scrape; and
//! once the plan as it was made before windows (every entry read), for comparison.
//!
//! `cargo run --release --example scale -- CONFIG [ROUNDS]`
//!
//! For registries grown with synthetic rows (scripts/scale-registry.py): the daemon would
//! rescan its stores first and forget every row that has no file. Nothing here scans; the
//! engine is opened as the daemon opens it. One JSON object per line on stdout.

use std::sync::Arc;
use std::time::Instant;

use mediaretain::clock::SystemClock;
use mediaretain::config::Config;
use mediaretain::engine::{Engine, Scope};

/// VmHWM and VmRSS of this process, in KiB.
fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kib("VmHWM:"), kib("VmRSS:"))
}

/// User + system CPU seconds of this process so far.
fn cpu() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr());
        u.assume_init()
    };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn report(what: &str, started: Instant, cpu0: f64, extra: &str) {
    let (hwm, rss) = rss();
    println!(
        "{{\"what\":\"{what}\",\"secs\":{:.3},\"cpu\":{:.3},\"hwm_kib\":{hwm},\"rss_kib\":{rss}{extra}}}",
        started.elapsed().as_secs_f64(),
        cpu() - cpu0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let config = Config::load(std::path::Path::new(&args[1])).expect("config");
    let rounds: usize = args.get(2).map_or(3, |r| r.parse().expect("rounds"));
    let (t, c) = (Instant::now(), cpu());
    let engine = Arc::new(Engine::open(config, Arc::new(SystemClock), true).expect("open"));
    report("open", t, c, "");
    for _ in 0..rounds {
        let (t, c) = (Instant::now(), cpu());
        let plan = engine.plan(engine.now()).expect("plan");
        let files: u64 = plan.classes.iter().map(|k| k.files).sum();
        report(
            "plan",
            t,
            c,
            &format!(
                ",\"files\":{files},\"read\":{},\"actions\":{}",
                plan.read,
                plan.actions.len()
            ),
        );
    }
    {
        // As the plan was read before windows: every entry of every class, newest first.
        let (t, c) = (Instant::now(), cpu());
        let rt = engine.runtime();
        let reg = engine.registry().lock().expect("registry lock");
        let plan = mediaretain::policy::plan_classes_held(
            &rt.config,
            engine.now(),
            None,
            |_| true,
            |class, sink| {
                reg.for_each_in_class(&class.store, &class.name, class.age_from, &mut *sink)
            },
            |_| Ok(Vec::new()),
        )
        .expect("plan");
        drop(reg);
        report(
            "plan_whole_walk",
            t,
            c,
            &format!(",\"read\":{},\"actions\":{}", plan.read, plan.actions.len()),
        );
    }
    for _ in 0..rounds {
        let (t, c) = (Instant::now(), cpu());
        let r = engine
            .gc_scoped(false, "schedule", false, Scope::Local)
            .expect("pass");
        engine.check_stream_writers().expect("stream writers");
        report(
            "pass",
            t,
            c,
            &format!(
                ",\"planned\":{},\"deleted\":{}",
                r.planned_files, r.deleted_files
            ),
        );
    }
    for _ in 0..rounds {
        let (t, c) = (Instant::now(), cpu());
        engine.status().expect("status");
        report("status", t, c, "");
    }
    for _ in 0..rounds {
        let (t, c) = (Instant::now(), cpu());
        let (text, stale) = engine.metrics_text().expect("metrics");
        report(
            "scrape",
            t,
            c,
            &format!(",\"bytes\":{},\"stale\":{stale}", text.len()),
        );
        if stale {
            let (t, c) = (Instant::now(), cpu());
            engine.refresh_totals();
            report("refresh_totals", t, c, "");
        }
    }
}
