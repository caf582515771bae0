//! Fuzz target `duration`: text to the one duration parser (`shoal_deploy::units`).
//!
//! Invariants: nothing panics; a duration that parses formats to text that parses back to the
//! same nanoseconds; the unsigned parser agrees with the signed one (and refuses exactly the
//! negative durations); an error says something.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_deploy::units::{parse_signed_duration, Duration};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_signed_duration(text) {
        Ok(ns) => {
            let formatted = format!("{}{}", if ns < 0 { "-" } else { "" }, Duration(ns.unsigned_abs()));
            assert_eq!(parse_signed_duration(&formatted), Ok(ns), "{text:?} formatted as {formatted:?}");
            match Duration::parse(text) {
                Ok(d) => assert_eq!(i128::from(d.0), i128::from(ns), "{text:?}"),
                Err(e) => assert!(ns < 0 && e.contains("negative"), "{text:?}: {e}"),
            }
        }
        Err(e) => {
            assert!(!e.is_empty());
            assert!(Duration::parse(text).is_err(), "{text:?}");
        }
    }
});
