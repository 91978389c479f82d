//! The order in which the disk-pressure watchdog frees space (DESIGN.md): expired temporary
//! files → other temporary files past their class's `min_keep` → segments → files with a
//! verified remote copy (offload classes) → recordings past their class's `min_keep`; within a tier, classes with a lower `pressure_priority` first,
//! and oldest first across the classes of one priority. Retained files and files still being
//! written are never candidates; the executor re-checks every other in-use signal per file.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{Class, Lifecycle};
use crate::registry::Entry;
use crate::units::{Nanos, fmt_span, fmt_time};

/// A pressure tier, freed in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Temporary files past their ttl (the regular pass would take them anyway).
    ExpiredTemporary,
    /// Temporary files past their class's `min_keep`.
    Temporary,
    /// Segments past their class's `min_keep` (0s unless set).
    Segment,
    /// Local files whose remote copy is verified (offload classes), any age.
    Offloaded,
    /// Recordings past their class's `min_keep` (only classes that set it).
    Recording,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::ExpiredTemporary => "tier 1 (expired temporary files)",
            Tier::Temporary => "tier 2 (temporary files past min_keep)",
            Tier::Segment => "tier 3 (segments)",
            Tier::Offloaded => "tier 4 (files with a verified remote copy)",
            Tier::Recording => "tier 5 (recordings past min_keep)",
        })
    }
}

/// The tiers the files of `class` fall into at `now`, each with the range `[lo, hi)` of age
/// references it covers (an empty range covers nothing) and whether it takes only files with
/// a verified remote copy: expired temporary files, offloaded files, then files older than
/// `now - min_keep`.
pub fn class_tiers(class: &Class, now: Nanos) -> Vec<(Tier, Nanos, Nanos, bool)> {
    let mut tiers = Vec::new();
    if let Some(o) = &class.offload {
        tiers.push((Tier::Offloaded, Nanos::MIN, Nanos::MAX, true));
        if !o.free_uncopied_under_pressure {
            // Offload before delete, under pressure too: only files with a copy.
            return tiers;
        }
    }
    let Some(min_keep) = class.pressure_min_keep() else {
        return tiers;
    };
    let hi = now.saturating_sub(min_keep.as_nanos_i64());
    match class.lifecycle {
        Lifecycle::Temporary => {
            // Expired files go whatever min_keep says: the regular pass takes them anyway.
            let expired = class
                .ttl
                .map_or(Nanos::MIN, |t| now.saturating_sub(t.as_nanos_i64()));
            tiers.push((Tier::ExpiredTemporary, Nanos::MIN, expired, false));
            tiers.push((Tier::Temporary, expired, hi, false));
        }
        Lifecycle::Segment => tiers.push((Tier::Segment, Nanos::MIN, hi, false)),
        Lifecycle::Recording => tiers.push((Tier::Recording, Nanos::MIN, hi, false)),
    }
    tiers
}

