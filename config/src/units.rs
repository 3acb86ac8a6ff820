//! Go-style durations and byte sizes as the OTel Collector writes them.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};

const NANOS_PER_UNIT: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000), // U+00B5 MICRO SIGN
    ("μs", 1_000), // U+03BC GREEK SMALL LETTER MU
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// A duration written Go-style: `200ms`, `5s`, `1h30m`, `1.5s`, `300us`, `10ns`; `0` is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// `secs` whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

/// Splits leading decimal digits with an optional fraction: (whole, fraction digits, rest).
fn split_number(s: &str) -> (&str, &str, &str) {
    let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (int, rest) = s.split_at(int_end);
    match rest.strip_prefix('.') {
        Some(after) => {
            let frac_end = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            (int, &after[..frac_end], &after[frac_end..])
        }
        None => (int, "", rest),
    }
}

/// `whole.frac * unit`, truncated to an integer; `None` on overflow.
fn scaled(whole: &str, frac: &str, unit: u128) -> Option<u128> {
    let w: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut total = w.checked_mul(unit)?;
    // Digits past 18 cannot change the result for any unit used here.
    let frac = &frac[..frac.len().min(18)];
    if !frac.is_empty() {
        let f: u128 = frac.parse().ok()?;
        let scale = 10u128.pow(frac.len() as u32);
        total = total.checked_add(f * unit / scale)?;
    }
    Some(total)
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let s = text.trim();
        let bad = |why: &str| format!("invalid duration `{text}`: {why}");
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        if s == "0" {
            return Ok(Duration::default());
        }
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let mut rest = s;
        let mut nanos: u128 = 0;
        while !rest.is_empty() {
            let (whole, frac, after) = split_number(rest);
            if whole.is_empty() && frac.is_empty() {
                return Err(bad("expected a number such as `5s` or `200ms`"));
            }
            let unit_end = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let unit = &after[..unit_end];
            if unit.is_empty() {
                return Err(if rest == s {
                    bad("a unit is needed, e.g. `5s`, `200ms` or `1m`")
                } else {
                    bad("missing unit after the last number")
                });
            }
            let Some(&(_, per)) = NANOS_PER_UNIT.iter().find(|(u, _)| *u == unit) else {
                return Err(bad(&format!(
                    "unknown unit `{unit}` (use ns, us, ms, s, m or h)"
                )));
            };
            nanos = scaled(whole, frac, per)
                .and_then(|n| nanos.checked_add(n))
                .ok_or_else(|| bad("too large"))?;
            rest = &after[unit_end..];
        }
        if negative && nanos != 0 {
            return Err(bad("must not be negative"));
        }
        let nanos = u64::try_from(nanos).map_err(|_| bad("too large"))?;
        Ok(Duration(std::time::Duration::from_nanos(nanos)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.as_nanos();
        if total == 0 {
            return f.write_str("0s");
        }
        const SEC: u128 = 1_000_000_000;
        if total < SEC {
            return if total.is_multiple_of(1_000_000) {
                write!(f, "{}ms", total / 1_000_000)
            } else if total.is_multiple_of(1_000) {
                write!(f, "{}us", total / 1_000)
            } else {
                write!(f, "{total}ns")
            };
        }
        let hours = total / (3600 * SEC);
        let minutes = total / (60 * SEC) % 60;
        let sub_minute = total % (60 * SEC);
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        if sub_minute > 0 {
            let secs = sub_minute / SEC;
            let frac = sub_minute % SEC;
            if frac == 0 {
                write!(f, "{secs}s")?;
            } else {
                let digits = format!("{frac:09}");
                write!(f, "{secs}.{}s", digits.trim_end_matches('0'))?;
            }
        }
        Ok(())
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as `5s`, `200ms` or `1h30m`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        if v == 0 {
            Ok(Duration::default())
        } else {
            Err(E::custom(format!(
                "invalid duration `{v}`: a unit is needed, e.g. `{v}s` or `{v}ms`"
            )))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        match u64::try_from(v) {
            Ok(u) => self.visit_u64(u),
            Err(_) => Err(E::custom(format!(
                "invalid duration `{v}`: must not be negative"
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        if v == 0.0 {
            Ok(Duration::default())
        } else {
            Err(E::custom(format!(
                "invalid duration `{v}`: a unit is needed, e.g. `{v}s`"
            )))
        }
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

/// A byte count: a bare integer is bytes; `20MiB`, `512KiB`, `1GiB` are binary,
/// `20MB` decimal; fractions (`1.5MiB`), case-insensitive units and a space are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct ByteSize(pub u64);

const BYTE_UNITS: &[(&str, u128)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1_000),
    ("kb", 1_000),
    ("ki", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1_000_000),
    ("mb", 1_000_000),
    ("mi", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1_000_000_000),
    ("gb", 1_000_000_000),
    ("gi", 1 << 30),
    ("gib", 1 << 30),
    ("t", 1_000_000_000_000),
    ("tb", 1_000_000_000_000),
    ("ti", 1 << 40),
    ("tib", 1 << 40),
];

impl ByteSize {
    /// `n` bytes.
    pub const fn bytes(n: u64) -> Self {
        ByteSize(n)
    }

    /// `n` KiB.
    pub const fn kib(n: u64) -> Self {
        ByteSize(n << 10)
    }

    /// `n` MiB.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n << 20)
    }

    /// `n` GiB.
    pub const fn gib(n: u64) -> Self {
        ByteSize(n << 30)
    }

    /// The size in bytes.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid byte size `{text}`: {why}");
        let s = text.trim();
        if s.starts_with('-') {
            return Err(bad("must not be negative"));
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        let (whole, frac, unit) = split_number(s);
        if whole.is_empty() && frac.is_empty() {
            return Err(bad("expected a number such as `512KiB` or `20MiB`"));
        }
        let unit = unit.trim_start().to_ascii_lowercase();
        let Some(&(_, mult)) = BYTE_UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(bad(
                "unknown unit (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)",
            ));
        };
        let n = scaled(whole, frac, mult).ok_or_else(|| bad("too large"))?;
        u64::try_from(n).map(ByteSize).map_err(|_| bad("too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        const UNITS: &[(&str, u64)] = &[
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
            ("TB", 1_000_000_000_000),
            ("GB", 1_000_000_000),
            ("MB", 1_000_000),
            ("KB", 1_000),
        ];
        if n != 0 {
            for (name, size) in UNITS {
                if n.is_multiple_of(*size) {
                    return write!(f, "{}{name}", n / size);
                }
            }
        }
        write!(f, "{n}B")
    }
}

impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte size such as `20MiB`, `512KiB` or a number of bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        u64::try_from(v)
            .map(ByteSize)
            .map_err(|_| E::custom(format!("invalid byte size `{v}`: must not be negative")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
        if v >= 0.0 && v.fract() == 0.0 && v < u64::MAX as f64 {
            Ok(ByteSize(v as u64))
        } else {
            Err(E::custom(format!(
                "invalid byte size `{v}`: expected a whole number of bytes"
            )))
        }
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ByteSizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    fn dur(s: &str) -> Result<Std, String> {
        s.parse::<Duration>().map(|d| d.0)
    }

    #[test]
    fn durations() {
        assert_eq!(dur("200ms").unwrap(), Std::from_millis(200));
        assert_eq!(dur("5s").unwrap(), Std::from_secs(5));
        assert_eq!(dur("1m").unwrap(), Std::from_secs(60));
        assert_eq!(dur("1h30m").unwrap(), Std::from_secs(5400));
        assert_eq!(dur("1.5s").unwrap(), Std::from_millis(1500));
        assert_eq!(dur(".5s").unwrap(), Std::from_millis(500));
        assert_eq!(dur("300us").unwrap(), Std::from_micros(300));
        assert_eq!(dur("300µs").unwrap(), Std::from_micros(300));
        assert_eq!(dur("300μs").unwrap(), Std::from_micros(300));
        assert_eq!(dur("10ns").unwrap(), Std::from_nanos(10));
        assert_eq!(dur("0").unwrap(), Std::ZERO);
        assert_eq!(dur("-0").unwrap(), Std::ZERO);
        assert_eq!(dur("-0s").unwrap(), Std::ZERO);
        assert_eq!(dur("1h0.5s").unwrap(), Std::from_millis(3_600_500));

        assert!(dur("5").unwrap_err().contains("a unit is needed"));
        assert!(dur("5x").unwrap_err().contains("unknown unit `x`"));
        assert!(dur("-5s").unwrap_err().contains("negative"));
        assert!(dur("").is_err());
        assert!(dur("s").is_err());
        assert!(dur("1h30").unwrap_err().contains("missing unit"));
        assert!(dur("99999999999h").unwrap_err().contains("too large"));
    }

    #[test]
    fn duration_display_round_trips() {
        for (s, shown) in [
            ("0", "0s"),
            ("200ms", "200ms"),
            ("5s", "5s"),
            ("1h30m", "1h30m"),
            ("1.5s", "1.5s"),
            ("300us", "300us"),
            ("10ns", "10ns"),
            ("90s", "1m30s"),
            ("1h0.25s", "1h0.25s"),
        ] {
            let d: Duration = s.parse().unwrap();
            assert_eq!(d.to_string(), shown);
            assert_eq!(shown.parse::<Duration>().unwrap(), d);
        }
    }

    #[test]
    fn byte_sizes() {
        let b = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(b("1024").unwrap(), 1024);
        assert_eq!(b("20MiB").unwrap(), 20 << 20);
        assert_eq!(b("512KiB").unwrap(), 512 << 10);
        assert_eq!(b("1GiB").unwrap(), 1 << 30);
        assert_eq!(b("20MB").unwrap(), 20_000_000);
        assert_eq!(b("1.5MiB").unwrap(), 3 << 19);
        assert_eq!(b("100B").unwrap(), 100);
        assert_eq!(b("20 mib").unwrap(), 20 << 20);
        assert_eq!(b("2kb").unwrap(), 2000);
        assert!(b("-1MiB").is_err());
        assert!(b("MiB").is_err());
        assert!(b("12 parsecs").unwrap_err().contains("unknown unit"));
        assert!(b("99999999TiB").unwrap_err().contains("too large"));

        assert_eq!(ByteSize(20 << 20).to_string(), "20MiB");
        assert_eq!(ByteSize(20_000_000).to_string(), "20MB");
        assert_eq!(ByteSize(1023).to_string(), "1023B");
        assert_eq!(ByteSize(0).to_string(), "0B");
    }

    #[test]
    fn via_serde_json() {
        let d: Duration = serde_json::from_str("\"250ms\"").unwrap();
        assert_eq!(d.0, Std::from_millis(250));
        let d: Duration = serde_json::from_str("0").unwrap();
        assert_eq!(d.0, Std::ZERO);
        assert!(serde_json::from_str::<Duration>("5").is_err());
        let b: ByteSize = serde_json::from_str("\"1KiB\"").unwrap();
        assert_eq!(b.0, 1024);
        let b: ByteSize = serde_json::from_str("4096").unwrap();
        assert_eq!(b.0, 4096);
        assert_eq!(
            serde_json::to_string(&ByteSize::mib(20)).unwrap(),
            "\"20MiB\""
        );
        assert_eq!(
            serde_json::to_string(&Duration::from_secs(5)).unwrap(),
            "\"5s\""
        );
    }
}
