//! Import of OCI-layout and `docker save` archives built in the test.

mod common;

use common::*;
use crius_image::ImageError;

fn append(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, path, data).unwrap();
}

fn sample() -> TestImage {
    let l1 = layer(
        &[
            Entry::Dir("etc/"),
            Entry::File("etc/os-release", b"ID=crius\n", 0o644),
        ],
        Comp::Gzip,
    );
    let l2 = layer(&[Entry::File("hello", b"world\n", 0o755)], Comp::None);
    TestImage::new(vec![l1, l2], &["/hello"])
}

fn oci_layout(img: &TestImage, name: &str, corrupt: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    append(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let manifest = img.manifest();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest(&manifest), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": name}}],
    });
    append(&mut b, "index.json", &serde_json::to_vec(&index).unwrap());
    let mut blobs = vec![manifest.clone(), img.config.clone()];
    blobs.extend(img.layers.iter().map(|l| l.data.clone()));
    for (i, data) in blobs.iter().enumerate() {
        let mut data = data.clone();
        if corrupt && i == 2 {
            let n = data.len() / 2;
            data[n] ^= 1;
        }
        append(
            &mut b,
            &format!(
                "blobs/sha256/{}",
                digest(blobs[i].as_slice()).trim_start_matches("sha256:")
            ),
            &data,
        );
    }
    b.into_inner().unwrap()
}

#[test]
fn imports_oci_layout() {
    let img = sample();
    let work = tempfile::tempdir().unwrap();
    let tarball = work.path().join("img.tar");
    std::fs::write(
        &tarball,
        oci_layout(&img, "example.com/crius/imported:v1", false),
    )
    .unwrap();
    let hosts = tempfile::tempdir().unwrap();
    let store = store(&work.path().join("root"), hosts.path());
    let refs = store.import(&tarball).unwrap();
    assert_eq!(refs, ["example.com/crius/imported:v1"]);
    let got = store.get("example.com/crius/imported:v1").unwrap().unwrap();
    assert_eq!(got.id, img.id());
    assert_eq!(got.config.cmd, ["/hello"]);
    assert_eq!(
        got.repo_digests,
        [format!(
            "example.com/crius/imported@{}",
            digest(&img.manifest())
        )]
    );
    assert_eq!(got.size, img.size());
    // Layers were unpacked: a rootfs works straight away.
    let target = work.path().join("mnt");
    store.prepare_rootfs(&got.id, "imp", &target).unwrap();
    assert_eq!(std::fs::read(target.join("hello")).unwrap(), b"world\n");
    assert_eq!(
        std::fs::read(target.join("etc/os-release")).unwrap(),
        b"ID=crius\n"
    );
    store.remove_rootfs("imp", &target).unwrap();
    // Staging is cleaned up.
    assert_eq!(
        std::fs::read_dir(work.path().join("root/tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn rejects_corrupted_oci_layout() {
    let img = sample();
    let work = tempfile::tempdir().unwrap();
    let tarball = work.path().join("img.tar");
    std::fs::write(&tarball, oci_layout(&img, "example.com/crius/bad:v1", true)).unwrap();
    let hosts = tempfile::tempdir().unwrap();
    let store = store(&work.path().join("root"), hosts.path());
    let err = store.import(&tarball).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(work.path().join("root/tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn imports_docker_save_with_linked_layers() {
    let img = sample();
    let mut b = tar::Builder::new(Vec::new());
    let config_name = format!("{}.json", img.id().trim_start_matches("sha256:"));
    append(&mut b, &config_name, &img.config);
    // Docker saves uncompressed layer tars; re-create them from the diff ids' content.
    let tars: Vec<Vec<u8>> = vec![
        tar_of(&[
            Entry::Dir("etc/"),
            Entry::File("etc/os-release", b"ID=crius\n", 0o644),
        ]),
        tar_of(&[Entry::File("hello", b"world\n", 0o755)]),
    ];
    append(&mut b, "aaa/layer.tar", &tars[0]);
    append(&mut b, "bbb/real.tar", &tars[1]);
    // The second layer is reached through a symlink, as older docker versions write duplicates.
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "ccc/layer.tar", "../bbb/real.tar")
        .unwrap();
    let manifest = serde_json::json!([{
        "Config": config_name, "RepoTags": ["crius/saved:1.0", "localhost:5000/x:y"],
        "Layers": ["aaa/layer.tar", "ccc/layer.tar"],
    }]);
    append(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    let work = tempfile::tempdir().unwrap();
    let tarball = work.path().join("save.tar");
    std::fs::write(&tarball, b.into_inner().unwrap()).unwrap();

    let hosts = tempfile::tempdir().unwrap();
    let store = store(&work.path().join("root"), hosts.path());
    let refs = store.import(&tarball).unwrap();
    assert_eq!(refs, ["docker.io/crius/saved:1.0", "localhost:5000/x:y"]);
    let got = store.get("crius/saved:1.0").unwrap().unwrap();
    assert_eq!(got.id, img.id());
    assert_eq!(got.repo_tags.len(), 2);
    assert_eq!(got.chain.len(), 2);
    // Importing the same archive twice is harmless.
    assert_eq!(store.import(&tarball).unwrap().len(), 2);
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn rejects_archive_with_escaping_names() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(1);
    h.set_mode(0o644);
    let name = &mut h.as_old_mut().name;
    name[..13].copy_from_slice(b"../escape.txt");
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let work = tempfile::tempdir().unwrap();
    let tarball = work.path().join("evil.tar");
    std::fs::write(&tarball, b.into_inner().unwrap()).unwrap();
    let hosts = tempfile::tempdir().unwrap();
    let store = store(&work.path().join("root"), hosts.path());
    assert!(matches!(
        store.import(&tarball),
        Err(ImageError::UnsafeLayerEntry { .. })
    ));
    assert!(!work.path().join("root/escape.txt").exists());
    assert!(!work.path().join("escape.txt").exists());
}