/// Whether disk pressure may free `e` of `class` at `now`: its tier, or why not. The
/// executor's per-file in-use checks come on top.
pub fn eligibility(class: &Class, e: &Entry, now: Nanos) -> Result<Tier, String> {
    if e.retained {
        return Err("retained: never freed".into());
    }
    if e.being_written(class.quiet_period.as_nanos_i64(), now) {
        return Err("in use: still being written".into());
    }
    if let Some(o) = &class.offload {
        if e.copy.is_some() {
            return Ok(Tier::Offloaded);
        }
        if !o.free_uncopied_under_pressure {
            return Err(format!(
                "not while it has no verified copy in {} (offload before delete; free_uncopied_under_pressure is off)",
                o.to
            ));
        }
    }
    let Some(min_keep) = class.pressure_min_keep() else {
        return Err(format!(
            "never: class {} is a recording class without min_keep",
            class.name
        ));
    };
    let age_ref = e.age_ref(class.age_from);
    let age = now.saturating_sub(age_ref);
    for (tier, lo, hi, copied) in class_tiers(class, now) {
        if !copied && (lo..hi).contains(&age_ref) {
            return Ok(tier);
        }
    }
    Err(format!(
        "not yet: younger than min_keep {min_keep} (age {}; eligible from {})",
        fmt_span(age),
        fmt_time(age_ref.saturating_add(min_keep.as_nanos_i64()))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const MIN: Nanos = 60_000_000_000;

    fn classes() -> Config {
        let text = r#"
            [daemon]
            state_dir = "/var/lib/mediaretain"
            [[store]]
            name = "m"
            kind = "local"
            root = "/srv/media"
            [[class]]
            name = "tmp"
            store = "m"
            match = ["tmp/**"]
            lifecycle = "temporary"
            ttl = "30m"
            [[class]]
            name = "hls"
            store = "m"
            match = ["hls/**"]
            lifecycle = "segment"
            keep_for = "1h"
            quiet_period = "10s"
            [[class]]
            name = "rec"
            store = "m"
            match = ["rec/**"]
            lifecycle = "recording"
            [[class]]
            name = "nvr"
            store = "m"
            match = ["nvr/**"]
            lifecycle = "recording"
            min_keep = "1d"
        "#;
        Config::parse_with(std::path::Path::new("t.toml"), text, false).unwrap()
    }

    fn entry(path: &str, age: Nanos, now: Nanos) -> Entry {
        Entry {
            id: 1,
            store: "m".into(),
            path: path.into(),
            size: 1,
            mtime: now - age,
            ino: 1,
            first_seen: now - age,
            class: None,
            retained: false,
            copy: None,
            complete: None,
            tags: vec![],
            in_use: vec![],
        }
    }

    #[test]
    fn tiers_in_order_with_their_protections() {
        let c = classes();
        let now = 1_000_000 * MIN;
        let class = |n: &str| c.class(n).unwrap();
        let e = |p, age| entry(p, age, now);
        assert_eq!(
            eligibility(class("tmp"), &e("tmp/a", 40 * MIN), now),
            Ok(Tier::ExpiredTemporary)
        );
        assert_eq!(
            eligibility(class("tmp"), &e("tmp/a", 6 * MIN), now),
            Ok(Tier::Temporary)
        );
        // Default min_keep of temporary files: 5 minutes.
        assert!(
            eligibility(class("tmp"), &e("tmp/a", 4 * MIN), now)
                .unwrap_err()
                .contains("min_keep 5m")
        );
        assert_eq!(
            eligibility(class("hls"), &e("hls/s.ts", MIN), now),
            Ok(Tier::Segment)
        );
        assert!(
            eligibility(class("hls"), &e("hls/s.ts", MIN / 60), now)
                .unwrap_err()
                .contains("being written")
        );
        assert!(
            eligibility(class("rec"), &e("rec/a.mp4", 1000 * MIN), now)
                .unwrap_err()
                .contains("without min_keep")
        );
        assert!(eligibility(class("nvr"), &e("nvr/a.mp4", 60 * MIN), now).is_err());
        assert_eq!(
            eligibility(class("nvr"), &e("nvr/a.mp4", 2000 * MIN), now),
            Ok(Tier::Recording)
        );
        let mut pinned = e("tmp/a", 40 * MIN);
        pinned.retained = true;
        assert!(
            eligibility(class("tmp"), &pinned, now)
                .unwrap_err()
                .starts_with("retained")
        );
        assert!(Tier::ExpiredTemporary < Tier::Temporary && Tier::Segment < Tier::Offloaded);
        assert!(Tier::Offloaded < Tier::Recording);
        assert!(class_tiers(class("rec"), now).is_empty());
        // An offload class: a file with a verified copy goes in tier 4, whatever its age.
        let mut offloading = class("rec").clone();
        offloading.offload = Some(crate::config::Offload {
            to: "archive".into(),
            after: crate::units::Dur::ZERO,
            delete_local: false,
            free_uncopied_under_pressure: false,
        });
        let mut copied = e("rec/a.mp4", MIN);
        assert!(
            eligibility(&offloading, &copied, now).is_err(),
            "no copy, no min_keep"
        );
        copied.copy = Some("archive:rec/a.mp4".into());
        assert_eq!(eligibility(&offloading, &copied, now), Ok(Tier::Offloaded));
        assert!(class_tiers(&offloading, now)[0].3, "copied only");
        // With min_keep, still nothing without a copy (offload before delete)…
        offloading.min_keep = Some(crate::units::Dur::ZERO);
        let old = e("rec/b.mp4", 1000 * MIN);
        assert!(
            eligibility(&offloading, &old, now)
                .unwrap_err()
                .contains("no verified copy")
        );
        assert_eq!(class_tiers(&offloading, now).len(), 1, "copied only");
        // …unless the class says so.
        offloading
            .offload
            .as_mut()
            .unwrap()
            .free_uncopied_under_pressure = true;
        assert_eq!(eligibility(&offloading, &old, now), Ok(Tier::Recording));
        assert_eq!(class_tiers(&offloading, now).len(), 2);
    }
}
