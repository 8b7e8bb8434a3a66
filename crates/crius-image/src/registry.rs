//! The distribution-API client for one pull: endpoint selection from the hosts config, TLS per endpoint,
//! bearer-token and basic authentication, manifest fetches with digest checks, and blob streams whose
//! reads are bounded by the stall timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::error::ImageError;
use crate::hosts::Endpoint;
use crate::reference::Reference;
use crate::Auth;

pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

const MAX_MANIFEST: usize = 8 << 20;
/// Real token responses are a few KiB (a JWT plus expiry fields).
const MAX_TOKEN_RESPONSE: usize = 1 << 20;
/// Retries of a request answered with 429/502/503/504.
const BUSY_RETRIES: u32 = 2;

/// Clients keyed by their TLS settings; building one loads the native roots, so they are shared.
type ClientKey = (
    bool,
    Vec<std::path::PathBuf>,
    Option<(std::path::PathBuf, Option<std::path::PathBuf>)>,
);

#[derive(Default)]
pub(crate) struct Clients {
    map: Mutex<HashMap<ClientKey, reqwest::Client>>,
}

impl Clients {
    fn get(&self, ep: &Endpoint, stall: Duration) -> Result<reqwest::Client, ImageError> {
        let key = (ep.skip_verify, ep.ca.clone(), ep.client.clone());
        if let Ok(m) = self.map.lock() {
            if let Some(c) = m.get(&key) {
                return Ok(c.clone());
            }
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(stall)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("crius/", env!("CARGO_PKG_VERSION")));
        if ep.skip_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        for ca in &ep.ca {
            let pem = std::fs::read(ca).map_err(|e| ImageError::io(ca, e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ImageError::HostsConfig {
                    path: ca.clone(),
                    detail: format!("invalid CA bundle: {e}"),
                }
            })?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let Some((cert, key)) = &ep.client {
            let mut pem = std::fs::read(cert).map_err(|e| ImageError::io(cert, e))?;
            if let Some(k) = key {
                pem.push(b'\n');
                pem.extend(std::fs::read(k).map_err(|e| ImageError::io(k, e))?);
            }
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| ImageError::HostsConfig {
                path: cert.clone(),
                detail: format!("invalid client certificate/key: {e}"),
            })?;
            b = b.identity(id);
        }
        let client = b.build().map_err(|e| ImageError::Registry {
            registry: ep.url.to_string(),
            detail: format!("cannot build HTTP client: {e}"),
        })?;
        if let Ok(mut m) = self.map.lock() {
            m.insert(key, client.clone());
        }
        Ok(client)
    }
}

#[derive(Clone)]
enum Credentials {
    None,
    Basic { user: String, pass: String },
    IdentityToken(String),
    RegistryToken(String),
}

impl Credentials {
    fn from_auth(auth: Option<&Auth>) -> Result<Self, ImageError> {
        let Some(a) = auth else {
            return Ok(Credentials::None);
        };
        if !a.registry_token.is_empty() {
            return Ok(Credentials::RegistryToken(a.registry_token.clone()));
        }
        if !a.identity_token.is_empty() {
            return Ok(Credentials::IdentityToken(a.identity_token.clone()));
        }
        if !a.username.is_empty() || !a.password.is_empty() {
            return Ok(Credentials::Basic {
                user: a.username.clone(),
                pass: a.password.clone(),
            });
        }
        if !a.auth.is_empty() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.auth.trim())
                .map_err(|_| ImageError::Unauthorized {
                    registry: String::new(),
                    detail: "the auth field is not valid base64".into(),
                })?;
            let s = String::from_utf8(raw).map_err(|_| ImageError::Unauthorized {
                registry: String::new(),
                detail: "the auth field is not UTF-8".into(),
            })?;
            let (u, p) = s.split_once(':').ok_or_else(|| ImageError::Unauthorized {
                registry: String::new(),
                detail: "the auth field is not user:password".into(),
            })?;
            return Ok(Credentials::Basic {
                user: u.to_string(),
                pass: p.to_string(),
            });
        }
        Ok(Credentials::None)
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

