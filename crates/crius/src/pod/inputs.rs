//! Pod fields that end up where their bytes have meaning: the hostname in /etc/hosts and the UTS
//! namespace, the pod name, namespace and uid in CNI_ARGS (`K=V;K=V`) and in the name-reservation key
//! (`name_namespace_uid_attempt`). What cannot be carried safely is refused, naming the field.

use cri_api::v1 as cri;

use crate::error::{Error, Result};

/// Longest hostname the kernel's UTS namespace takes.
const MAX_HOSTNAME: usize = 64;
/// Longest name, namespace or uid (a Kubernetes DNS subdomain is at most 253).
const MAX_META: usize = 253;

/// RFC 1123: dot-separated labels of 1–63 letters, digits and '-', not starting or ending with '-'.
pub fn validate_hostname(field: &str, h: &str) -> Result<()> {
    if h.is_empty() {
        return Ok(()); // the node's hostname is used
    }
    let bad = |why: &str| Err(Error::invalid(field, format!("{h:?} {why}")));
    if h.len() > MAX_HOSTNAME {
        return bad("is longer than the kernel's 64-byte limit");
    }
    for label in h.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad(
                "is not an RFC 1123 hostname: each dot-separated label needs 1 to 63 characters",
            );
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad(
                "is not an RFC 1123 hostname: only letters, digits, '-' and '.' are allowed",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("is not an RFC 1123 hostname: a label may not start or end with '-'");
        }
    }
    Ok(())
}

/// Name, namespace and uid: no byte that CNI_ARGS or the reservation key would read as structure.
pub fn validate_metadata(m: &cri::PodSandboxMetadata) -> Result<()> {
    for (field, v, underscore_ok) in [
        ("config.metadata.name", &m.name, false),
        ("config.metadata.namespace", &m.namespace, false),
        ("config.metadata.uid", &m.uid, true),
    ] {
        if v.len() > MAX_META {
            return Err(Error::invalid(
                field,
                format!("is longer than {MAX_META} bytes"),
            ));
        }
        if let Some(c) = v.chars().find(|c| {
            c.is_control()
                || c.is_whitespace()
                || matches!(c, ';' | '=' | ',' | '/' | '\\')
                || (*c == '_' && !underscore_ok)
        }) {
            return Err(Error::invalid(
                field,
                format!(
                    "{v:?} contains {c:?}, which CNI_ARGS or crius' name reservations cannot carry"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in [
            "",
            "web",
            "web-0",
            "a.b.c",
            "Pod-1.example",
            &"a".repeat(63),
        ] {
            validate_hostname("config.hostname", ok).unwrap();
        }
        for bad in [
            "evil\n1.2.3.4 bank",
            "a b",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a_b",
            "a/b",
            &"a".repeat(64),
            &format!("{}.{}", "a".repeat(40), "b".repeat(30)),
        ] {
            let e = validate_hostname("config.hostname", bad).unwrap_err();
            assert!(e.to_string().contains("config.hostname"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn metadata() {
        let m = |name: &str, ns: &str, uid: &str| cri::PodSandboxMetadata {
            name: name.into(),
            namespace: ns.into(),
            uid: uid.into(),
            attempt: 0,
        };
        validate_metadata(&m("web-0", "default", "5d1c-4f")).unwrap();
        validate_metadata(&m("PodSandbox-for-test", "ns.x", "u_1")).unwrap();
        for (meta, field) in [
            (m("a;K8S_POD_NAMESPACE=kube-system", "d", "u"), "name"),
            (m("a", "d=e", "u"), "namespace"),
            (m("a_b", "d", "u"), "name"),
            (m("a", "d_e", "u"), "namespace"),
            (m("a", "d", "u\n"), "uid"),
            (m("a", "d", "u;x"), "uid"),
            (m("a b", "d", "u"), "name"),
            (m("a", "../d", "u"), "namespace"),
        ] {
            let e = validate_metadata(&meta).unwrap_err().to_string();
            assert!(
                e.contains(&format!("config.metadata.{field}")),
                "{meta:?}: {e}"
            );
        }
    }
}
