//! Pushing test-built images to the shared plain registry (127.0.0.1:5000) with curl, under
//! repositories unique to one run, and removing them again.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::{registry, test_dir};

pub fn sha256_file(p: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}", p.display());
    let text = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

pub fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?}: {}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Uploads one blob with the distribution API (POST an upload, PUT it with its digest).
pub fn push_blob(repo: &str, file: &Path, digest: &str) {
    let headers = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-X",
        "POST",
        &format!("http://{}/v2/{repo}/blobs/uploads/", registry()),
    ]);
    let location = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Location in upload response: {headers}"));
    let url = if location.starts_with('/') {
        format!("http://{}{location}", registry())
    } else {
        location
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{url}{sep}digest={digest}"),
    ]);
}

pub fn registry_blob(digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    test_dir().join(format!(
        "registry-plain/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ))
}

/// One layer blob built by a test, with its digests.
pub struct TestLayer {
    pub path: PathBuf,
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub media_type: &'static str,
}

/// A one-file tar layer (gzip-compressed or not) whose content is the caller's.
pub fn make_layer(w: &Path, name: &str, file: &str, content: &str, gzip: bool) -> TestLayer {
    let src = w.join(format!("{name}-src"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(file), content).unwrap();
    let tar = w.join(format!("{name}.tar"));
    let st = Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg(file)
        .status()
        .expect("run tar");
    assert!(st.success(), "tar {}", tar.display());
    let diff_id = sha256_file(&tar);
    let (path, media_type) = if gzip {
        let gz = w.join(format!("{name}.tar.gz"));
        let out = std::fs::File::create(&gz).unwrap();
        let st = Command::new("gzip")
            .args(["-n", "-c"])
            .arg(&tar)
            .stdout(out)
            .status()
            .expect("run gzip");
        assert!(st.success(), "gzip {}", tar.display());
        (gz, "application/vnd.oci.image.layer.v1.tar+gzip")
    } else {
        (tar, "application/vnd.oci.image.layer.v1.tar")
    };
    TestLayer {
        digest: sha256_file(&path),
        size: std::fs::metadata(&path).unwrap().len(),
        path,
        diff_id,
        media_type,
    }
}

/// A repository name no other test or run uses.
pub fn unique_repo(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("crius-test/{prefix}-{}-{nanos}", std::process::id())
}

/// Pushes an OCI image of `layers` as `repo:tag` to the plain registry; returns (config, manifest)
/// digests.
pub fn push_image(w: &Path, repo: &str, tag: &str, layers: &[&TestLayer]) -> (String, String) {
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/unique.txt"], "Labels": {"org.crius.test.image": repo, "tag": tag}},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
    });
    let config_path = w.join(format!("config-{tag}.json"));
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let config_digest = sha256_file(&config_path);
    let descs: Vec<Value> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size}))
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": std::fs::metadata(&config_path).unwrap().len(),
        },
        "layers": descs,
    });
    let manifest_path = w.join(format!("manifest-{tag}.json"));
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let manifest_digest = sha256_file(&manifest_path);
    for l in layers {
        push_blob(repo, &l.path, &l.digest);
    }
    push_blob(repo, &config_path, &config_digest);
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &format!("@{}", manifest_path.display()),
        &format!("http://{}/v2/{repo}/manifests/{tag}", registry()),
    ]);
    (config_digest, manifest_digest)
}

/// Removes a test's own repository and blobs from the plain registry's storage.
pub fn drop_repo(repo: &str, digests: &[&String]) {
    let v2 = test_dir().join("registry-plain/docker/registry/v2");
    let _ = std::fs::remove_dir_all(v2.join("repositories").join(repo));
    for dg in digests {
        if let Some(p) = registry_blob(dg).parent() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}