/// Parses `Bearer realm="...",service="...",scope="..."` (quoted or token values).
pub(crate) fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = match h.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r),
        None => (h, ""),
    };
    let mut params = HashMap::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = rest[ks..i].trim().to_ascii_lowercase();
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch_len = rest[i..].chars().next().map(|c| c.len_utf8()).unwrap_or(1);
                val.push_str(&rest[i..i + ch_len]);
                i += ch_len;
            }
            i += 1;
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = rest[vs..i].trim().to_string();
        }
        if !key.is_empty() {
            params.insert(key, val);
        }
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// One pull's conversation with a registry (and its mirrors).
pub(crate) struct Session {
    clients: Arc<Clients>,
    reference: Reference,
    endpoints: Vec<Endpoint>,
    creds: Credentials,
    stall: Duration,
    /// Authorization header value per endpoint host, learnt from challenges.
    authz: Mutex<HashMap<String, HeaderValue>>,
    /// Endpoint index that answered the manifest: blobs are tried there first.
    preferred: Mutex<Option<usize>>,
}

pub(crate) struct Fetched {
    pub data: Bytes,
    pub media_type: String,
    pub digest: String,
}

fn registry_err(ep: &Url, detail: impl Into<String>) -> ImageError {
    ImageError::Registry {
        registry: ep.to_string(),
        detail: detail.into(),
    }
}

fn host_key(u: &Url) -> String {
    format!(
        "{}://{}:{}",
        u.scheme(),
        u.host_str().unwrap_or(""),
        u.port_or_known_default().unwrap_or(0)
    )
}

impl Session {
    pub fn new(
        clients: Arc<Clients>,
        reference: Reference,
        endpoints: Vec<Endpoint>,
        auth: Option<&Auth>,
        stall: Duration,
    ) -> Result<Self, ImageError> {
        let creds = Credentials::from_auth(auth)?;
        // Localhost without config: try HTTPS first, then plain HTTP (containerd's rule).
        let mut eps = Vec::new();
        for ep in endpoints {
            if ep.http_fallback && ep.url.scheme() == "https" {
                let mut plain = ep.clone();
                let _ = plain.url.set_scheme("http");
                eps.push(ep);
                eps.push(plain);
            } else {
                eps.push(ep);
            }
        }
        Ok(Session {
            clients,
            reference,
            endpoints: eps,
            creds,
            stall,
            authz: Mutex::new(HashMap::new()),
            preferred: Mutex::new(None),
        })
    }

    fn url(&self, ep: &Endpoint, kind: &str, object: &str) -> Result<Url, ImageError> {
        let base = ep.url.as_str().trim_end_matches('/');
        let mut u = Url::parse(&format!(
            "{base}/{}/{kind}/{object}",
            self.reference.repository
        ))
        .map_err(|e| registry_err(&ep.url, format!("bad URL: {e}")))?;
        if ep.mirror {
            u.query_pairs_mut()
                .append_pair("ns", &self.reference.registry);
        }
        Ok(u)
    }

    async fn timed<F: std::future::Future>(
        &self,
        what: &str,
        f: F,
    ) -> Result<F::Output, ImageError> {
        tokio::time::timeout(self.stall, f)
            .await
            .map_err(|_| ImageError::Timeout {
                what: what.to_string(),
                secs: self.stall.as_secs(),
            })
    }

