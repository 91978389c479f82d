//! Every `curl` command of README.md and of the manual in docs/, run exactly as written
//! against a real daemon; and docs/api.md's table of endpoints against the daemon's routes.
//!
//! The commands are found, not listed: each command of a fenced code block that calls
//! `curl` (a line ending in `\` continues it; `# …` lines are comments), and each inline
//! code span that starts with `curl ` and names a URL. A code block's commands run in one
//! bash, in order, so a later command sees what an earlier one set (`id=$(curl … | jq .id)`),
//! with `MEDIARETAIN_SOCKET` pointing at the test daemon's socket and `pipefail` set.
//!
//! The command text is not changed. `curl` is wrapped in a shell function that only adds
//! `-w '%{stderr}…%{http_code}'`: each HTTP status goes to stderr, stdout stays as the
//! reader sees it. Each command must exit 0, every request it makes must answer 2xx, and
//! what it prints must be JSON (`/metrics`: the Prometheus text format); a command that
//! assigns its output to a variable prints nothing, and a later command using it shows
//! whether it was right.
//!
//! The daemon's box has what the examples name: a store `media`, classes `recordings` and
//! `hls`, `rec/show.mp4`, `hls/stream1/` and `record/live/cam1/2024-05-01/`.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One command of a page and where it is.
#[derive(Debug)]
struct Example {
    page: String,
    line: usize,
    text: String,
}

/// README.md and every page of docs/, as (name, text).
fn pages() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(root.join(&n)).unwrap();
            (n, text)
        })
        .collect()
}

/// A page's `curl` commands, grouped: one group per code block (run in one shell), one per
/// inline example.
fn examples(page: &str, readme: &str) -> Vec<Vec<Example>> {
    let mut groups = Vec::new();
    let mut block: Option<Vec<Example>> = None;
    let mut pending: Option<Example> = None;
    for (i, line) in readme.lines().enumerate() {
        let n = i + 1;
        if line.trim_start().starts_with("```") {
            match block.take() {
                Some(b) => {
                    if !b.is_empty() {
                        groups.push(b);
                    }
                }
                None => block = Some(Vec::new()),
            }
            pending = None;
            continue;
        }
        match &mut block {
            Some(b) => {
                let (cont, body) = match line.strip_suffix('\\') {
                    Some(l) => (true, l),
                    None => (false, line),
                };
                let cmd = match pending.take() {
                    Some(mut p) => {
                        p.text.push_str(" \\\n");
                        p.text.push_str(body);
                        p
                    }
                    None => Example {
                        page: page.to_string(),
                        line: n,
                        text: body.to_string(),
                    },
                };
                if cont {
                    pending = Some(cmd);
                } else if !cmd.text.trim_start().starts_with('#') && calls_curl(&cmd.text) {
                    b.push(cmd);
                }
            }
            None => {
                for (k, span) in line.split('`').enumerate() {
                    if k % 2 == 1 && span.starts_with("curl ") && span.contains("://") {
                        groups.push(vec![Example {
                            page: page.to_string(),
                            line: n,
                            text: span.to_string(),
                        }]);
                    }
                }
            }
        }
    }
    groups
}

/// Whether a shell command runs curl (as a word, not inside another word).
fn calls_curl(cmd: &str) -> bool {
    cmd.match_indices("curl ").any(|(i, _)| {
        i == 0
            || matches!(
                cmd.as_bytes()[i - 1],
                b' ' | b'(' | b'|' | b';' | b'&' | b'\t'
            )
    })
}

/// What one command did.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    statuses: Vec<u16>,
}

