//! The project's shared test images (scripts/build-test-images.py, pushed to the registries started by
//! scripts/start-registries.sh). Expectations come only from $CRIUS_TEST_IMAGES_MANIFEST. When that file
//! does not exist (registries not set up on this machine) the test says so and does nothing.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crius_image::{Auth, ImageError, ImageStore, StoreOptions};
use serde_json::Value;

fn manifest() -> Option<Value> {
    let p = std::env::var("CRIUS_TEST_IMAGES_MANIFEST")
        .unwrap_or_else(|_| "/var/lib/crius-test/images/manifest.json".to_string());
    match std::fs::read(&p) {
        Ok(d) => Some(serde_json::from_slice(&d).expect("manifest.json is JSON")),
        Err(_) => {
            eprintln!("SKIPPED: {p} not found (run scripts/start-registries.sh and scripts/build-test-images.py)");
            None
        }
    }
}

fn open(root: &Path) -> ImageStore {
    let mut o = StoreOptions::new(root);
    o.hosts_dir = root.join("no-certs.d");
    o.stall_timeout = Duration::from_secs(30);
    ImageStore::open(o).unwrap()
}

fn in_root(target: &Path, p: &str) -> std::path::PathBuf {
    target.join(p.trim_start_matches('/'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_test_images() {
    let Some(m) = manifest() else { return };
    let plain = m["registries"]["plain"].as_str().unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    let store = open(&work.path().join("root"));
    let images = m["images"].as_object().unwrap();
    for info in images.values() {
        if let Some(t) = info["protected_target"].as_str() {
            std::fs::write(t, b"protected\n").unwrap();
        }
    }
    for (name, info) in images {
        let r = format!("{plain}/{name}");
        let t0 = Instant::now();
        let res = store.pull(&r, None).await;
        if name.starts_with("crius-test/evil-") {
            // Single-layer escapes must be refused. A symlink planted by a lower layer cannot be
            // followed at all (each layer unpacks into its own directory), so such an image may pull;
            // either way nothing may appear outside the store.
            match &res {
                Err(ImageError::UnsafeLayerEntry { .. }) => {}
                Ok(_) if name.contains("symlink") || name.contains("hardlink") => {}
                other => panic!("{name}: expected UnsafeLayerEntry, got {other:?}"),
            }
            for marker in info["escape_markers"].as_array().into_iter().flatten() {
                let p = marker.as_str().unwrap();
                assert!(std::fs::symlink_metadata(p).is_err(), "{name} created {p}");
            }
            if let Some(t) = info["protected_target"].as_str() {
                let meta = std::fs::metadata(t).unwrap();
                assert_eq!(meta.nlink(), 1, "{name}: hard link to {t} was created");
                assert_eq!(
                    std::fs::read(t).unwrap(),
                    b"protected\n",
                    "{name}: {t} was modified"
                );
                // Made by this test: it leaves nothing behind.
                let _ = std::fs::remove_file(t);
            }
            continue;
        }
        let img = res.unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("pulled {name} in {:?}", t0.elapsed());
        assert_eq!(img.id, info["image_id"].as_str().unwrap(), "{name}");
        assert_eq!(
            img.repo_digests,
            [format!(
                "{plain}/{}@{}",
                name.split(':').next().unwrap(),
                info["manifest_digest"].as_str().unwrap()
            )]
        );
        if let Some(cmd) = info["config"]["Cmd"].as_array() {
            let cmd: Vec<&str> = cmd.iter().map(|c| c.as_str().unwrap()).collect();
            assert_eq!(img.config.cmd, cmd, "{name}");
        }
        if let Some(u) = info["config"]["User"].as_str() {
            assert_eq!(img.config.user, u);
        }
        if let Some(s) = info["config"]["StopSignal"].as_str() {
            assert_eq!(img.config.stop_signal, s);
        }
        if let Some(expect) = info.get("expect") {
            let target = work.path().join("mnt");
            store.prepare_rootfs(&img.id, "layered", &target).unwrap();
            for (p, content) in expect["files"].as_object().unwrap() {
                assert_eq!(
                    std::fs::read_to_string(in_root(&target, p))
                        .unwrap_or_else(|e| panic!("{p}: {e}")),
                    content.as_str().unwrap(),
                    "{p}"
                );
            }
            for p in expect["absent"].as_array().unwrap() {
                let p = p.as_str().unwrap();
                assert!(
                    std::fs::symlink_metadata(in_root(&target, p)).is_err(),
                    "{p} should be absent"
                );
            }
            for pair in expect["hardlinks"].as_array().unwrap() {
                let a = std::fs::metadata(in_root(&target, pair[0].as_str().unwrap())).unwrap();
                let b = std::fs::metadata(in_root(&target, pair[1].as_str().unwrap())).unwrap();
                assert_eq!(a.ino(), b.ino(), "{pair:?}");
            }
            for (p, t) in expect["symlinks"].as_object().unwrap() {
                assert_eq!(
                    std::fs::read_link(in_root(&target, p)).unwrap(),
                    Path::new(t.as_str().unwrap())
                );
            }
            for (p, want) in expect["modes"].as_object().unwrap() {
                let meta = std::fs::symlink_metadata(in_root(&target, p)).unwrap();
                let mode = u32::from_str_radix(want["mode"].as_str().unwrap(), 8).unwrap();
                assert_eq!(meta.permissions().mode() & 0o7777, mode, "{p} mode");
                assert_eq!(meta.uid() as u64, want["uid"].as_u64().unwrap(), "{p} uid");
                assert_eq!(meta.gid() as u64, want["gid"].as_u64().unwrap(), "{p} gid");
            }
            store.remove_rootfs("layered", &target).unwrap();
        }
    }

    // Authenticated registry.
    let auth = &m["auth"];
    let r = format!(
        "{}/crius-test/busybox:latest",
        auth["registry"].as_str().unwrap()
    );
    let store2 = open(&work.path().join("root2"));
    assert!(matches!(
        store2.pull(&r, None).await,
        Err(ImageError::Unauthorized { .. })
    ));
    let creds = Auth {
        username: auth["username"].as_str().unwrap().into(),
        password: auth["password"].as_str().unwrap().into(),
        ..Default::default()
    };
    store2.pull(&r, Some(&creds)).await.unwrap();

    // Archives.
    for (kind, a) in m["archives"].as_object().unwrap() {
        let store3 = open(&work.path().join(format!("root-{kind}")));
        let refs = store3
            .import(Path::new(a["path"].as_str().unwrap()))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let img = store3.get(&refs[0]).unwrap().unwrap();
        assert_eq!(img.id, a["image_id"].as_str().unwrap(), "{kind}");
        let want = crius_image::reference::parse(a["reference"].as_str().unwrap())
            .unwrap()
            .to_string();
        assert!(refs.contains(&want), "{kind}: {refs:?} lacks {want}");
    }
}
