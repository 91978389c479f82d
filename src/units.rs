//! Typed values parsed at the config/CLI boundary: byte sizes, percentages, durations.
//!
//! Each type deserializes from the human spelling an operator writes in TOML ("200 GiB",
//! "90%", "30m") and reports a precise message when the spelling is wrong; serde attaches
//! the file position.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a size looks like, for error messages.
pub const SIZE_HINT: &str =
    "expected a size like \"500MiB\" (units: B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)";

/// What a duration looks like, for error messages.
pub const DURATION_HINT: &str = "expected a duration like \"10m\" (units: s, m, h, d, w)";

/// What a percentage looks like, for error messages.
pub const PERCENT_HINT: &str = "expected a percentage like \"90%\"";

/// A number of bytes: "512", "200 GiB", "1.5 GB", "64MiB".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

const SIZE_UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("k", 1 << 10),
    ("m", 1 << 20),
    ("g", 1 << 30),
    ("t", 1 << 40),
];

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        let bad = || format!("invalid size {s:?}: {SIZE_HINT}");
        let value: f64 = num.parse().map_err(|_| bad())?;
        let mult = if unit.is_empty() {
            1
        } else {
            SIZE_UNITS
                .iter()
                .find(|(u, _)| *u == unit)
                .map(|(_, m)| *m)
                .ok_or_else(bad)?
        };
        let bytes = value * mult as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(format!("size {s:?} is too large"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, m) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if b >= m {
                let v = b as f64 / m as f64;
                return if b.is_multiple_of(m) {
                    write!(f, "{} {unit}", b / m)
                } else {
                    write!(f, "{v:.1} {unit}")
                };
            }
        }
        write!(f, "{b} B")
    }
}

/// A percentage of a volume, 0–100: "90%".
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Default)]
pub struct Percent(pub f64);

impl FromStr for Percent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let num = t
            .strip_suffix('%')
            .ok_or_else(|| format!("invalid percentage {s:?}: {PERCENT_HINT}"))?;
        let v: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("invalid percentage {s:?}: {PERCENT_HINT}"))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("percentage {s:?} must be between 0% and 100%"));
        }
        Ok(Percent(v))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// A span of time: "30s", "10m", "7d", "1h 30m", "0s".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// No time at all.
    pub const ZERO: Dur = Dur(Duration::ZERO);
}

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t == "0" {
            return Ok(Dur(Duration::ZERO));
        }
        humantime::parse_duration(t)
            .map(Dur)
            .map_err(|e| format!("invalid duration {s:?} ({e}): {DURATION_HINT}"))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fmt_dur(self.0))
    }
}

/// The units a duration is written in, as the config writes them, largest first.
const DUR_UNITS: &[(&str, u128)] = &[
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Writes a duration as the config writes one: "7d", "10m", "1h 30m", "90s" is "1m 30s",
/// "0s". Exact (down to "ns"), and [`Dur`]'s parser reads it back to the same value.
pub fn fmt_dur(d: Duration) -> String {
    let mut left = d.as_nanos();
    if left == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, ns) in DUR_UNITS {
        let n = left / ns;
        if n > 0 {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("{n}{unit}"));
            left %= ns;
        }
    }
    out
}

impl Dur {
    /// The span in nanoseconds, saturating.
    pub fn as_nanos_i64(self) -> i64 {
        i64::try_from(self.0.as_nanos()).unwrap_or(i64::MAX)
    }
}

/// Reads a value written as a string; anything else (a bare number, a boolean) is an
/// error that says what the string should look like: `ttl = 600` → "600 has no unit: expected
/// a duration like \"10m\" …".
struct StrVisitor<T> {
    hint: &'static str,
    /// Suggests a spelling for a bare number ("600s").
    unit: &'static str,
    _t: std::marker::PhantomData<T>,
}

impl<T: FromStr<Err = String>> serde::de::Visitor<'_> for StrVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.hint.trim_start_matches("expected "))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
        Err(E::custom(format!(
            "{v} has no unit: {}; for instance \"{v}{}\"",
            self.hint, self.unit
        )))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_i64(v.min(i64::MAX as u64) as i64)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<T, E> {
        Err(E::custom(format!(
            "{v} has no unit: {}; for instance \"{v}{}\"",
            self.hint, self.unit
        )))
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<T, E> {
        Err(E::custom(format!("{v}: {}", self.hint)))
    }
}

macro_rules! serde_via_str {
    ($t:ty, $hint:expr, $unit:expr) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(StrVisitor {
                    hint: $hint,
                    unit: $unit,
                    _t: std::marker::PhantomData,
                })
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}
serde_via_str!(Percent, PERCENT_HINT, "%");
serde_via_str!(Dur, DURATION_HINT, "s");

