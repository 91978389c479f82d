//! Path → class: the first class of a store whose globs match (and whose excludes don't) wins.
//! Files that match no class are never touched.

use std::path::Path;

use globset::GlobSet;

use crate::config::{self, Config};

/// A class whose globs cannot be compiled (validation rejects such a config first).
#[derive(Debug, thiserror::Error)]
#[error("class {class:?}: its globs cannot be compiled: {source}")]
pub struct ClassifyError {
    /// The class.
    pub class: String,
    /// Why.
    #[source]
    pub source: globset::Error,
}

/// Compiled class globs for every store.
#[derive(Debug, Clone)]
pub struct Classifier {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    store: String,
    class: String,
    include: GlobSet,
    exclude: GlobSet,
    patterns: Vec<String>,
}

/// A match: the class name and the glob that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match<'a> {
    /// The class.
    pub class: &'a str,
    /// The first pattern of the class that matched.
    pub pattern: &'a str,
}

impl Classifier {
    /// Compiles the classes of a config (validation has checked the globs: an error here
    /// means a config that bypassed it, and is reported, never a panic).
    pub fn new(cfg: &Config) -> Result<Classifier, ClassifyError> {
        let rules = cfg
            .classes
            .iter()
            .map(|c| {
                let build = |pats: &[String]| {
                    config::glob_set(pats).map_err(|source| ClassifyError {
                        class: c.name.clone(),
                        source,
                    })
                };
                Ok(Rule {
                    store: c.store.clone(),
                    class: c.name.clone(),
                    include: build(&c.patterns)?,
                    exclude: build(&c.exclude)?,
                    patterns: c.patterns.clone(),
                })
            })
            .collect::<Result<_, ClassifyError>>()?;
        Ok(Classifier { rules })
    }

    /// The class of `rel` (relative to the root of `store`), if any.
    pub fn classify(&self, store: &str, rel: &Path) -> Option<&str> {
        self.explain(store, rel).map(|m| m.class)
    }

    /// The class of `rel` and the pattern that put it there.
    pub fn explain(&self, store: &str, rel: &Path) -> Option<Match<'_>> {
        let cand = globset::Candidate::new(rel);
        self.rules
            .iter()
            .filter(|r| r.store == store)
            .find_map(|r| {
                let hits = r.include.matches_candidate(&cand);
                if hits.is_empty() || r.exclude.is_match_candidate(&cand) {
                    return None;
                }
                Some(Match {
                    class: &r.class,
                    pattern: &r.patterns[hits[0]],
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_wins_and_excludes_apply() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("media")).unwrap();
        let text = format!(
            r#"
[daemon]
state_dir = "{d}/state"
[[store]]
name = "media"
kind = "local"
root = "{d}/media"
[[class]]
name = "tmp"
store = "media"
match = ["tmp/**"]
exclude = ["tmp/keep/**"]
lifecycle = "temporary"
ttl = "30m"
[[class]]
name = "hls"
store = "media"
match = ["hls/**/*.ts", "hls/**/*.m4s"]
lifecycle = "segment"
keep_for = "2m"
[[class]]
name = "all-ts"
store = "media"
match = ["**/*.ts"]
lifecycle = "recording"
"#,
            d = dir.path().display()
        );
        let cfg = Config::parse(&dir.path().join("c.toml"), &text).unwrap();
        let c = Classifier::new(&cfg).unwrap();
        assert_eq!(c.classify("media", Path::new("tmp/a/b.bin")), Some("tmp"));
        assert_eq!(
            c.classify("media", Path::new("tmp/keep/b.ts")),
            Some("all-ts")
        );
        assert_eq!(c.classify("media", Path::new("hls/s1/1.ts")), Some("hls"));
        assert_eq!(c.classify("media", Path::new("hls/1.m4s")), Some("hls"));
        assert_eq!(c.classify("media", Path::new("x/1.ts")), Some("all-ts"));
        assert_eq!(c.classify("media", Path::new("x/1.mp4")), None);
        assert_eq!(c.classify("other", Path::new("tmp/a")), None);
        let m = c.explain("media", Path::new("hls/s/2.m4s")).unwrap();
        assert_eq!(m.pattern, "hls/**/*.m4s");
    }
}
