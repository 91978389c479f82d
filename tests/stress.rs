//! Stress: many workers open, lock and lease files and let them go, while the daemon runs
//! the most aggressive rules there are (ttl 0, no quiet period) for a bounded time. A file
//! a worker holds must never disappear; every file let go must eventually be deleted.

mod common;
use common::*;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WORKERS: u64 = 24;
const RUN_FOR: Duration = Duration::from_secs(6);

/// A tiny deterministic generator (xorshift), one per worker.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn held_files_are_never_deleted_and_released_ones_always_are() {
    let classes = "[[class]]\nname = \"s\"\nstore = \"media\"\nmatch = [\"s/**\"]\nlifecycle = \"temporary\"\nttl = \"0s\"\nquiet_period = \"0s\"\n";
    let b = Arc::new(Box_::new(
        "gc_interval = \"1s\"\nmax_delete_per_pass = { files = 1000000 }",
        "",
        classes,
    ));
    fs::create_dir_all(b.path("s")).unwrap();
    let d = b.daemon(None);
    let wrongful = Arc::new(Mutex::new(Vec::<String>::new()));
    let held = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + RUN_FOR;
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (b, wrongful, held) = (b.clone(), wrongful.clone(), held.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1));
                let mut n = 0;
                while Instant::now() < deadline {
                    n += 1;
                    let rel = format!("s/w{w}-{n}.bin");
                    let path = b.path(&rel);
                    let hold = Duration::from_millis(rng.next() % 120);
                    let mode = rng.next() % 3;
                    let lease = (mode == 2).then(|| {
                        let out = b
                            .cli(&[
                                "lease",
                                &format!("media:{rel}"),
                                "--ttl",
                                "60s",
                                "--holder",
                                "stress",
                            ])
                            .ok();
                        out.stdout.trim().to_string()
                    });
                    // Created open: protected from its first instant (or leased before it exists).
                    let f = fs::File::create(&path).unwrap();
                    let ino = f.metadata().unwrap().ino();
                    if mode == 1 {
                        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).unwrap();
                    }
                    let f = if mode == 2 {
                        drop(f);
                        None
                    } else {
                        Some(f)
                    };
                    held.fetch_add(1, Ordering::Relaxed);
                    let until = Instant::now() + hold;
                    while Instant::now() < until {
                        let ok = fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == ino);
                        if !ok {
                            wrongful
                                .lock()
                                .unwrap()
                                .push(format!("{rel} (mode {mode}) vanished while held"));
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    drop(f);
                    if let Some(id) = lease {
                        b.cli(&["release", &id]).ok();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let wrongful = wrongful.lock().unwrap().clone();
    assert!(
        wrongful.is_empty(),
        "{} wrongful deletions: {wrongful:?}",
        wrongful.len()
    );
    let held = held.load(Ordering::Relaxed);
    assert!(held > 200, "the workers only managed {held} holds");
    // Everything let go is unprotected now: the daemon must take all of it.
    wait_for(
        "every released file to be deleted",
        Duration::from_secs(30),
        || fs::read_dir(b.path("s")).unwrap().count() == 0,
    );
    let (code, log) = d.stop();
    assert_eq!(code, 0);
    let refused = log.matches("refused to delete").count();
    eprintln!("{held} holds, {refused} refusals while held");
}
