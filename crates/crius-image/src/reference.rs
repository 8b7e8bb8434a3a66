//! Image reference parsing and normalisation (`busybox` → `docker.io/library/busybox:latest`), following the
//! grammar of the distribution project so crius names images exactly like containerd and CRI-O do.

use std::fmt;

use crate::error::ImageError;

pub const DEFAULT_REGISTRY: &str = "docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, possibly with a port, e.g. `docker.io` or `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path inside the registry, e.g. `library/busybox`.
    pub repository: String,
    /// Tag; `latest` is filled in when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// Manifest digest, e.g. `sha256:...`.
    pub digest: Option<String>,
}

impl Reference {
    /// `registry/repository`, the name used in repo tags and repo digests.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `name:tag`, when a tag is present.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{}", self.name(), t))
    }

    /// `name@digest` for the given manifest digest.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{}", self.name(), digest)
    }

    /// `name@digest` or `name:tag` for a registry object.
    pub fn with_object(&self, object: &str) -> String {
        if object.contains(':') {
            format!("{}@{}", self.name(), object)
        } else {
            format!("{}:{}", self.name(), object)
        }
    }

    /// What to ask the registry for: the digest when pinned, otherwise the tag.
    pub fn object(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn invalid(reference: &str, reason: impl Into<String>) -> ImageError {
    ImageError::InvalidReference {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

/// True for `sha256:<64 hex>`.
pub fn is_digest(s: &str) -> bool {
    match s.split_once(':') {
        Some(("sha256", hex)) => is_hex(hex) && hex.len() == 64,
        Some((alg, hex)) => {
            !alg.is_empty()
                && alg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
                && hex.len() >= 32
                && is_hex(hex)
        }
        None => false,
    }
}

pub(crate) fn is_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: one '.', one or two '_', or any number of '-'.
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_domain(d: &str) -> bool {
    // host[:port]; host may be a bracketed IPv6 literal.
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => {
                if h.is_empty()
                    || !h
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
                {
                    return false;
                }
                (
                    None,
                    p.strip_prefix(':').map(Some).unwrap_or(if p.is_empty() {
                        None
                    } else {
                        Some("x")
                    }),
                )
            }
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if let Some(h) = host {
        if h.is_empty() {
            return false;
        }
        for label in h.split('.') {
            let lb = label.as_bytes();
            if lb.is_empty()
                || !lb[0].is_ascii_alphanumeric()
                || !lb[lb.len() - 1].is_ascii_alphanumeric()
                || !lb.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            {
                return false;
            }
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

/// Parses and normalises an image reference.
pub fn parse(s: &str) -> Result<Reference, ImageError> {
    if s.is_empty() {
        return Err(invalid(s, "empty reference"));
    }
    if s.trim() != s || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(s, "contains whitespace"));
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => {
            if !is_digest(d) {
                return Err(invalid(s, format!("invalid digest {d:?}")));
            }
            (r, Some(d.to_string()))
        }
        None => (s, None),
    };
    // A tag is after the last ':' that follows the last '/' (a ':' before it is a port).
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let t = &rest[last_slash + i + 1..];
            if !valid_tag(t) {
                return Err(invalid(s, format!("invalid tag {t:?}")));
            }
            (&rest[..last_slash + i], Some(t.to_string()))
        }
        None => (rest, None),
    };
    if name.is_empty() {
        return Err(invalid(s, "empty repository name"));
    }
    let (registry, mut repository) = match name.split_once('/') {
        Some((first, remainder))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.starts_with('[') =>
        {
            if !valid_domain(first) {
                return Err(invalid(s, format!("invalid registry host {first:?}")));
            }
            (first.to_string(), remainder.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
    };
    let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
        DEFAULT_REGISTRY.to_string()
    } else {
        registry
    };
    if repository.is_empty() {
        return Err(invalid(s, "empty repository name"));
    }
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid(s, "repository name must be lowercase"));
    }
    if let Some(bad) = repository.split('/').find(|c| !valid_component(c)) {
        return Err(invalid(s, format!("invalid path component {bad:?}")));
    }
    if registry == DEFAULT_REGISTRY && !repository.contains('/') {
        if repository.len() == 64 && is_hex(&repository) && tag.is_none() && digest.is_none() {
            // Docker refuses this too: it would be indistinguishable from an image id.
            return Err(invalid(s, "a 64-hex name is an image id, not a repository"));
        }
        repository = format!("library/{repository}");
    }
    if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
        return Err(invalid(
            s,
            format!("name longer than {MAX_NAME_LEN} characters"),
        ));
    }
    let tag = if tag.is_none() && digest.is_none() {
        Some("latest".to_string())
    } else {
        tag
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn norm(s: &str) -> String {
        parse(s)
            .map(|r| r.to_string())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn normalises_like_the_ecosystem() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("index.docker.io/foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(norm("foo/bar:v1"), "docker.io/foo/bar:v1");
        assert_eq!(norm("quay.io/a/b/c:x"), "quay.io/a/b/c:x");
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(
            norm("127.0.0.1:5000/test/img:t"),
            "127.0.0.1:5000/test/img:t"
        );
        assert_eq!(norm("myhost:5000/img"), "myhost:5000/img:latest");
        assert_eq!(
            norm(&format!("busybox@{D}")),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{D}")),
            format!("docker.io/library/busybox:1@{D}")
        );
        assert_eq!(norm("a.b/c__d-e.f_g"), "a.b/c__d-e.f_g:latest");
    }

    #[test]
    fn fields_and_helpers() {
        let r = parse("127.0.0.1:5000/test/img:t").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "test/img");
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.object(), "t");
        assert_eq!(r.with_digest(D), format!("127.0.0.1:5000/test/img@{D}"));
        let r = parse(&format!("x@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.object(), D);
    }

    #[test]
    fn rejects_invalid_and_names_the_reference() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:abc",
            "busybox@md5",
            "a//b",
            "/a",
            "a/",
            "a..b",
            "a b",
            "host:port/img",
            "-x",
            "x-",
            ":tag",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            match parse(bad) {
                Err(ImageError::InvalidReference { reference, .. }) => assert_eq!(reference, bad),
                other => panic!("{bad:?} should be invalid, got {other:?}"),
            }
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(parse(&long).is_err());
        let long_tag = format!("a:{}", "b".repeat(129));
        assert!(parse(&long_tag).is_err());
    }

    #[test]
    fn digest_detection() {
        assert!(is_digest(D));
        assert!(!is_digest("sha256:xyz"));
        assert!(!is_digest("sha256:0123"));
        assert!(!is_digest(
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        ));
    }
}
