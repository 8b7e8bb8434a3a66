//! Pulling over HTTPS from a real docker-registry with a test CA: trusted through hosts.toml `ca`,
//! accepted with `skip_verify`, and refused without configuration.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use crius_image::ImageError;

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for IP 127.0.0.1 signed by it (rustls refuses a CA as end entity).
fn make_pki(dir: &Path) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=crius-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        dir,
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
        dir,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_configured_ca_or_skip_verify() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let reg = Registry::start_tls(
        &pki.path().join("server.pem"),
        &pki.path().join("server.key"),
    );
    let img = TestImage::new(
        vec![layer(&[Entry::File("tls", b"ok\n", 0o644)], Comp::Gzip)],
        &["/tls"],
    );
    reg.push_image("test/tls", "v1", &img).await;
    let r = format!("{}/test/tls:v1", reg.addr);

    let hosts = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = store(root.path(), hosts.path());
    // Unknown CA: refused (and the plain-HTTP fallback cannot talk to a TLS server either).
    let err = store.pull(&r, None).await.unwrap_err();
    assert!(matches!(err, ImageError::Registry { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());

    // Trusted through hosts.toml `ca` (relative to the host directory).
    let hdir = hosts.path().join(&reg.addr);
    std::fs::create_dir_all(&hdir).unwrap();
    std::fs::copy(pki.path().join("ca.pem"), hdir.join("ca.pem")).unwrap();
    std::fs::write(
        hdir.join("hosts.toml"),
        format!("server = \"https://{}\"\nca = \"ca.pem\"\n", reg.addr),
    )
    .unwrap();
    assert_eq!(store.pull(&r, None).await.unwrap().id, img.id());
    store.remove(&r).unwrap();

    // skip_verify without a CA.
    std::fs::write(
        hdir.join("hosts.toml"),
        format!("server = \"https://{}\"\nskip_verify = true\n", reg.addr),
    )
    .unwrap();
    assert_eq!(store.pull(&r, None).await.unwrap().id, img.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_client_certificate() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let d = pki.path();
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=crius-client",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ],
        d,
    );
    std::fs::write(
        d.join("cext.cnf"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "cext.cnf",
            "-out",
            "client.pem",
        ],
        d,
    );
    let reg = Registry::start_tls_extra(
        &d.join("server.pem"),
        &d.join("server.key"),
        &format!("    clientcas:\n      - {}\n", d.join("ca.pem").display()),
    );
    let img = TestImage::new(
        vec![layer(&[Entry::File("mtls", b"ok\n", 0o644)], Comp::Gzip)],
        &["/mtls"],
    );
    // The push helper has no client certificate, so seed the registry's storage through a twin
    // registry without clientcas sharing the same storage directory.
    let twin = Registry::start_tls_on(&d.join("server.pem"), &d.join("server.key"), reg.dir.path());
    twin.push_image("test/mtls", "v1", &img).await;
    let r = format!("{}/test/mtls:v1", reg.addr);

    let hosts = tempfile::tempdir().unwrap();
    let hdir = hosts.path().join(&reg.addr);
    std::fs::create_dir_all(&hdir).unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = store(root.path(), hosts.path());
    std::fs::write(
        hdir.join("hosts.toml"),
        format!(
            "server = \"https://{}\"\nca = \"{}\"\n",
            reg.addr,
            d.join("ca.pem").display()
        ),
    )
    .unwrap();
    let err = store.pull(&r, None).await.unwrap_err();
    assert!(matches!(err, ImageError::Registry { .. }), "{err}");
    std::fs::write(
        hdir.join("hosts.toml"),
        format!(
            "server = \"https://{}\"\nca = \"{}\"\nclient = [[\"{}\", \"{}\"]]\n",
            reg.addr,
            d.join("ca.pem").display(),
            d.join("client.pem").display(),
            d.join("client.key").display()
        ),
    )
    .unwrap();
    // A new store: TLS clients are cached per store.
    let store = common::store(&root.path().join("second"), hosts.path());
    assert_eq!(store.pull(&r, None).await.unwrap().id, img.id());
}
