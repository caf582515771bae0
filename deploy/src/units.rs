//! The typed values compose writes as text: durations (`1m30s`, `500ms`), byte sizes (`512m`,
//! `1g`) and CPU counts (`"0.5"`), each read from its text as written (never through a float)
//! and written back in one canonical form, so `stack config` output reloads to the same values.

use serde::de::{self, Deserialize, Deserializer};
use serde::{Serialize, Serializer};
use std::fmt;

/// A duration in nanoseconds, written the way Go's `time.ParseDuration` reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub u64);

/// A size in bytes: a number, or a number and a unit `b`, `k`, `m`, `g` (powers of 1024, as
/// Docker reads them; `kb`, `mb`, `gb` mean the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// CPUs in billionths (Docker's NanoCPUs): `cpus: "0.5"` is 500 000 000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NanoCpus(pub u64);

const UNITS: [(&str, u64); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

impl Duration {
    /// Parses `1h2m3.5s`, `500ms`, `0`.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let bad = || format!("invalid duration {text:?}: write a number and a unit, e.g. \"1m30s\" or \"500ms\"");
        if text == "0" {
            return Ok(Duration(0));
        }
        if text.is_empty() {
            return Err(bad());
        }
        let mut rest = text;
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
            let (number, after) = rest.split_at(number_len);
            let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let scale = UNITS.iter().find(|(name, _)| *name == unit).map(|(_, scale)| *scale).ok_or_else(bad)?;
            total += decimal(number, scale).ok_or_else(bad)?;
            rest = after;
        }
        u64::try_from(total).map(Duration).map_err(|_| format!("duration {text:?} is too long"))
    }
}

/// `number` (digits, maybe a fraction) times `scale`, truncated to an integer.
fn decimal(number: &str, scale: u64) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if fraction.len() > 18 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut value = whole.checked_mul(u128::from(scale))?;
    if !fraction.is_empty() {
        let numerator: u128 = fraction.parse().ok()?;
        let denominator = 10u128.pow(u32::try_from(fraction.len()).ok()?);
        value += numerator * u128::from(scale) / denominator;
    }
    Some(value)
}

impl fmt::Display for Duration {
    /// Go's format without the fractions: `1h2m3s`, `1m30s`, `500ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        if ns == 0 {
            return f.write_str("0s");
        }
        if !ns.is_multiple_of(1_000_000_000) {
            return if ns.is_multiple_of(1_000_000) {
                write!(f, "{}ms", ns / 1_000_000)
            } else if ns.is_multiple_of(1_000) {
                write!(f, "{}us", ns / 1_000)
            } else {
                write!(f, "{ns}ns")
            };
        }
        let seconds = ns / 1_000_000_000;
        let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let trimmed = text.trim();
        let bad = || format!("invalid size {trimmed:?}: write a number and a unit b, k, m or g, e.g. \"512m\"");
        let lower = trimmed.to_ascii_lowercase();
        let number_len = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
        let (number, unit) = lower.split_at(number_len);
        let scale: u64 = match unit.trim() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => return Err(bad()),
        };
        let bytes = decimal(number, scale).ok_or_else(bad)?;
        u64::try_from(bytes).map(ByteSize).map_err(|_| format!("size {trimmed:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the size: `512m`, `1g`, `1536k`, `1000b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        for (unit, scale) in [("t", 1u64 << 40), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
            if bytes != 0 && bytes.is_multiple_of(scale) {
                return write!(f, "{}{unit}", bytes / scale);
            }
        }
        write!(f, "{bytes}b")
    }
}

impl NanoCpus {
    pub fn parse(text: &str) -> Result<NanoCpus, String> {
        let trimmed = text.trim();
        let bad = || format!("invalid CPU count {trimmed:?}: write a decimal number, e.g. \"0.5\" or \"2\"");
        let fraction = trimmed.split_once('.').map_or("", |(_, f)| f);
        if fraction.len() > 9 {
            return Err(format!("CPU count {trimmed:?} is more precise than 0.000000001"));
        }
        let nanos = decimal(trimmed, 1_000_000_000).ok_or_else(bad)?;
        u64::try_from(nanos).map(NanoCpus).map_err(|_| bad())
    }
}

impl fmt::Display for NanoCpus {
    /// `0.5`, `2`, `1.25`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / 1_000_000_000, self.0 % 1_000_000_000);
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{fraction:09}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

macro_rules! text_value {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = crate::model::Text::deserialize(deserializer)?;
                <$ty>::parse(&text.0).map_err(de::Error::custom)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}

text_value!(Duration);
text_value!(ByteSize);
text_value!(NanoCpus);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        let cases = [
            ("1m30s", 90_000_000_000),
            ("500ms", 500_000_000),
            ("0", 0),
            ("1h", 3_600_000_000_000),
            ("1.5s", 1_500_000_000),
            ("10us", 10_000),
            ("2h45m", 9_900_000_000_000),
        ];
        for (text, ns) in cases {
            assert_eq!(Duration::parse(text), Ok(Duration(ns)), "{text}");
        }
        for bad in ["", "10", "1x", "s", "1.2.3s", "-1s", "1 s"] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Duration(90_000_000_000).to_string(), "1m30s");
        assert_eq!(Duration(500_000_000).to_string(), "500ms");
        assert_eq!(Duration(1_500_000_000).to_string(), "1500ms");
        assert_eq!(Duration(0).to_string(), "0s");
    }

    #[test]
    fn sizes() {
        for (text, bytes) in [("512m", 512 << 20), ("1g", 1 << 30), ("1GB", 1 << 30), ("100", 100), ("1.5k", 1536)] {
            assert_eq!(ByteSize::parse(text), Ok(ByteSize(bytes)), "{text}");
        }
        for bad in ["", "m", "12x", "-1m"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ByteSize(512 << 20).to_string(), "512m");
        assert_eq!(ByteSize(1000).to_string(), "1000b");
    }

    #[test]
    fn cpus() {
        assert_eq!(NanoCpus::parse("0.5"), Ok(NanoCpus(500_000_000)));
        assert_eq!(NanoCpus::parse("2"), Ok(NanoCpus(2_000_000_000)));
        assert_eq!(NanoCpus(1_250_000_000).to_string(), "1.25");
        assert!(NanoCpus::parse("half").is_err());
        assert!(NanoCpus::parse("0.0000000001").is_err());
    }

    proptest! {
        #[test]
        fn canonical_forms_parse_back(ns in 0u64..u64::MAX / 2, bytes in 0u64..1 << 50, cpus in 0u64..1 << 40) {
            prop_assert_eq!(Duration::parse(&Duration(ns).to_string()), Ok(Duration(ns)));
            prop_assert_eq!(ByteSize::parse(&ByteSize(bytes).to_string()), Ok(ByteSize(bytes)));
            prop_assert_eq!(NanoCpus::parse(&NanoCpus(cpus).to_string()), Ok(NanoCpus(cpus)));
        }
    }
}
