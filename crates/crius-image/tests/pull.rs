//! Pull, rootfs and GC against a real docker-registry started per test on 127.0.0.1.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use crius_image::{Auth, ImageError, ImageStore, StoreOptions};

fn base_image(seed: u64) -> TestImage {
    let bin = noise(200_000, seed);
    let l1 = layer(
        &[
            Entry::Dir("etc/"),
            Entry::File("etc/hostname", b"crius\n", 0o644),
            Entry::File("bin/tool", &bin, 0o755),
            Entry::Sym("bin/link", "tool"),
        ],
        Comp::Gzip,
    );
    let l2 = layer(
        &[
            Entry::File("etc/hostname", b"layer2\n", 0o644),
            Entry::File("etc/.wh.gone", b"", 0o644),
        ],
        Comp::Zstd,
    );
    let seed_s = format!("seed {seed}\n");
    let l3 = layer(&[Entry::File("seed", seed_s.as_bytes(), 0o600)], Comp::None);
    TestImage::new(vec![l1, l2, l3], &["/bin/tool", "--flag"])
}

fn count_dir(p: &Path) -> usize {
    std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_tag_and_digest_then_untag_and_gc() {
    let reg = Registry::start(false);
    let img = base_image(1);
    let (mdigest, id) = reg.push_image("test/base", "v1", &img).await;
    reg.push_manifest("test/base", "v2", OCI_MANIFEST, &img.manifest())
        .await;
    let root = tempfile::tempdir().unwrap();
    let hosts = tempfile::tempdir().unwrap();
    let store = store(root.path(), hosts.path());

    // No hosts.toml: 127.0.0.1 falls back from HTTPS to plain HTTP.
    let r1 = format!("{}/test/base:v1", reg.addr);
    let got = tokio::time::timeout(Duration::from_secs(60), store.pull(&r1, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, id);
    assert_eq!(got.repo_tags, std::slice::from_ref(&r1));
    assert_eq!(
        got.repo_digests,
        [format!("{}/test/base@{mdigest}", reg.addr)]
    );
    assert_eq!(got.size, img.size());
    assert_eq!(got.config.cmd, ["/bin/tool", "--flag"]);
    assert_eq!(got.config.labels["test"], "crius");
    assert_eq!(got.chain.len(), 3);
    assert!(got.config_json.contains("diff_ids"));

    // Snapshot contents: whiteout, per-layer files, modes.
    let snaps = root.path().join("snapshots");
    assert_eq!(count_dir(&snaps), 3);
    let s = |i: usize| {
        snaps
            .join(got.chain[i].trim_start_matches("sha256:"))
            .join("fs")
    };
    assert_eq!(
        std::fs::read(s(0).join("etc/hostname")).unwrap(),
        b"crius\n"
    );
    assert_eq!(
        std::fs::read(s(1).join("etc/hostname")).unwrap(),
        b"layer2\n"
    );
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    assert!(std::fs::symlink_metadata(s(1).join("etc/gone"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(
        std::fs::metadata(s(0).join("bin/tool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    // 3 layers + config + manifest.
    assert_eq!(count_dir(&root.path().join("blobs/sha256")), 5);

    // Second tag and a digest pull add references to the same image; no re-download.
    let gets_before = reg.blob_gets(&digest(&img.layers[0].data));
    let r2 = format!("{}/test/base:v2", reg.addr);
    store.pull(&r2, None).await.unwrap();
    let by_digest = format!("{}/test/base@{mdigest}", reg.addr);
    let got = store.pull(&by_digest, None).await.unwrap();
    assert_eq!(got.repo_tags.len(), 2);
    assert_eq!(reg.blob_gets(&digest(&img.layers[0].data)), gets_before);

    // Lookups: tag, digest ref, full id, bare hex, prefix.
    let hex = id.trim_start_matches("sha256:");
    for q in [
        r1.as_str(),
        r2.as_str(),
        by_digest.as_str(),
        id.as_str(),
        hex,
        &hex[..12],
    ] {
        assert_eq!(store.get(q).unwrap().map(|i| i.id), Some(id.clone()), "{q}");
    }
    assert!(store
        .get("docker.io/library/nothing:here")
        .unwrap()
        .is_none());
    assert_eq!(store.list().unwrap().len(), 1);

    // Untag v1: image stays with v2.
    store.remove(&r1).unwrap();
    let i = store.get(&id).unwrap().unwrap();
    assert_eq!(i.repo_tags, std::slice::from_ref(&r2));
    assert!(store.get(&r1).unwrap().is_none());
    // Removing the last tag removes the image and its content.
    store.remove(&r2).unwrap();
    assert!(store.get(&id).unwrap().is_none());
    assert!(store.list().unwrap().is_empty());
    assert_eq!(count_dir(&root.path().join("blobs/sha256")), 0);
    assert_eq!(count_dir(&snaps), 0);
    // Idempotent.
    store.remove(&r2).unwrap();
    store.remove(&id).unwrap();

    // Pinning round-trips.
    store.pull(&r1, None).await.unwrap();
    store.set_pinned(&r1, true).unwrap();
    assert!(store.get(&id).unwrap().unwrap().pinned);
    assert!(matches!(
        store.set_pinned("nope/nope:x", true),
        Err(ImageError::NotFound { .. })
    ));
    let u = store.fs_usage().unwrap();
    assert!(u.used_bytes >= 200_000 && u.inodes_used >= 10, "{u:?}");
    // By id removes everything.
    store.remove(&id).unwrap();
    assert_eq!(count_dir(&root.path().join("blobs/sha256")), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_hosts_toml_mirror_from_index() {
    let reg = Registry::start(false);
    let img = base_image(2);
    let other = TestImage::with_arch(
        vec![layer(&[Entry::File("wrong", b"arch", 0o644)], Comp::Gzip)],
        &["x"],
        "s390x",
    );
    let (amd_digest, id) = {
        for l in &img.layers {
            reg.push_blob("test/multi", &l.data).await;
        }
        let id = reg.push_blob("test/multi", &img.config).await;
        let d = reg
            .push_manifest(
                "test/multi",
                &digest(&img.manifest()),
                OCI_MANIFEST,
                &img.manifest(),
            )
            .await;
        (d, id)
    };
    for l in &other.layers {
        reg.push_blob("test/multi", &l.data).await;
    }
    reg.push_blob("test/multi", &other.config).await;
    let other_digest = reg
        .push_manifest(
            "test/multi",
            &digest(&other.manifest()),
            OCI_MANIFEST,
            &other.manifest(),
        )
        .await;
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let index = serde_json::json!({
    "schemaVersion": 2, "mediaType": OCI_INDEX,
    "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": other_digest, "size": other.manifest().len(),
         "platform": {"os": "linux", "architecture": "s390x"}},
        {"mediaType": OCI_MANIFEST, "digest": amd_digest, "size": img.manifest().len(),
         "platform": {"os": "linux", "architecture": arch}},
    ]});
    let index = serde_json::to_vec(&index).unwrap();
    let index_digest = reg
        .push_manifest("test/multi", "latest", OCI_INDEX, &index)
        .await;

    let root = tempfile::tempdir().unwrap();
    let hosts = tempfile::tempdir().unwrap();
    let hdir = hosts.path().join("registry.crius.invalid");
    std::fs::create_dir_all(&hdir).unwrap();
    std::fs::write(
        hdir.join("hosts.toml"),
        format!(
            "server = \"https://registry.crius.invalid\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            reg.addr
        ),
    )
    .unwrap();
    let store = store(root.path(), hosts.path());
    let got = store
        .pull("registry.crius.invalid/test/multi", None)
        .await
        .unwrap();
    assert_eq!(got.id, id);
    assert_eq!(got.repo_tags, ["registry.crius.invalid/test/multi:latest"]);
    assert_eq!(
        got.repo_digests,
        [format!("registry.crius.invalid/test/multi@{index_digest}")]
    );
    // The mirror was asked with the upstream namespace, as containerd does.
    let log = std::fs::read_to_string(&reg.log).unwrap();
    assert!(
        log.contains("ns=registry.crius.invalid"),
        "mirror requests carry ?ns="
    );
    // The other platform's layer was never fetched.
    assert_eq!(reg.blob_gets(&digest(&other.layers[0].data)), 0);

    // A capability-less mirror is skipped and the unreachable server fails the pull.
    std::fs::write(
        hdir.join("hosts.toml"),
        format!(
            "server = \"https://registry.crius.invalid\"\n[host.\"http://{}\"]\n  capabilities = [\"push\"]\n",
            reg.addr
        ),
    )
    .unwrap();
    let err = store
        .pull("registry.crius.invalid/test/multi:other", None)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Registry { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_required_and_accepted() {
    let reg = Registry::start(true);
    let img = base_image(3);
    reg.push_image("test/private", "v1", &img).await;
    let root = tempfile::tempdir().unwrap();
    let hosts = tempfile::tempdir().unwrap();
    let store = store(root.path(), hosts.path());
    let r = format!("{}/test/private:v1", reg.addr);

    let err = store.pull(&r, None).await.unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains(&reg.addr), "{err}");
    let bad = Auth {
        username: USER.into(),
        password: "wrong".into(),
        ..Default::default()
    };
    let err = store.pull(&r, Some(&bad)).await.unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "password leaked into {err}"
    );
    assert!(store.list().unwrap().is_empty());

    let good = Auth {
        username: USER.into(),
        password: PASS.into(),
        ..Default::default()
    };
    assert_eq!(store.pull(&r, Some(&good)).await.unwrap().id, img.id());
    // The base64 `auth` form works too (after a removal so content is fetched again).
    store.remove(&r).unwrap();
    use base64::Engine;
    let b64 = Auth {
        auth: base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}")),
        ..Default::default()
    };
    assert_eq!(store.pull(&r, Some(&b64)).await.unwrap().id, img.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_blob_is_detected_and_nothing_kept() {
    let reg = Registry::start(false);
    let img = base_image(4);
    reg.push_image("test/corrupt", "v1", &img).await;
    // Flip a byte in the middle of layer 0 as stored by the registry.
    let p = reg.blob_data_path(&digest(&img.layers[0].data));
    let mut data = std::fs::read(&p).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&p, data).unwrap();

    let root = tempfile::tempdir().unwrap();
    let hosts = tempfile::tempdir().unwrap();
    let store = store(root.path(), hosts.path());
    let err = store
        .pull(&format!("{}/test/corrupt:v1", reg.addr), None)
        .await
        .unwrap_err();
    match &err {
        ImageError::DigestMismatch { what, .. } => {
            assert!(what.contains(&digest(&img.layers[0].data)), "{err}")
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
    assert!(!root
        .path()
        .join("blobs/sha256")
        .join(digest(&img.layers[0].data).trim_start_matches("sha256:"))
        .exists());
    assert_eq!(count_dir(&root.path().join("tmp")), 0);
    let snaps: Vec<_> = std::fs::read_dir(root.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(snaps.iter().all(|s| !s.starts_with("tmp-")), "{snaps:?}");
    assert!(!snaps.contains(
        &img.layers[0]
            .diff_id
            .trim_start_matches("sha256:")
            .to_string()
    ));
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malicious_layer_is_rejected_without_writing_outside() {
    let reg = Registry::start(false);
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let victim = work.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let escape = format!("../../../../../../../..{}/pwned", victim.display());
    let abs = format!("{}/pwned-abs", victim.display());
    let cases: Vec<(&str, Vec<Entry>)> = vec![
        ("dotdot", vec![Entry::RawFile(&escape, b"x")]),
        ("absolute", vec![Entry::RawFile(&abs, b"x")]),
        (
            "symlink",
            vec![
                Entry::Sym("evil", victim.to_str().unwrap()),
                Entry::RawFile("evil/pwned-sym", b"x"),
            ],
        ),
    ];
    let hosts = tempfile::tempdir().unwrap();
    let store = store(&root, hosts.path());
    for (name, entries) in cases {
        let good = layer(&[Entry::File("ok", b"ok", 0o644)], Comp::Gzip);
        let bad = layer(&entries, Comp::Gzip);
        let img = TestImage::new(vec![good, bad], &["/ok"]);
        reg.push_image("test/evil", name, &img).await;
        let err = store
            .pull(&format!("{}/test/evil:{name}", reg.addr), None)
            .await
            .unwrap_err();
        match &err {
            ImageError::UnsafeLayerEntry { layer, .. } => {
                assert!(layer.contains(&digest(&img.layers[1].data)), "{err}")
            }
            other => panic!("{name}: expected UnsafeLayerEntry, got {other}"),
        }
        assert_eq!(count_dir(&victim), 0, "{name} wrote outside the layer");
        assert!(store.list().unwrap().is_empty());
        let snaps: Vec<_> = std::fs::read_dir(root.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(snaps.iter().all(|s| !s.starts_with("tmp-")), "{snaps:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rootfs_overlay_and_gc_keeps_snapshots_in_use() {
    let reg = Registry::start(false);
    let img = base_image(5);
    reg.push_image("test/run", "v1", &img).await;
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("r");
    let hosts = tempfile::tempdir().unwrap();
    let store = store(&root, hosts.path());
    let r = format!("{}/test/run:v1", reg.addr);
    let got = store.pull(&r, None).await.unwrap();
    let target = work.path().join("mnt/c1");
    store.prepare_rootfs(&got.id, "c1", &target).unwrap();
    // Idempotent.
    store.prepare_rootfs(&got.id, "c1", &target).unwrap();
    assert_eq!(
        std::fs::read(target.join("etc/hostname")).unwrap(),
        b"layer2\n"
    );
    assert_eq!(std::fs::read(target.join("seed")).unwrap(), b"seed 5\n");
    assert!(!target.join("etc/gone").exists());
    std::fs::write(target.join("new-file"), b"written").unwrap();
    assert_eq!(
        std::fs::read(root.join("containers/c1/upper/new-file")).unwrap(),
        b"written"
    );
    assert_eq!(store.list_rootfs().unwrap(), ["c1"]);
    assert!(store.container_fs_usage().unwrap().inodes_used >= 3);
    // The writable layer is volatile (no sync on unmount) where the kernel has the option (5.10+).
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(target.to_str().unwrap()))
        .expect("rootfs in mountinfo");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = kernel
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (5, 10) {
        assert!(line.contains("volatile"), "{line}");
    }

    // The image goes, but the running container's snapshots stay.
    store.remove(&got.id).unwrap();
    // Preparing again (e.g. after a daemon restart) still works from the rootfs record.
    store.prepare_rootfs(&got.id, "c1", &target).unwrap();
    assert!(store.list().unwrap().is_empty());
    assert_eq!(count_dir(&root.join("snapshots")), 3);
    assert_eq!(count_dir(&root.join("blobs/sha256")), 0);
    assert_eq!(std::fs::read(target.join("seed")).unwrap(), b"seed 5\n");
    // Re-pulling while the snapshots exist only fetches blobs.
    store.pull(&r, None).await.unwrap();
    store.remove(&r).unwrap();

    // Keep a file open so the unmount is busy: removal still succeeds (lazy unmount).
    let busy = std::fs::File::open(target.join("seed")).unwrap();
    store.remove_rootfs("c1", &target).unwrap();
    drop(busy);
    assert!(!root.join("containers/c1").exists());
    assert!(!target.join("seed").exists());
    assert!(store.list_rootfs().unwrap().is_empty());
    assert_eq!(count_dir(&root.join("snapshots")), 0);
    // Idempotent.
    store.remove_rootfs("c1", &target).unwrap();
    assert!(store.prepare_rootfs(&got.id, "c2", &target).is_err());
    assert!(matches!(
        store.prepare_rootfs(&got.id, "../x", &target),
        Err(ImageError::InvalidReference { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_share_downloads() {
    let reg = Registry::start(false);
    let img = base_image(6);
    reg.push_image("test/shared", "v1", &img).await;
    let root = tempfile::tempdir().unwrap();
    let hosts = tempfile::tempdir().unwrap();
    let store = store(root.path(), hosts.path());
    let r = format!("{}/test/shared:v1", reg.addr);
    let pulls: Vec<_> = (0..4)
        .map(|_| {
            let s = store.clone();
            let r = r.clone();
            tokio::spawn(async move { s.pull(&r, None).await })
        })
        .collect();
    for p in pulls {
        assert_eq!(p.await.unwrap().unwrap().id, img.id());
    }
    for l in &img.layers {
        assert_eq!(
            reg.blob_gets(&digest(&l.data)),
            1,
            "layer {} fetched more than once",
            digest(&l.data)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_download_times_out_but_slow_one_does_not() {
    let reg = Registry::start(false);
    let big = noise(600_000, 7);
    let img = TestImage::new(
        vec![layer(&[Entry::File("big", &big, 0o644)], Comp::None)],
        &["/big"],
    );
    reg.push_image("test/slow", "v1", &img).await;
    let hosts = tempfile::tempdir().unwrap();

    // Stalls after 100 KiB on every connection.
    let stall = Proxy::start(reg.addr.clone(), 100 * 1024, 0, Duration::ZERO).await;
    let root = tempfile::tempdir().unwrap();
    let mut o = StoreOptions::new(root.path());
    o.hosts_dir = hosts.path().to_path_buf();
    o.stall_timeout = Duration::from_secs(1);
    let store = ImageStore::open(o.clone()).unwrap();
    let t0 = Instant::now();
    eprintln!("stall phase");
    let err = store
        .pull(&format!("{}/test/slow:v1", stall.addr), None)
        .await
        .unwrap_err();
    eprintln!("stall phase done: {err}");
    assert!(matches!(err, ImageError::Timeout { .. }), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(count_dir(&root.path().join("tmp")), 0);
    assert!(store.list().unwrap().is_empty());

    // 32 KiB every 250 ms: slower than the stall timeout in total, but always moving.
    let slow = Proxy::start(
        reg.addr.clone(),
        4 * 1024,
        32 * 1024,
        Duration::from_millis(250),
    )
    .await;
    let t0 = Instant::now();
    let got = store
        .pull(&format!("{}/test/slow:v1", slow.addr), None)
        .await
        .unwrap();
    assert_eq!(got.id, img.id());
    assert!(
        t0.elapsed() > Duration::from_secs(2),
        "the throttle did not apply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_removes_leftovers_and_keeps_images() {
    let reg = Registry::start(false);
    let img = base_image(8);
    reg.push_image("test/reopen", "v1", &img).await;
    let root = tempfile::tempdir().unwrap();
    let hosts = tempfile::tempdir().unwrap();
    {
        let store = store(root.path(), hosts.path());
        store
            .pull(&format!("{}/test/reopen:v1", reg.addr), None)
            .await
            .unwrap();
    }
    std::fs::write(root.path().join("tmp/layer-dead"), b"partial").unwrap();
    std::fs::create_dir_all(root.path().join("snapshots/tmp-dead/fs/x")).unwrap();
    std::fs::create_dir_all(root.path().join("containers/ghost/upper")).unwrap();
    // Content a killed pull had committed before recording its image.
    let orphan = root
        .path()
        .join(format!("blobs/sha256/{}", "ab".repeat(32)));
    std::fs::write(&orphan, b"orphan").unwrap();
    std::fs::create_dir_all(
        root.path()
            .join(format!("snapshots/{}/fs", "cd".repeat(32))),
    )
    .unwrap();
    let store = store(root.path(), hosts.path());
    assert_eq!(count_dir(&root.path().join("tmp")), 0);
    assert!(!root.path().join("snapshots/tmp-dead").exists());
    assert!(!root.path().join("containers/ghost").exists());
    assert!(!orphan.exists());
    assert!(!root
        .path()
        .join(format!("snapshots/{}", "cd".repeat(32)))
        .exists());
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(count_dir(&root.path().join("snapshots")), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_and_invalid_reference() {
    let reg = Registry::start(false);
    let root = tempfile::tempdir().unwrap();
    let hosts = tempfile::tempdir().unwrap();
    let store = store(root.path(), hosts.path());
    let err = store
        .pull(&format!("{}/test/absent:v1", reg.addr), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    let err = store.pull("Not/Valid", None).await.unwrap_err();
    assert!(
        matches!(err, ImageError::InvalidReference { ref reference, .. } if reference == "Not/Valid")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_layers_exceeding_mount_options_page() {
    let reg = Registry::start(false);
    let layers: Vec<Layer> = (0..60)
        .map(|i| {
            let name = format!("f{i:02}");
            let data = format!("layer {i}\n");
            layer(
                &[
                    Entry::File(&name, data.as_bytes(), 0o644),
                    Entry::File("top", data.as_bytes(), 0o644),
                ],
                Comp::Gzip,
            )
        })
        .collect();
    let img = TestImage::new(layers, &["/top"]);
    reg.push_image("test/deep", "v1", &img).await;
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("a-rather-long-store-root-directory-name");
    let hosts = tempfile::tempdir().unwrap();
    let store = store(&root, hosts.path());
    let got = store
        .pull(&format!("{}/test/deep:v1", reg.addr), None)
        .await
        .unwrap();
    assert_eq!(got.chain.len(), 60);
    let target = work.path().join("mnt");
    store.prepare_rootfs(&got.id, "deep", &target).unwrap();
    assert_eq!(std::fs::read(target.join("top")).unwrap(), b"layer 59\n");
    assert_eq!(std::fs::read(target.join("f00")).unwrap(), b"layer 0\n");
    assert_eq!(std::fs::read(target.join("f33")).unwrap(), b"layer 33\n");
    store.remove_rootfs("deep", &target).unwrap();
    assert!(!target.join("top").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_registry_is_retried() {
    let reg = Registry::start(false);
    let img = base_image(9);
    reg.push_image("test/busy", "v1", &img).await;
    let hosts = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    // Two 503s then service: within the retry budget.
    let proxy = Proxy::start_busy(reg.addr.clone(), 2).await;
    let hdir = hosts.path().join(&proxy.addr);
    std::fs::create_dir_all(&hdir).unwrap();
    std::fs::write(
        hdir.join("hosts.toml"),
        format!("server = \"http://{}\"\n", proxy.addr),
    )
    .unwrap();
    let store = store(root.path(), hosts.path());
    let got = store
        .pull(&format!("{}/test/busy:v1", proxy.addr), None)
        .await
        .unwrap();
    assert_eq!(got.id, img.id());
    // Always busy: the pull fails with a registry error naming the status.
    let proxy = Proxy::start_busy(reg.addr.clone(), usize::MAX).await;
    let hdir = hosts.path().join(&proxy.addr);
    std::fs::create_dir_all(&hdir).unwrap();
    std::fs::write(
        hdir.join("hosts.toml"),
        format!("server = \"http://{}\"\n", proxy.addr),
    )
    .unwrap();
    let err = store
        .pull(&format!("{}/test/busy:v1", proxy.addr), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_during_pull_keeps_shared_layers() {
    let reg = Registry::start(false);
    let shared = layer(
        &[Entry::File("shared", &noise(300_000, 10), 0o644)],
        Comp::Gzip,
    );
    let a = TestImage::new(
        vec![
            shared.clone(),
            layer(&[Entry::File("a", b"a", 0o644)], Comp::Gzip),
        ],
        &["/a"],
    );
    let b = TestImage::new(
        vec![shared, layer(&[Entry::File("b", b"b", 0o644)], Comp::Gzip)],
        &["/b"],
    );
    reg.push_image("test/a", "v1", &a).await;
    reg.push_image("test/b", "v1", &b).await;
    let work = tempfile::tempdir().unwrap();
    let hosts = tempfile::tempdir().unwrap();
    let store = store(&work.path().join("root"), hosts.path());
    let ra = format!("{}/test/a:v1", reg.addr);
    let rb = format!("{}/test/b:v1", reg.addr);
    for round in 0..8 {
        store.pull(&rb, None).await.unwrap();
        let s2 = store.clone();
        let rb2 = rb.clone();
        let remover = tokio::task::spawn_blocking(move || s2.remove(&rb2));
        let got = store.pull(&ra, None).await.unwrap();
        remover.await.unwrap().unwrap();
        // Everything image A needs is still there: a rootfs mounts and shows the shared layer.
        let target = work.path().join(format!("mnt{round}"));
        store.prepare_rootfs(&got.id, "gc-race", &target).unwrap();
        assert_eq!(
            std::fs::metadata(target.join("shared")).unwrap().len(),
            300_000
        );
        store.remove_rootfs("gc-race", &target).unwrap();
        store.remove(&ra).unwrap();
        assert_eq!(count_dir(&work.path().join("root/snapshots")), 0);
    }
}
