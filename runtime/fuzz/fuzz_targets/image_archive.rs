//! `image load` of arbitrary bytes into a fresh store. Invariants: a failed load leaves
//! nothing in the store (no blob, no name, nothing in `ingest/`, no unpacked layer); nothing
//! beside the store's root is created or removed (a marker there stays as it was); a loaded
//! image can be saved, and the saved archive loads again.

#![no_main]

use std::{fs, path::Path};

use libfuzzer_sys::fuzz_target;
use shoal_runtime::fuzzing::Store;

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// A fresh directory, in memory where the machine has `/dev/shm` (the store syncs what it
/// writes, which on a disk costs most of each run).
fn fresh_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).expect("a temp dir")
}

fuzz_target!(|data: &[u8]| {
    let sandbox = fresh_dir();
    let root = sandbox.path().join("root");
    let marker = sandbox.path().join("marker");
    fs::write(&marker, b"keep").expect("the marker");
    let store = Store::open(&root).expect("a fresh store opens");

    match store.load(data) {
        Err(_) => {
            assert_eq!(entries(&root.join("images/ingest")), Vec::<String>::new(), "staging left after a failed load");
            assert_eq!(
                entries(&root.join("images/blobs/sha256")),
                Vec::<String>::new(),
                "blobs left after a failed load"
            );
            assert_eq!(entries(&root.join("layers")), Vec::<String>::new(), "layers left after a failed load");
            let index = fs::read_to_string(root.join("images/index.json")).expect("the index");
            assert!(!index.contains("\"digest\""), "a name left after a failed load: {index}");
        }
        Ok(loaded) => {
            assert!(!loaded.is_empty(), "a load that succeeds loads something");
            let names: Vec<&str> = loaded.iter().map(String::as_str).collect();
            let saved = store.save(&names).expect("a loaded image can be saved");
            let again = fresh_dir();
            let copy = Store::open(again.path()).expect("a fresh store opens");
            let mut reloaded = copy.load(&saved).expect("a saved archive loads");
            let mut expected = loaded.clone();
            reloaded.sort();
            expected.sort();
            assert_eq!(reloaded, expected, "saving and loading again keeps the names");
            assert_eq!(entries(&root.join("images/ingest")), Vec::<String>::new(), "staging left after a load");
        }
    }
    assert_eq!(fs::read(&marker).expect("the marker stays"), b"keep");
    assert_eq!(entries(sandbox.path()), ["marker", "root"], "something appeared beside the store");
});
