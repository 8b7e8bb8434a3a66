//! Bearer-token authentication against a real docker-registry configured for token auth. The token
//! service is a small HTTP server in this test that issues RS256 JWTs signed (with the openssl CLI) by a
//! key whose certificate the registry trusts; the registry verifies them for real.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use crius_image::{Auth, ImageError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVICE: &str = "crius-registry";
const ISSUER: &str = "crius-test-issuer";

fn b64url(d: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

/// Makes a key and self-signed certificate, returns (dir, signed JWT for `repo`).
fn make_token(dir: &std::path::Path, repo: &str) -> String {
    let key = dir.join("key.pem");
    let cert = dir.join("cert.pem");
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=crius-token",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl req");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl x509");
    assert!(der.status.success());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(&der.stdout)]});
    let claims = serde_json::json!({"iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 3600,
        "nbf": now - 60, "iat": now - 60, "jti": "crius-test",
        "access": [{"type": "repository", "name": repo, "actions": ["pull", "push"]}]});
    let signing_input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(&header).unwrap()),
        b64url(&serde_json::to_vec(&claims).unwrap())
    );
    let input = dir.join("input");
    std::fs::write(&input, &signing_input).unwrap();
    let sig = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&key)
        .arg(&input)
        .output()
        .expect("openssl dgst");
    assert!(sig.status.success());
    format!("{signing_input}.{}", b64url(&sig.stdout))
}

/// Serves `token` to requests carrying the test user's basic credentials; 401 otherwise. Records the
/// query strings it saw.
async fn token_server(token: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let good = format!(
        "authorization: basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"))
    )
    .to_ascii_lowercase();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let token = token.clone();
            let seen = seen2.clone();
            let good = good.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let line = head.lines().next().unwrap_or("").to_string();
                seen.lock().unwrap().push(line);
                let authorized = head.to_ascii_lowercase().lines().any(|l| l.trim() == good);
                let resp = if authorized {
                    let body = serde_json::json!({"token": token, "expires_in": 3600}).to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                };
                let _ = c.write_all(resp.as_bytes()).await;
                let _ = c.shutdown().await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_flow_with_credentials() {
    let keys = tempfile::tempdir().unwrap();
    let token = make_token(keys.path(), "test/bearer");
    let (token_addr, seen) = token_server(token.clone()).await;
    let yaml = format!(
        "  token:\n    realm: http://{token_addr}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        keys.path().join("cert.pem").display()
    );
    let reg = Registry::start_token(&yaml, token.clone());
    let img = TestImage::new(
        vec![layer(&[Entry::File("hi", b"bearer\n", 0o644)], Comp::Gzip)],
        &["/hi"],
    );
    reg.push_image("test/bearer", "v1", &img).await;

    let root = tempfile::tempdir().unwrap();
    let hosts = tempfile::tempdir().unwrap();
    let store = store(root.path(), hosts.path());
    let r = format!("{}/test/bearer:v1", reg.addr);

    // Anonymous: the token service refuses, which surfaces as Unauthorized.
    let err = store.pull(&r, None).await.unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");

    let creds = Auth {
        username: USER.into(),
        password: PASS.into(),
        ..Default::default()
    };
    let got = store.pull(&r, Some(&creds)).await.unwrap();
    assert_eq!(got.id, img.id());
    let lines = seen.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("scope=repository%3Atest%2Fbearer%3Apull")
                && l.contains("service=crius-registry")),
        "token requests: {lines:?}"
    );

    // A registry token from the kubelet is sent as is, without asking the token service.
    store.remove(&r).unwrap();
    let before = seen.lock().unwrap().len();
    let direct = Auth {
        registry_token: token,
        ..Default::default()
    };
    assert_eq!(store.pull(&r, Some(&direct)).await.unwrap().id, img.id());
    assert_eq!(seen.lock().unwrap().len(), before);
}

/// A hostile registry whose token endpoint answers with an endless body: the pull must fail on the
/// size bound (not after reading it all, not with a JSON error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_token_response_is_cut_at_its_bound() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sent2 = sent.clone();
    let realm = format!("http://{addr}/token");
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let realm = realm.clone();
            let sent = sent2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                if head.starts_with("GET /token") {
                    let _ = c
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"token\": \"")
                        .await;
                    let block = vec![b'a'; 64 * 1024];
                    // At most 256 MiB, so a client without a bound fails on JSON, not on this test.
                    for _ in 0..4096 {
                        if c.write_all(&block).await.is_err() {
                            return;
                        }
                        sent.fetch_add(block.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    let _ = c.write_all(b"\"}").await;
                } else {
                    let resp = format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"evil\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    let _ = c.write_all(resp.as_bytes()).await;
                }
                let _ = c.shutdown().await;
            });
        }
    });
    let root = tempfile::tempdir().unwrap();
    let hosts = tempfile::tempdir().unwrap();
    // Plain HTTP straight away (this server would sit on a TLS hello until the stall timeout).
    std::fs::create_dir(hosts.path().join(&addr)).unwrap();
    std::fs::write(
        hosts.path().join(&addr).join("hosts.toml"),
        format!("server = \"http://{addr}\"\n"),
    )
    .unwrap();
    let store = store(root.path(), hosts.path());
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        store.pull(&format!("{addr}/evil/token:v1"), None),
    )
    .await
    .expect("the pull must not hang")
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("token response") && msg.contains("larger than"),
        "want the size bound: {msg}"
    );
    let n = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        n < 64 << 20,
        "{n} bytes were sent before the client gave up"
    );
}