/// Runs a group of commands in one bash; returns each command's outcome.
fn run_group(group: &[Example], socket: &Path, cwd: &Path) -> Vec<Outcome> {
    let mut script = String::from(
        "set -o pipefail\ncurl() { command curl -w '%{stderr}\\n@@HTTP %{http_code}\\n' \"$@\"; }\n",
    );
    for (i, e) in group.iter().enumerate() {
        script.push_str(&format!(
            "printf '\\n@@CMD {i}\\n'; printf '\\n@@CMD {i}\\n' >&2\n{}\nprintf '\\n@@RC {i} %d\\n' $?\n",
            e.text
        ));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(cwd)
        .env("MEDIARETAIN_SOCKET", socket)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (0..group.len())
        .map(|i| {
            let section = |all: &str| -> String {
                let start = format!("\n@@CMD {i}\n");
                let Some(s) = all.find(&start) else {
                    return String::new();
                };
                let rest = &all[s + start.len()..];
                let end = [format!("\n@@RC {i} "), format!("\n@@CMD {}\n", i + 1)]
                    .iter()
                    .filter_map(|m| rest.find(m.as_str()))
                    .min()
                    .unwrap_or(rest.len());
                rest[..end].to_string()
            };
            let code = stdout
                .split(&format!("\n@@RC {i} "))
                .nth(1)
                .and_then(|r| r.lines().next())
                .and_then(|c| c.trim().parse().ok());
            let statuses = section(&stderr)
                .lines()
                .filter_map(|l| l.strip_prefix("@@HTTP "))
                .filter_map(|c| c.trim().parse().ok())
                .collect();
            Outcome {
                code,
                stdout: section(&stdout),
                statuses,
            }
        })
        .collect()
}

const CLASSES: &str = r#"
[[class]]
name = "recordings"
store = "media"
match = ["rec/**/*.mp4", "record/**/*.mp4"]
lifecycle = "recording"
keep_for = "7d"

[[class]]
name = "hls"
store = "media"
match = ["hls/**/*.ts"]
lifecycle = "segment"
keep_for = "2m"
"#;

#[test]
fn every_curl_example_of_the_readme_and_the_manual_runs_as_written() {
    let groups: Vec<Vec<Example>> = pages()
        .iter()
        .flat_map(|(name, text)| examples(name, text))
        .collect();
    let count: usize = groups.iter().map(Vec::len).sum();
    // docs/api.md alone has more than a dozen: finding fewer means the extraction broke, not
    // that the examples went away.
    assert!(count >= 15, "found only {count} curl commands: {groups:#?}");

    let b = Box_::new("", "", CLASSES);
    let hour = Duration::from_secs(3600);
    b.file("rec/show.mp4", 4096, hour);
    b.file("hls/stream1/seg1.ts", 1024, Duration::ZERO);
    b.file("record/live/cam1/2024-05-01/10-00-00.mp4", 4096, hour);
    b.file("record/live/cam1/2024-05-01/11-00-00.mp4", 4096, hour);
    let d = b.daemon(None);
    let socket = b.state().join("control.sock");

    let mut failures = Vec::new();
    for group in &groups {
        let outcomes = run_group(group, &socket, b.dir.path());
        for (e, o) in group.iter().zip(&outcomes) {
            let mut why = Vec::new();
            if o.code != Some(0) {
                why.push(format!("exit status {:?}", o.code));
            }
            if o.statuses.is_empty() {
                why.push("made no HTTP request".to_string());
            }
            if let Some(s) = o.statuses.iter().find(|s| !(200..300).contains(*s)) {
                why.push(format!("HTTP {s}"));
            }
            let out = o.stdout.trim();
            let assigns = e
                .text
                .split_once("=$(")
                .is_some_and(|(v, _)| v.chars().all(|c| c.is_alphanumeric() || c == '_'));
            if e.text.contains("/metrics") {
                if !out.contains("# TYPE mediaretain_") {
                    why.push("no Prometheus metrics in the answer".into());
                }
            } else if !assigns {
                if out.is_empty() {
                    why.push("printed nothing".into());
                } else if let Err(err) = serde_json::from_str::<serde_json::Value>(out) {
                    why.push(format!("answer is not JSON ({err})"));
                }
            }
            if !why.is_empty() {
                failures.push(format!(
                    "{}:{}: {}\n    {}\n    stdout: {}",
                    e.page,
                    e.line,
                    why.join("; "),
                    e.text,
                    out.chars().take(400).collect::<String>()
                ));
            }
        }
    }
    let (_, log) = d.stop();
    assert!(
        failures.is_empty(),
        "{} of {count} curl commands of the README and docs/ failed:\n{}\ndaemon log:\n{log}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn extraction_finds_block_continued_and_inline_commands() {
    let md = "intro `curl -d` and `curl --unix-socket \"$S\" http://x/metrics` here\n\
              ```sh\n\
              # curl http://x/commented\n\
              S=1\n\
              id=$(curl -s \\\n  -d '{}' \\\n  http://x/v1/lease | jq .id)\n\
              echo done; curl http://x/v1/leases\n\
              ```\n\
              ```\nno commands\n```\n";
    let g = examples("t.md", md);
    assert_eq!(g.len(), 2, "{g:#?}");
    assert_eq!(g[0].len(), 1);
    assert!(g[0][0].text.ends_with("/metrics"));
    assert_eq!(g[1].len(), 2);
    assert_eq!(g[1][0].line, 5);
    assert!(g[1][0].text.contains("http://x/v1/lease | jq .id)"));
    assert!(g[1][1].text.starts_with("echo done; curl"));
}

/// docs/api.md's table of endpoints names exactly the daemon's routes (read from the
/// router's source, where each is one `.route("PATH", METHOD(handler))`).
#[test]
fn the_api_page_lists_every_route_of_the_control_socket() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let server = std::fs::read_to_string(root.join("src/control/server.rs")).unwrap();
    let mut routes: Vec<String> = server
        .lines()
        .filter_map(|l| l.trim().strip_prefix(".route(\""))
        .filter_map(|l| {
            let (path, rest) = l.split_once('"')?;
            let method = rest.trim_start_matches(", ").split('(').next()?;
            Some(format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    routes.sort();
    assert!(
        routes.len() >= 15,
        "routes not found in server.rs: {routes:?}"
    );
    let page = std::fs::read_to_string(root.join("docs/api.md")).unwrap();
    let mut listed: Vec<String> = Vec::new();
    for row in page.lines().filter_map(|l| l.strip_prefix("| `")) {
        let cell = row.split('`').next().unwrap_or("");
        let Some((method, paths)) = cell.split_once(' ') else {
            continue;
        };
        if !matches!(method, "GET" | "POST") {
            continue;
        }
        // "POST /v1/renew`, `/v1/release": more paths follow in the same cell.
        let first = paths.split(' ').next().unwrap_or("").to_string();
        listed.push(format!("{method} {first}"));
        let cell_all = row.split(" |").next().unwrap_or("");
        for (i, more) in cell_all.split('`').enumerate() {
            // The row's first backtick was stripped: code spans are the even pieces.
            if i > 0 && i % 2 == 0 && more.starts_with('/') {
                listed.push(format!("{method} {more}"));
            }
        }
    }
    listed.sort();
    listed.dedup();
    assert_eq!(
        listed, routes,
        "docs/api.md's table of endpoints differs from the routes of src/control/server.rs"
    );
}

/// Every relative link of the README and of docs/ names a file that exists, and every
/// `#anchor` one of its headings (GitHub's spelling: lower case, spaces as `-`, most
/// punctuation dropped).
#[test]
fn every_link_of_the_readme_and_the_manual_leads_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let anchor_of = |heading: &str| -> String {
        heading
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect()
    };
    let anchors = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with('#'))
            .map(|l| anchor_of(l.trim_start_matches('#')))
            .collect()
    };
    let mut broken = Vec::new();
    for (name, text) in pages() {
        let base = root.join(&name);
        let dir = base.parent().unwrap();
        for (n, line) in text.lines().enumerate() {
            for (_, rest) in line.match_indices("](").map(|(i, _)| ((), &line[i + 2..])) {
                let Some(target) = rest.split(')').next() else {
                    continue;
                };
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = match target.split_once('#') {
                    Some((f, a)) => (f, Some(a)),
                    None => (target, None),
                };
                let path = if file.is_empty() {
                    base.clone()
                } else {
                    dir.join(file)
                };
                if !path.exists() {
                    broken.push(format!("{name}:{}: {target}: no such file", n + 1));
                    continue;
                }
                if let Some(a) = anchor {
                    let t = std::fs::read_to_string(&path).unwrap_or_default();
                    if !anchors(&t).iter().any(|h| h == a) {
                        broken.push(format!("{name}:{}: {target}: no such heading", n + 1));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
