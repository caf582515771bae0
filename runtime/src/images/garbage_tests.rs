//! Tests of what the runtime leaves in its image store after failed, interrupted and
//! concurrent loads and imports, and of image lookups by ID prefix, on a [`Runtime`] opened
//! on a temporary root (no container is started).

use std::{
    fs,
    path::{Path, PathBuf},
};

use sha2::{Digest as _, Sha256};

use crate::{Error, Runtime};

fn open(root: &Path) -> Runtime {
    Runtime::open(root, PathBuf::from("/nonexistent/shim"), Vec::new()).expect("open the runtime")
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// A root filesystem directory with one file holding `content`.
fn rootfs(parent: &Path, content: &str) -> PathBuf {
    let dir = parent.join(format!("rootfs-{:08x}", rand::random::<u32>()));
    fs::create_dir_all(dir.join("etc")).expect("mkdir");
    fs::write(dir.join("etc/content"), content).expect("write");
    dir
}

/// A layer tar whose first header is valid but which breaks off inside its first file.
fn truncated_tar() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(10_000);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, "big", &[7u8; 10_000][..]).expect("append");
    let mut data = tar.into_inner().expect("tar");
    data.truncate(512 + 3000);
    data
}

/// What a killed load or import leaves: an upload, a staging directory, a blob being written,
/// a blob no image names, an unpacked layer no image uses and an interrupted unpack.
fn plant_leftovers(root: &Path) -> Vec<PathBuf> {
    let images = root.join("images");
    let orphan = b"a blob of an import that failed";
    let orphan_hex = hex::encode(Sha256::digest(orphan));
    let paths = vec![
        images.join("ingest/upload-00000000deadbeef"),
        images.join("ingest/stage-00000000deadbeef/archive/manifest.json"),
        images.join("ingest/00000000deadbeef"),
        images.join("blobs/sha256").join(&orphan_hex),
        root.join("layers").join("ab".repeat(32)).join("etc/passwd"),
        root.join("layers/.tmp-0123456789ab-00000000/etc/passwd"),
    ];
    for path in &paths {
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(path, orphan).expect("write");
    }
    paths
}

fn assert_gone(leftovers: &[PathBuf]) {
    for path in leftovers {
        assert!(!path.exists(), "{} is left", path.display());
    }
}

/// The store holds exactly what `image` needs, nothing in `ingest/`, and the image works.
fn assert_only(rt: &Runtime, root: &Path, images: &[&str]) {
    assert!(entries(&root.join("images/ingest")).is_empty(), "ingest: {:?}", entries(&root.join("images/ingest")));
    let mut blobs = Vec::new();
    let mut layers = Vec::new();
    for name in images {
        let image = rt.inner.images.resolve(name).expect("resolve").expect("the image is there");
        blobs.push(image.descriptor.digest().digest().to_string());
        blobs.push(image.manifest.config().digest().digest().to_string());
        blobs.extend(image.manifest.layers().iter().map(|l| l.digest().digest().to_string()));
        layers.extend(image.config.rootfs().diff_ids().iter().map(|d| d.trim_start_matches("sha256:").to_string()));
    }
    blobs.sort();
    blobs.dedup();
    layers.sort();
    layers.dedup();
    assert_eq!(entries(&root.join("images/blobs/sha256")), blobs);
    let unpacked: Vec<String> = entries(&root.join("layers")).into_iter().filter(|n| n.len() == 64).collect();
    assert_eq!(unpacked, layers);
}

#[test]
fn a_failed_import_leaves_nothing_and_is_a_bad_request() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("runtime");
    let rt = open(&root);
    rt.import_image(&rootfs(tmp.path(), "kept"), "keep:1").expect("import");

    let truncated = tmp.path().join("truncated.tar");
    fs::write(&truncated, truncated_tar()).expect("write");
    let err = rt.import_image(&truncated, "broken:1").expect_err("a truncated tar is no image");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated.tar"), "{err}");

    let text = tmp.path().join("notes.txt");
    fs::write(&text, "not a tar at all\n".repeat(60_000)).expect("write");
    let err = rt.import_image(&text, "text:1").expect_err("text is no image");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(err.to_string().contains("not a tar archive"), "{err}");

    assert_only(&rt, &root, &["keep:1"]);

    // The same as uploads: refused, and nothing left once the upload is gone.
    for (data, reference) in [(truncated_tar(), "broken:2"), (b"not a tar at all\n".repeat(60_000), "text:2")] {
        let mut upload = rt.upload().expect("upload");
        upload.append(&data).expect("append");
        upload.finish().expect("flush");
        let err = rt.import_upload(upload, reference, &Default::default()).expect_err("no image");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
        assert!(err.to_string().contains("the upload"), "{err}");
        let mut upload = rt.upload().expect("upload");
        upload.append(&data).expect("append");
        upload.finish().expect("flush");
        let err = rt.load_upload(upload).expect_err("no archive");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    }
    assert_only(&rt, &root, &["keep:1"]);
}

