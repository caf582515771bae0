//! Image references as users type them. Invariant: a reference that parses is stored in a
//! form that parses again to itself (normalization is idempotent), and never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_runtime::fuzzing::reference;

fuzz_target!(|text: &str| {
    if let Ok(stored) = reference(text) {
        let again =
            reference(&stored).unwrap_or_else(|e| panic!("{text:?} was stored as {stored:?}, which is refused: {e}"));
        assert_eq!(again, stored, "{text:?}: the stored form does not parse to itself");
        assert!(stored.contains(':'), "{stored:?} has no tag");
    }
});
