//! docs/configuration.md against the config model: every key the model accepts is
//! documented, and every documented key is accepted — both ways, per TOML table.
//!
//! The model's keys are asked of the model itself: a probe with an unknown key in a table
//! makes serde name every field that table has (`expected one of …`).

use std::collections::{BTreeMap, BTreeSet};

use super::raw;

/// A TOML document that puts the unknown key `zz_probe` into one table.
const PROBES: &[(&str, &str)] = &[
    ("", "zz_probe = 1\n[daemon]\nstate_dir = \"/s\"\n"),
    ("[daemon]", "[daemon]\nstate_dir = \"/s\"\nzz_probe = 1\n"),
    (
        "[daemon] max_delete_per_pass",
        "[daemon]\nstate_dir = \"/s\"\nmax_delete_per_pass = { zz_probe = 1 }\n",
    ),
    (
        "[[store]]",
        "[daemon]\nstate_dir = \"/s\"\n[[store]]\nname = \"a\"\nkind = \"local\"\nzz_probe = 1\n",
    ),
    (
        "[[class]]",
        "[daemon]\nstate_dir = \"/s\"\n[[class]]\nname = \"a\"\nzz_probe = 1\n",
    ),
    (
        "[[class]] offload",
        "[daemon]\nstate_dir = \"/s\"\n[[class]]\nname = \"a\"\noffload = { zz_probe = 1 }\n",
    ),
    (
        "[watchdog]",
        "[daemon]\nstate_dir = \"/s\"\n[watchdog]\nzz_probe = 1\n",
    ),
    (
        "[[watchdog.volume]]",
        "[daemon]\nstate_dir = \"/s\"\n[[watchdog.volume]]\npath = \"/\"\nzz_probe = 1\n",
    ),
    (
        "[hooks]",
        "[daemon]\nstate_dir = \"/s\"\n[hooks]\nzz_probe = 1\n",
    ),
    (
        "[hooks.<dialect>]",
        "[daemon]\nstate_dir = \"/s\"\n[hooks.srs]\nzz_probe = 1\n",
    ),
    (
        "[metrics]",
        "[daemon]\nstate_dir = \"/s\"\n[metrics]\nzz_probe = 1\n",
    ),
    (
        "[dedupe]",
        "[daemon]\nstate_dir = \"/s\"\n[dedupe]\nzz_probe = 1\n",
    ),
];

/// The fields serde names for the unknown key of `probe`.
fn model_keys(probe: &str) -> BTreeSet<String> {
    let err = match toml::from_str::<raw::File>(probe) {
        Ok(_) => panic!("the probe was accepted:\n{probe}"),
        Err(e) => e.message().to_string(),
    };
    let list = err
        .split_once("expected one of ")
        .or_else(|| err.split_once("expected "))
        .unwrap_or_else(|| panic!("no field list in {err:?} for\n{probe}"))
        .1;
    list.replace(" or ", ", ")
        .split(", ")
        .map(|k| k.trim().trim_matches('`').to_string())
        .filter(|k| !k.is_empty())
        .collect()
}

/// The page's keys per table: a `## \`[table]\`` (or `###`) heading opens a table; each row
/// of its key table names one or more keys in backticks in its first cell.
fn documented(page: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut table: Option<String> = None;
    for line in page.lines() {
        if let Some(h) = line
            .strip_prefix("## ")
            .or_else(|| line.strip_prefix("### "))
        {
            table = h
                .strip_prefix('`')
                .and_then(|h| h.strip_suffix('`'))
                .map(str::to_string);
            if let Some(t) = &table {
                out.entry(t.clone()).or_default();
            }
            continue;
        }
        let (Some(t), Some(row)) = (&table, line.strip_prefix("| `")) else {
            continue;
        };
        let cell = row.split(" |").next().unwrap_or("");
        let keys = format!("`{cell}");
        for (i, k) in keys.split('`').enumerate() {
            if i % 2 == 1 {
                out.get_mut(t).unwrap().insert(k.to_string());
            }
        }
    }
    out
}

#[test]
fn every_config_key_is_documented_and_every_documented_key_exists() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let page = std::fs::read_to_string(&path).unwrap();
    let docs = documented(&page);
    let mut problems = Vec::new();
    for (table, probe) in PROBES {
        let model = model_keys(probe);
        if table.is_empty() {
            // The top level's keys are the tables themselves: each has a section.
            for k in &model {
                let named = docs
                    .keys()
                    .any(|t| t.trim_matches(['[', ']']).split(['.', ' ']).next() == Some(k));
                if !named {
                    problems.push(format!("table [{k}] has no section"));
                }
            }
            continue;
        }
        let Some(doc) = docs.get(*table) else {
            problems.push(format!("no section `{table}`"));
            continue;
        };
        for k in model.difference(doc) {
            problems.push(format!(
                "{table} {k}: accepted by the config, not documented"
            ));
        }
        for k in doc.difference(&model) {
            problems.push(format!(
                "{table} {k}: documented, not accepted by the config"
            ));
        }
    }
    for t in docs.keys() {
        if !PROBES.iter().any(|(p, _)| p == t) {
            problems.push(format!("section `{t}` is no table of the config"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} disagrees with the config model:\n{}",
        path.display(),
        problems.join("\n")
    );
}

#[test]
fn the_probe_names_a_tables_fields() {
    let keys = model_keys(PROBES[1].1);
    assert!(
        keys.contains("state_dir") && keys.contains("clock_hold"),
        "{keys:?}"
    );
}