#[test]
fn what_killed_loads_left_goes_when_the_runtime_opens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("runtime");
    let rt = open(&root);
    rt.import_image(&rootfs(tmp.path(), "kept"), "keep:1").expect("import");
    drop(rt);
    let leftovers = plant_leftovers(&root);

    let rt = open(&root);
    assert_gone(&leftovers);
    assert_only(&rt, &root, &["keep:1"]);
}

#[test]
fn prune_sweeps_leftovers_but_not_what_a_load_under_way_uses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("runtime");
    let rt = open(&root);
    rt.import_image(&rootfs(tmp.path(), "kept"), "keep:1").expect("import");
    let leftovers = plant_leftovers(&root);

    // An upload being received holds the store: nothing is swept meanwhile.
    let mut upload = rt.upload().expect("upload");
    upload.append(b"part of an archive").expect("write");
    let pruned = rt.prune_images_where(true, |_| true).expect("prune");
    assert!(pruned.deleted.is_empty());
    for path in &leftovers {
        assert!(path.exists(), "{} went while an upload was under way", path.display());
    }
    assert!(upload.path().exists());

    let upload_path = upload.path().to_path_buf();
    drop(upload);
    assert!(!upload_path.exists(), "a dropped upload is deleted");
    let pruned = rt.prune_images_where(true, |_| true).expect("prune");
    assert!(pruned.reclaimed > 0);
    assert_gone(&leftovers);
    assert_only(&rt, &root, &["keep:1"]);
}

#[test]
fn loads_import_and_prune_by_filters() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("runtime");
    let rt = open(&root);
    rt.import_image(&rootfs(tmp.path(), "one"), "one:1").expect("import");
    rt.import_image(&rootfs(tmp.path(), "two"), "two:1").expect("import");
    let mut archive = Vec::new();
    rt.save_images(&["one:1"], &mut archive).expect("save");

    // An upload of a saved image loads; then prune -a with a filter takes only what it selects.
    let mut upload = rt.upload().expect("upload");
    upload.append(&archive).expect("write");
    upload.finish().expect("flush");
    assert_eq!(rt.load_upload(upload).expect("load"), ["one:1"]);
    let pruned = rt.prune_images_where(false, |i| i.references.iter().any(|r| r.starts_with("two"))).expect("prune");
    assert_eq!(pruned.untagged, ["two:1"]);
    assert_eq!(pruned.deleted.len(), 1);
    assert_only(&rt, &root, &["one:1"]);
}

#[test]
fn an_ambiguous_id_prefix_says_how_many_match() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("runtime");
    let rt = open(&root);
    // 17 images: by the pigeonhole principle two IDs share their first hex digit.
    let mut ids = Vec::new();
    for n in 0..17 {
        let summary = rt.import_image(&rootfs(tmp.path(), &format!("image {n}")), &format!("img:{n}")).expect("import");
        ids.push(summary.id.trim_start_matches("sha256:").to_string());
    }
    let prefix = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|p| ids.iter().filter(|id| id.starts_with(p.as_str())).count() > 1)
        .expect("two IDs share a first digit");
    let matching = ids.iter().filter(|id| id.starts_with(prefix.as_str())).count();
    let long = format!("sha256:{prefix}");
    for (given, err) in [
        (&prefix, rt.image(&prefix).map(|_| ()).expect_err("ambiguous")),
        (&prefix, rt.inspect_image(&prefix).map(|_| ()).expect_err("ambiguous")),
        (&prefix, rt.tag_image(&prefix, "other:1").expect_err("ambiguous")),
        (&long, rt.remove_image(&long, true).map(|_| ()).expect_err("ambiguous")),
    ] {
        let text = err.to_string();
        assert!(text.starts_with(&format!("image ID prefix {given} matches {matching} images (")), "{text}");
        assert!(text.ends_with("): give more of the ID"), "{text}");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    }
    let unique = &ids[0][..20];
    assert!(rt.image(unique).expect("lookup").is_some());
}
