//! Property tests of what registries and images feed crius: image references, hosts.toml, and layer
//! tars. Bounded (a few hundred cases each) so the whole crate's run stays within seconds; the
//! strategies lean towards the hostile shapes (`..`, absolute names, symlinks, whiteouts).

use std::path::Path;

use proptest::prelude::*;

use crate::{hosts, reference, unpack};

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings built from the bytes that matter to the reference grammar.
fn reference_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("docker.io".to_string()),
        Just("127.0.0.1:5000".to_string()),
        Just("localhost".to_string()),
        Just("library".to_string()),
        Just("busybox".to_string()),
        Just(format!("sha256:{}", "a".repeat(64))),
        "[a-z0-9]{1,8}",
        "[A-Za-z0-9._:@/-]{0,12}",
        Just("/".to_string()),
        Just(":".to_string()),
        Just("@".to_string()),
        Just("..".to_string()),
        Just("__".to_string()),
        "\\PC{0,4}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(cfg(512))]

    /// Parsing never panics; a parsed reference prints to a string that parses to itself, and the
    /// name parts stay within the grammar (no whitespace, no `..` path segment, bounded length).
    #[test]
    fn reference_parse_is_total_and_idempotent(s in reference_like()) {
        if let Ok(r) = reference::parse(&s) {
            let printed = r.to_string();
            let again = reference::parse(&printed).expect("a printed reference parses");
            prop_assert_eq!(&again, &r);
            prop_assert!(!r.repository.split('/').any(|c| c.is_empty() || c == ".." || c == "."));
            prop_assert!(!printed.chars().any(|c| c.is_whitespace() || c.is_control()));
        }
    }
}

fn hosts_like() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("server = \"https://registry.example\"\n".to_string()),
        Just("server = \"http://127.0.0.1:5000\"\n".to_string()),
        Just("[host.\"http://mirror:5000\"]\n".to_string()),
        Just("  capabilities = [\"pull\", \"resolve\"]\n".to_string()),
        Just("  capabilities = [\"push\"]\n".to_string()),
        Just("  skip_verify = true\n".to_string()),
        Just("  ca = \"/nonexistent/ca.pem\"\n".to_string()),
        Just("  override_path = true\n".to_string()),
        Just("[host.\"https://mirror/v2/x\".header]\n  x-a = \"b\"\n".to_string()),
        "[a-z_]{1,8} = \"[ -~]{0,12}\"\n",
        "[\\[\\]\"=a-z:/. \n]{0,24}",
    ];
    prop::collection::vec(line, 0..8).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(cfg(512))]

    /// Any hosts.toml text gives endpoints or a HostsConfig error naming the file, never a panic; every
    /// endpoint is an http(s) URL.
    #[test]
    fn hosts_toml_parse_is_total(text in hosts_like()) {
        let file = Path::new("/etc/crius/certs.d/reg/hosts.toml");
        match hosts::parse_hosts(&text, file, "reg") {
            Ok(eps) => {
                for e in eps {
                    prop_assert!(matches!(e.url.scheme(), "http" | "https"), "{}", e.url);
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("hosts.toml"), "{e}"),
        }
    }
}

/// One raw tar entry: the name is written without the tar crate's checks.
#[derive(Debug, Clone)]
enum Ent {
    File(String, Vec<u8>),
    Dir(String),
    Sym(String, String),
    Hard(String, String),
}

fn name() -> impl Strategy<Value = String> {
    let comp = prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just("".to_string()),
        Just(".wh.a".to_string()),
        Just(".wh..".to_string()),
        Just(".wh...".to_string()),
        Just(".wh..wh..opq".to_string()),
        Just("outside".to_string()),
    ];
    (any::<bool>(), prop::collection::vec(comp, 1..4)).prop_map(|(abs, v)| {
        let p = v.join("/");
        if abs {
            format!("/{p}")
        } else {
            p
        }
    })
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        name(),
        Just("../outside".to_string()),
        Just("../../outside".to_string()),
        Just("/".to_string()),
    ]
}

fn entry() -> impl Strategy<Value = Ent> {
    prop_oneof![
        (name(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(n, d)| Ent::File(n, d)),
        name().prop_map(Ent::Dir),
        (name(), target()).prop_map(|(n, t)| Ent::Sym(n, t)),
        (name(), target()).prop_map(|(n, t)| Ent::Hard(n, t)),
    ]
}

fn tar_of(entries: &[Ent]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let (path, kind, data, link): (&str, tar::EntryType, &[u8], Option<&str>) = match e {
            Ent::File(p, d) => (p, tar::EntryType::Regular, d, None),
            Ent::Dir(p) => (p, tar::EntryType::Directory, &[], None),
            Ent::Sym(p, t) => (p, tar::EntryType::Symlink, &[], Some(t)),
            Ent::Hard(p, t) => (p, tar::EntryType::Link, &[], Some(t)),
        };
        if path.len() > 99 || link.map(|l| l.len() > 99).unwrap_or(false) {
            continue;
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        let old = h.as_old_mut();
        old.name.fill(0);
        old.name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(l) = link {
            old.linkname.fill(0);
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

proptest! {
    #![proptest_config(cfg(256))]

    /// Whatever a layer holds, unpacking it writes nothing outside the target: the sibling
    /// `outside` dir stays empty and nothing else appears next to the target.
    #[test]
    fn unpack_never_writes_outside_the_target(entries in prop::collection::vec(entry(), 0..12)) {
        let t = tempfile::tempdir().unwrap();
        let layer = t.path().join("layer");
        let outside = t.path().join("outside");
        std::fs::create_dir(&layer).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let tar = tar_of(&entries);
        let _ = unpack::unpack("prop", &tar[..], &layer);
        let out: Vec<_> = std::fs::read_dir(&outside).unwrap().flatten().map(|e| e.path()).collect();
        prop_assert!(out.is_empty(), "written outside: {:?}", out);
        let top: Vec<_> = std::fs::read_dir(t.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        prop_assert_eq!(top.len(), 2, "{:?}", top);
        prop_assert!(std::fs::symlink_metadata(&layer).unwrap().is_dir());
    }
}
