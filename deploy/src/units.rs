//! The typed values compose writes as text: durations (`1m30s`, `500ms`), byte sizes (`512m`,
//! `1g`) and CPU counts (`"0.5"`), each read from its text as written (never through a float)
//! and written back in one canonical form, so `stack config` output reloads to the same values.
//!
//! The duration parser here is shoal's only one: the command line's durations (`--timeout`,
//! `logs --since`, …) are read by it too, so every duration a user writes follows one grammar,
//! Go's `time.ParseDuration` as Docker reads it.

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

const UNITS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    // Go accepts both micro signs: U+00B5 and the Greek letter U+03BC.
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// The longest duration, as Go's: `i64::MAX` nanoseconds (about 292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a duration in Go's `time.ParseDuration` grammar, as Docker reads durations: an
/// optional sign, then one or more numbers each with a unit (`1h2m3.5s`, `300ms`, `.5s`,
/// `1.s`), the units `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`; `0` alone needs no unit.
/// Returns nanoseconds; beyond `i64` either way is an error, never a wrapped value.
pub fn parse_signed_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {text:?}: write a number and a unit, e.g. \"1m30s\" or \"500ms\"");
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if unsigned == "0" {
        return Ok(0);
    }
    if unsigned.is_empty() {
        return Err(bad());
    }
    let mut rest = unsigned;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let (number, after) = rest.split_at(number_len);
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = UNITS.iter().find(|(name, _)| *name == unit).map(|(_, scale)| *scale).ok_or_else(bad)?;
        let too_long = || format!("duration {text:?} is too long: at most 2562047h47m16.854775807s");
        let well_formed = number.matches('.').count() <= 1 && number.bytes().any(|b| b.is_ascii_digit());
        let value = decimal(number, scale).ok_or_else(|| if well_formed { too_long() } else { bad() })?;
        total = total.checked_add(value).filter(|t| *t <= MAX_NANOS + u128::from(negative)).ok_or_else(too_long)?;
        rest = after;
    }
    let total = i128::try_from(total).map_err(|_| bad())?;
    i64::try_from(if negative { -total } else { total }).map_err(|_| bad())
}

impl Duration {
    /// Parses a duration as [`parse_signed_duration`] does, where a negative one makes no
    /// sense (a timeout, an interval, a grace period).
    pub fn parse(text: &str) -> Result<Duration, String> {
        let ns = parse_signed_duration(text)?;
        u64::try_from(ns)
            .map(Duration)
            .map_err(|_| format!("duration {text:?} is negative: give a duration of 0 or more, e.g. \"30s\""))
    }

    /// The same span as a `std::time::Duration`.
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0)
    }
}

/// `number` (digits, maybe a fraction) times `scale`, truncated to an integer; `None` for a
/// malformed number or one beyond `u128`.
fn decimal(number: &str, scale: u64) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut value = whole.checked_mul(u128::from(scale))?;
    // Digits past the 18th change nothing a nanosecond can hold (18 digits times the largest
    // scale stays within u128, as Go keeps what fits and reads the rest).
    let fraction = &fraction[..fraction.len().min(18)];
    if !fraction.is_empty() {
        let numerator: u128 = fraction.parse().ok()?;
        let denominator = 10u128.pow(u32::try_from(fraction.len()).ok()?);
        value = value.checked_add(numerator * u128::from(scale) / denominator)?;
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
        for bad in ["", "10", "1x", "s", "1.2.3s", "-1s", "1 s", " 1s", ".s", "-", "+", "1h-1m", "1e3s", "0x10s"] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
        // Go's grammar: a sign, fractions without a whole or a fraction part, both micro signs.
        for (text, ns) in [
            ("+5s", 5_000_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("1h2m3.5s", 3_723_500_000_000),
            ("300ms", 300_000_000),
            ("3\u{b5}s", 3_000),
            ("3\u{3bc}s", 3_000),
            ("-0", 0),
            ("1.0000000000000000000001s", 1_000_000_000),
        ] {
            assert_eq!(Duration::parse(text), Ok(Duration(ns)), "{text}");
        }
        assert_eq!(parse_signed_duration("-1m30s"), Ok(-90_000_000_000));
        assert!(Duration::parse("-1m").expect_err("negative").contains("negative"));
        // Beyond 2^63 - 1 ns is an error, never a wrapped or saturated value.
        assert_eq!(parse_signed_duration("2562047h47m16.854775807s"), Ok(i64::MAX));
        assert_eq!(parse_signed_duration("-2562047h47m16.854775808s"), Ok(i64::MIN));
        for long in [
            "2562047h47m16.854775808s",
            "999999999999h",
            "9223372036854775808ns",
            &format!("{}h", u128::MAX),
            &format!("{0}h{0}h", u64::MAX),
            &format!("{}0.5h", u128::MAX),
        ] {
            let err = parse_signed_duration(long).expect_err(long);
            assert!(err.contains("too long"), "{long}: {err}");
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
        fn canonical_forms_parse_back(ns in 0u64..=i64::MAX as u64, bytes in 0u64..1 << 50, cpus in 0u64..1 << 40) {
            prop_assert_eq!(Duration::parse(&Duration(ns).to_string()), Ok(Duration(ns)));
            prop_assert_eq!(ByteSize::parse(&ByteSize(bytes).to_string()), Ok(ByteSize(bytes)));
            prop_assert_eq!(NanoCpus::parse(&NanoCpus(cpus).to_string()), Ok(NanoCpus(cpus)));
        }

        #[test]
        fn durations_never_panic_and_parse_back(text in "[-+]?([0-9]{0,22}(\\.[0-9]{0,22})?(ns|us|ms|s|m|h|x)?){1,4}") {
            if let Ok(ns) = parse_signed_duration(&text) {
                let d = Duration(ns.unsigned_abs());
                let again = parse_signed_duration(&format!("{}{d}", if ns < 0 { "-" } else { "" }));
                prop_assert_eq!(again, Ok(ns));
            }
        }
    }
}