// Sizes may also be written as a bare integer of bytes in TOML.
impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(SIZE_HINT.trim_start_matches("expected "))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{v} is negative: {SIZE_HINT}")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "{v} is not a whole number of bytes: {SIZE_HINT}"
                )))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ByteSize, E> {
                Err(E::custom(format!("{v}: {SIZE_HINT}")))
            }
        }
        d.deserialize_any(V)
    }
}
impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// `n` and `word`, in the plural unless `n` is 1: "1 file", "2 files", "3 classes",
/// "0 entries", "2 directories".
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        return format!("1 {word}");
    }
    let vowel = |c: char| "aeiou".contains(c);
    let w = if let Some(stem) = word.strip_suffix('y')
        && !stem.ends_with(vowel)
    {
        format!("{stem}ies")
    } else if ["s", "x", "ch", "sh"].iter().any(|e| word.ends_with(e)) {
        format!("{word}es")
    } else {
        format!("{word}s")
    };
    format!("{n} {w}")
}

/// Nanoseconds since the Unix epoch, the registry's time unit.
pub type Nanos = i64;

/// Formats a timestamp (ns since the epoch) as RFC 3339 UTC, seconds precision.
pub fn fmt_time(t: Nanos) -> String {
    let st = if t >= 0 {
        std::time::UNIX_EPOCH + Duration::from_nanos(t as u64)
    } else {
        std::time::UNIX_EPOCH
    };
    humantime::format_rfc3339_seconds(st).to_string()
}

/// Formats a span of nanoseconds compactly ("2h 5m", "3d 4h"), dropping sub-second noise.
pub fn fmt_span(ns: i64) -> String {
    let secs = (ns.max(0) / 1_000_000_000) as u64;
    let parts = fmt_dur(Duration::from_secs(secs));
    // Keep the two most significant units: "3d 4h 5m 6s" → "3d 4h".
    parts.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

/// A time as JSON shows it: RFC 3339, UTC, milliseconds ("2026-12-03T14:57:04.123Z").
pub fn fmt_time_json(t: Nanos) -> String {
    let st = if t >= 0 {
        std::time::UNIX_EPOCH + Duration::from_nanos(t as u64)
    } else {
        std::time::UNIX_EPOCH
    };
    humantime::format_rfc3339_millis(st).to_string()
}

/// Reads an RFC 3339 time ("2026-11-22T08:00:00Z", "2026-11-22T08:00:00.123+01:00",
/// "2026-11-22 08:00:00Z") to nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Result<Nanos, String> {
    let t = s.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return dt
            .timestamp_nanos_opt()
            .ok_or_else(|| format!("time {s:?} is out of range"));
    }
    // Without an offset ("2026-11-22T08:00:00"): UTC, as `plan --at` always took it.
    humantime::parse_rfc3339_weak(t)
        .map(to_nanos)
        .map_err(|_| bad_time(s))
}

fn bad_time(s: &str) -> String {
    format!("invalid time {s:?}: write it in RFC 3339 like \"2026-11-22T08:00:00Z\"")
}

/// Reads a point in time as `plan --at` and `GET /v1/plan?at=` take it: "now", "+DURATION"
/// ("+2h", "+7d") from `now`, or RFC 3339 ("2026-11-22T08:00:00Z").
pub fn parse_at(s: &str, now: Nanos) -> Result<Nanos, String> {
    let t = s.trim();
    if t == "now" {
        return Ok(now);
    }
    let forms = "write \"now\", a duration from now like \"+2h\" or \"+7d\", or RFC 3339 like \"2026-11-22T08:00:00Z\"";
    if let Some(d) = t.strip_prefix('+') {
        let d: Dur = d
            .parse()
            .map_err(|_| format!("invalid time {s:?}: not a duration after \"+\"; {forms}"))?;
        return Ok(now.saturating_add(d.as_nanos_i64()));
    }
    parse_time(t).map_err(|_| format!("invalid time {s:?}: {forms}"))
}

/// Serde for a time in JSON: RFC 3339 UTC with milliseconds ([`fmt_time_json`]), read
/// back with [`parse_time`]. `#[serde(with = "crate::units::rfc3339")]` on a [`Nanos`].
pub mod rfc3339 {
    use super::*;

    /// Writes `t` as RFC 3339.
    pub fn serialize<S: Serializer>(t: &Nanos, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&fmt_time_json(*t))
    }

    /// Reads RFC 3339.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Nanos, D::Error> {
        let s = String::deserialize(d)?;
        parse_time(&s).map_err(serde::de::Error::custom)
    }
}

/// [`rfc3339`] for an `Option<Nanos>` (`null` when absent).
pub mod rfc3339_opt {
    use super::*;

    /// Writes `t` as RFC 3339, or null.
    pub fn serialize<S: Serializer>(t: &Option<Nanos>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&fmt_time_json(*t)),
            None => s.serialize_none(),
        }
    }

    /// Reads RFC 3339 or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Nanos>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| parse_time(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Serde for a measured span kept as whole milliseconds, written as the config writes a
/// duration ("1s 250ms"). `#[serde(with = "crate::units::millis")]` on a `u64`.
pub mod millis {
    use super::*;