    /// Sends a request, answering one authentication challenge if the registry asks for it.
    async fn send(
        &self,
        ep: &Endpoint,
        method: Method,
        url: Url,
        accept: Option<&str>,
        what: &str,
    ) -> Result<reqwest::Response, ImageError> {
        let client = self.clients.get(ep, self.stall)?;
        let key = host_key(&ep.url);
        let mut answered = false;
        let mut busy_retries = 0;
        loop {
            let mut req = client.request(method.clone(), url.clone());
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            for (k, v) in &ep.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let cached = self.authz.lock().ok().and_then(|m| m.get(&key).cloned());
            if let Some(h) = cached {
                req = req.header(AUTHORIZATION, h);
            } else if let Credentials::RegistryToken(t) = &self.creds {
                req = req.bearer_auth(t);
            }
            let resp = self
                .timed(what, req.send())
                .await?
                .map_err(|e| registry_err(&ep.url, format!("{what}: {}", error_chain(&e))))?;
            match resp.status() {
                // An overloaded but reachable registry gets a short second chance; transport errors do
                // not, as they include the expected HTTPS failure before a localhost HTTP fallback.
                StatusCode::TOO_MANY_REQUESTS
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
                    if busy_retries < BUSY_RETRIES =>
                {
                    busy_retries += 1;
                    tokio::time::sleep(Duration::from_millis(250 << busy_retries)).await;
                }
                StatusCode::UNAUTHORIZED if !answered => {
                    answered = true;
                    let ch = resp
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_challenge);
                    let Some(ch) = ch else {
                        return Err(ImageError::Unauthorized {
                            registry: self.reference.registry.clone(),
                            detail: format!(
                                "{what}: 401 without a usable WWW-Authenticate challenge"
                            ),
                        });
                    };
                    let value = self.answer(ep, &ch, what).await?;
                    if let Ok(mut m) = self.authz.lock() {
                        m.insert(key.clone(), value);
                    }
                }
                StatusCode::UNAUTHORIZED => {
                    let detail = match self.creds {
                        Credentials::None => {
                            "authentication required and no credentials were given"
                        }
                        _ => "credentials rejected",
                    };
                    return Err(ImageError::Unauthorized {
                        registry: self.reference.registry.clone(),
                        detail: format!("{what}: {detail}"),
                    });
                }
                StatusCode::FORBIDDEN => {
                    return Err(ImageError::Forbidden {
                        registry: self.reference.registry.clone(),
                        detail: format!("{what}: 403 Forbidden"),
                    })
                }
                _ => return Ok(resp),
            }
        }
    }

    /// Produces the Authorization header answering `ch`.
    async fn answer(
        &self,
        ep: &Endpoint,
        ch: &Challenge,
        what: &str,
    ) -> Result<HeaderValue, ImageError> {
        let unauthorized = |detail: String| ImageError::Unauthorized {
            registry: self.reference.registry.clone(),
            detail,
        };
        match ch.scheme.as_str() {
            "basic" => match &self.creds {
                Credentials::Basic { user, pass } => {
                    let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                    HeaderValue::from_str(&format!("Basic {v}"))
                        .map_err(|_| unauthorized("credentials are not a valid header".into()))
                }
                _ => Err(unauthorized(format!(
                    "{what}: registry requires basic authentication and no username/password was given"
                ))),
            },
            "bearer" => {
                let realm = ch
                    .params
                    .get("realm")
                    .ok_or_else(|| unauthorized(format!("{what}: bearer challenge without realm")))?;
                let mut realm = Url::parse(realm).map_err(|e| unauthorized(format!("bad token realm: {e}")))?;
                let service = ch.params.get("service").cloned().unwrap_or_default();
                let scope = ch
                    .params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
                let client = self.clients.get(ep, self.stall)?;
                let req = match &self.creds {
                    Credentials::IdentityToken(tok) => {
                        let form = [
                            ("grant_type", "refresh_token"),
                            ("refresh_token", tok.as_str()),
                            ("service", service.as_str()),
                            ("scope", scope.as_str()),
                            ("client_id", "crius"),
                        ];
                        client.post(realm).form(&form)
                    }
                    other => {
                        {
                            let mut q = realm.query_pairs_mut();
                            if !service.is_empty() {
                                q.append_pair("service", &service);
                            }
                            q.append_pair("scope", &scope);
                        }
                        let r = client.get(realm);
                        match other {
                            Credentials::Basic { user, pass } => r.basic_auth(user, Some(pass)),
                            _ => r,
                        }
                    }
                };
                let resp = self
                    .timed("token request", req.send())
                    .await?
                    .map_err(|e| registry_err(&ep.url, format!("token request: {}", error_chain(&e))))?;
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(unauthorized(format!("token server answered {status}")));
                }
                if !status.is_success() {
                    return Err(registry_err(&ep.url, format!("token server answered {status}")));
                }
                // A token server is as untrusted as the registry: its answer is read to a bound.
                let body = self.read_small(resp, "token response", MAX_TOKEN_RESPONSE).await?;
                #[derive(serde::Deserialize)]
                struct Tok {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: Tok = serde_json::from_slice(&body)
                    .map_err(|e| registry_err(&ep.url, format!("token response is not JSON: {e}")))?;
                let tok = t
                    .token
                    .filter(|s| !s.is_empty())
                    .or(t.access_token)
                    .ok_or_else(|| registry_err(&ep.url, "token response without a token"))?;
                HeaderValue::from_str(&format!("Bearer {tok}"))
                    .map_err(|_| registry_err(&ep.url, "token is not a valid header value"))
            }
            other => Err(unauthorized(format!("{what}: unsupported auth scheme {other:?}"))),
        }
    }

    /// Fetches a manifest or index by tag or digest, trying endpoints in order; a digest is verified.
    pub async fn manifest(&self, object: &str) -> Result<Fetched, ImageError> {
        let by_digest = object.contains(':');
        let mut last: Option<ImageError> = None;
        for (i, ep) in self.endpoints.iter().enumerate() {
            if !(ep.pull && (by_digest || ep.resolve)) {
                continue;
            }
            let url = self.url(ep, "manifests", object)?;
            let what = format!("manifest {}", self.reference.with_object(object));
            match self.fetch_manifest_at(ep, url, &what).await {
                Ok(f) => {
                    if by_digest && f.digest != object {
                        return Err(ImageError::DigestMismatch {
                            what,
                            expected: object.to_string(),
                            actual: f.digest,
                        });
                    }
                    if let Ok(mut p) = self.preferred.lock() {
                        *p = Some(i);
                    }
                    return Ok(f);
                }
                // Credentials problems are the user's to fix; another mirror will not help.
                Err(e @ (ImageError::Unauthorized { .. } | ImageError::Forbidden { .. })) => {
                    return Err(e)
                }
                Err(e) => {
                    tracing::debug!(endpoint = %ep.url, error = %e, "manifest fetch failed, trying next endpoint");
                    last = Some(prefer(last, e));
                }
            }
        }
        Err(last.unwrap_or_else(|| ImageError::Registry {
            registry: self.reference.registry.clone(),
            detail: "no endpoint with pull/resolve capability is configured".into(),
        }))
    }

    async fn fetch_manifest_at(
        &self,
        ep: &Endpoint,
        url: Url,
        what: &str,
    ) -> Result<Fetched, ImageError> {
        let resp = self
            .send(ep, Method::GET, url, Some(MANIFEST_ACCEPT), what)
            .await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Err(ImageError::NotFound {
                reference: self.reference.to_string(),
            });
        }
        if !status.is_success() {
            return Err(registry_err(&ep.url, format!("{what}: HTTP {status}")));
        }
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let data = self.read_small(resp, what, MAX_MANIFEST).await?;
        let digest = crate::content::sha256_digest(&data);
        Ok(Fetched {
            data,
            media_type,
            digest,
        })
    }

    async fn read_small(
        &self,
        mut resp: reqwest::Response,
        what: &str,
        max: usize,
    ) -> Result<Bytes, ImageError> {
        let mut buf = Vec::new();
        loop {
            let chunk = self
                .timed(what, resp.chunk())
                .await?
                .map_err(|e| registry_err(resp.url(), format!("{what}: {}", error_chain(&e))))?;
            match chunk {
                Some(c) => {
                    buf.extend_from_slice(&c);
                    if buf.len() > max {
                        return Err(registry_err(
                            resp.url(),
                            format!("{what}: larger than {max} bytes"),
                        ));
                    }
                }
                None => return Ok(Bytes::from(buf)),
            }
        }
    }

    /// Fetches a small blob (a config) fully into memory; the caller verifies it.
    pub async fn small_blob(&self, digest: &str, max: usize) -> Result<Bytes, ImageError> {
        let resp = self.blob(digest).await?;
        self.read_small(resp, &format!("blob {digest}"), max).await
    }

    /// Opens a blob stream, trying the endpoint that served the manifest first.
    pub async fn blob(&self, digest: &str) -> Result<reqwest::Response, ImageError> {
        let mut order: Vec<usize> = (0..self.endpoints.len()).collect();
        if let Some(p) = self.preferred.lock().ok().and_then(|p| *p) {
            order.retain(|i| *i != p);
            order.insert(0, p);
        }
        let what = format!("blob {} of {}", digest, self.reference.name());
        let mut last: Option<ImageError> = None;
        for i in order {
            let ep = &self.endpoints[i];
            if !ep.pull {
                continue;
            }
            let url = self.url(ep, "blobs", digest)?;
            match self.send(ep, Method::GET, url, None, &what).await {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) if r.status() == StatusCode::NOT_FOUND => {
                    last = Some(prefer(
                        last,
                        ImageError::NotFound {
                            reference: format!("{}@{}", self.reference.name(), digest),
                        },
                    ))
                }
                Ok(r) => {
                    last = Some(prefer(
                        last,
                        registry_err(&ep.url, format!("{what}: HTTP {}", r.status())),
                    ))
                }
                Err(e @ (ImageError::Unauthorized { .. } | ImageError::Forbidden { .. })) => {
                    return Err(e)
                }
                Err(e) => last = Some(prefer(last, e)),
            }
        }
        Err(last.unwrap_or_else(|| {
            registry_err(&self.endpoints[0].url, format!("{what}: no pull endpoint"))
        }))
    }

    /// Reads the next chunk of a blob body, failing when nothing arrives within the stall timeout.
    pub async fn next_chunk(
        &self,
        resp: &mut reqwest::Response,
        what: &str,
    ) -> Result<Option<Bytes>, ImageError> {
        self.timed(what, resp.chunk())
            .await?
            .map_err(|e| registry_err(resp.url(), format!("{what}: {}", error_chain(&e))))
    }
}

