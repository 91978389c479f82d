//! The `mediaretain` binary: parse the command line, set up logging, dispatch, and map
//! failures to sysexits codes. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use mediaretain::cli::{self, Cli, Cmd};
use mediaretain::{exit, logging};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    // Everything we create — state directory, registry, lock, socket, staging — is ours
    // alone unless we say otherwise, whatever umask we were started with. `fetch` writes
    // the operator's file and keeps the operator's umask, and so does `generate` (files
    // to package). Set before any thread exists.
    if !matches!(cli.cmd, Cmd::Fetch { .. } | Cmd::Generate { .. }) {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
    // The daemon logs from info, one-shot commands from warn; -v raises, -q lowers.
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "trace"];
    let base: i8 = if matches!(cli.cmd, Cmd::Run) { 2 } else { 1 };
    let level = (base + cli.verbosity()).clamp(0, 5) as usize;
    logging::init(LEVELS[level]);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mediaretain: cannot start the runtime: {e}");
            return ExitCode::from(exit::SOFTWARE);
        }
    };
    let daemon = matches!(cli.cmd, Cmd::Run);
    let result = rt.block_on(cli::run(cli));
    // Network work abandoned at shutdown must not keep the process alive.
    rt.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // Under systemd a daemon's fatal error goes to the journal at err: stderr lines
            // land there at info, where `journalctl -p warning` never shows why it stopped.
            if daemon && logging::stderr_is_journal() {
                tracing::error!(exit = f.code, "exiting: {}", f.message);
                return ExitCode::from(f.code);
            }
            for line in f.message.lines() {
                eprintln!("mediaretain: {line}");
            }
            ExitCode::from(f.code)
        }
    }
}