    /// Writes `ms` as a duration.
    pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&fmt_dur(Duration::from_millis(*ms)))
    }

    /// Reads a duration, to whole milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let d = Dur::deserialize(d)?;
        Ok(u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Serde for a measured span kept as whole microseconds, written as a duration ("1ms 500us").
pub mod micros {
    use super::*;

    /// Writes `us` as a duration.
    pub fn serialize<S: Serializer>(us: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&fmt_dur(Duration::from_micros(*us)))
    }

    /// Reads a duration, to whole microseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let d = Dur::deserialize(d)?;
        Ok(u64::try_from(d.0.as_micros()).unwrap_or(u64::MAX))
    }
}

/// [`micros`] for an `Option<u64>`.
pub mod micros_opt {
    use super::*;

    /// Writes `us` as a duration, or null.
    pub fn serialize<S: Serializer>(us: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match us {
            Some(us) => s.serialize_str(&fmt_dur(Duration::from_micros(*us))),
            None => s.serialize_none(),
        }
    }

    /// Reads a duration or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(Option::<Dur>::deserialize(d)?
            .map(|d| u64::try_from(d.0.as_micros()).unwrap_or(u64::MAX)))
    }
}

/// Converts a `std::time::SystemTime` to nanoseconds since the epoch (negative before 1970).
pub fn to_nanos(t: std::time::SystemTime) -> Nanos {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("200 GiB".parse::<ByteSize>().unwrap().0, 200 << 30);
        assert_eq!("1.5GB".parse::<ByteSize>().unwrap().0, 1_500_000_000);
        assert_eq!("512".parse::<ByteSize>().unwrap().0, 512);
        assert_eq!("64 MiB".parse::<ByteSize>().unwrap().0, 64 << 20);
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("GiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(200 << 30).to_string(), "200 GiB");
        assert_eq!(ByteSize(1536).to_string(), "1.5 KiB");
    }

    #[test]
    fn percents() {
        assert_eq!("90%".parse::<Percent>().unwrap().0, 90.0);
        assert!("90".parse::<Percent>().is_err());
        assert!("120%".parse::<Percent>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!("30m".parse::<Dur>().unwrap().0, Duration::from_secs(1800));
        assert_eq!(
            "7d".parse::<Dur>().unwrap().0,
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(
            "1h 30m".parse::<Dur>().unwrap().0,
            Duration::from_secs(5400)
        );
        assert_eq!("0".parse::<Dur>().unwrap().0, Duration::ZERO);
        assert!("soon".parse::<Dur>().is_err());
        assert_eq!(
            fmt_span(3 * 86400 * 1_000_000_000 + 4 * 3600 * 1_000_000_000 + 5),
            "3d 4h"
        );
    }

    #[test]
    fn durations_are_written_as_the_config_writes_them() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(7 * 86400), "7d"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_secs(5400), "1h 30m"),
            (Duration::from_millis(1500), "1s 500ms"),
            (Duration::new(86400 + 1, 2_003_004), "1d 1s 2ms 3us 4ns"),
        ] {
            assert_eq!(Dur(d).to_string(), s);
            assert_eq!(s.parse::<Dur>().unwrap(), Dur(d), "{s}");
        }
        // Every span reads back to itself, whatever its units.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = Duration::new(x % (400 * 86400), (x >> 20) as u32 % 1_000_000_000);
            let d = [
                d,
                Duration::from_secs(d.as_secs()),
                Duration::from_secs(d.as_secs() / 60 * 60),
            ][(x % 3) as usize];
            assert_eq!(Dur(d).to_string().parse::<Dur>().unwrap(), Dur(d));
        }
    }

    #[test]
    fn times() {
        let t = 1_796_225_820_707_117_194;
        assert_eq!(fmt_time_json(t), "2026-12-02T15:37:00.707Z");
        assert_eq!(
            parse_time("2026-12-02T15:37:00.707Z").unwrap(),
            t / 1_000_000 * 1_000_000
        );
        assert_eq!(
            parse_time("2026-12-02T16:37:00.707+01:00").unwrap(),
            t / 1_000_000 * 1_000_000
        );
        assert_eq!(
            parse_time("2026-12-02T15:07:00.707-00:30").unwrap(),
            t / 1_000_000 * 1_000_000
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("1796225820707117194").is_err());
        let now = 1_000_000_000_000;
        assert_eq!(parse_at("now", now).unwrap(), now);
        assert_eq!(parse_at("+2h", now).unwrap(), now + 7200 * 1_000_000_000);
        assert_eq!(
            parse_at("+7d", now).unwrap(),
            now + 7 * 86400 * 1_000_000_000
        );
        assert_eq!(
            parse_at("2026-11-22T08:00:00Z", now).unwrap(),
            1_795_334_400_000_000_000
        );
        for bad in [
            "",
            "+",
            "+soon",
            "tomorrow",
            "2026-13-01T00:00:00Z",
            "1796225820707117194",
        ] {
            assert!(parse_at(bad, now).is_err(), "{bad:?}");
        }
    }
}