/// Keeps the most telling error across endpoints: "not found" beats transport errors.
fn prefer(old: Option<ImageError>, new: ImageError) -> ImageError {
    match (old, new) {
        (Some(o @ ImageError::NotFound { .. }), ImageError::Registry { .. }) => o,
        (_, n) => n,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull");
    }

    #[test]
    fn parses_basic_and_unquoted() {
        let c = parse_challenge(r#"Basic realm="basic-realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "basic-realm");
        let c = parse_challenge("Bearer realm=http://x/t, service=s , error=\"invalid_token\"")
            .unwrap();
        assert_eq!(c.params["realm"], "http://x/t");
        assert_eq!(c.params["service"], "s");
        assert_eq!(c.params["error"], "invalid_token");
    }

    #[test]
    fn credentials_from_auth_field() {
        let a = Auth {
            auth: base64::engine::general_purpose::STANDARD.encode("u:p:w"),
            ..Default::default()
        };
        match Credentials::from_auth(Some(&a)).unwrap() {
            Credentials::Basic { user, pass } => {
                assert_eq!(user, "u");
                assert_eq!(pass, "p:w");
            }
            _ => panic!("expected basic credentials"),
        }
        let a = Auth {
            auth: "!!!".into(),
            ..Default::default()
        };
        assert!(Credentials::from_auth(Some(&a)).is_err());
    }
}
