//! A layer tar of arbitrary bytes unpacked into a directory inside a sandbox. Invariants:
//! nothing is written outside the target directory (the sandbox holds only it and a marker,
//! and a directory beside it keeps its one file), the marker is intact, and the target
//! directory itself is still there, whatever the layer's whiteouts say.

#![no_main]

use std::fs;

use libfuzzer_sys::fuzz_target;

/// A fresh directory, in memory where the machine has `/dev/shm` (the store syncs what it
/// writes, which on a disk costs most of each run).
fn fresh_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).expect("a temp dir")
}

fuzz_target!(|data: &[u8]| {
    let sandbox = fresh_dir();
    let target = sandbox.path().join("target");
    let beside = sandbox.path().join("beside");
    fs::create_dir(&target).expect("the target");
    fs::create_dir(&beside).expect("the neighbour");
    fs::write(beside.join("file"), b"keep").expect("the neighbour's file");
    fs::write(sandbox.path().join("marker"), b"keep").expect("the marker");

    let _ = shoal_runtime::fuzzing::unpack_layer(data, &target);

    assert!(fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()), "the target directory is gone");
    assert_eq!(fs::read(sandbox.path().join("marker")).expect("the marker stays"), b"keep");
    assert_eq!(fs::read(beside.join("file")).expect("the neighbour's file stays"), b"keep");
    let mut names: Vec<String> = fs::read_dir(sandbox.path())
        .expect("the sandbox")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["beside", "marker", "target"], "something was written beside the target");
    assert_eq!(fs::read_dir(&beside).expect("the neighbour").count(), 1, "something was written into the neighbour");
});
