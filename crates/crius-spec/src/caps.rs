//! Capability sets for a container process: the default set, CRI add/drop/ambient, privileged.
//!
//! Rule for capabilities the daemon itself does not hold (outside `HostInfo.bounding_caps`):
//! the runtime cannot grant them and would fail the create, so
//! - implicit sources (the default set, `ALL`, privileged) are intersected with the bounding set
//!   silently: they mean "everything that is possible here";
//! - an explicitly named cap in `add_capabilities` / `add_ambient_capabilities` that is outside
//!   the bounding set is `Unsupported` naming the field, because silently not granting an
//!   explicitly requested privilege would surface later as a confusing EPERM in the workload.

use std::collections::BTreeSet;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::SpecError;

/// containerd's default capability set (the Docker default set) by kernel name.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Normalises `sys_admin`, `SYS_ADMIN`, `CAP_SYS_ADMIN` to `CAP_SYS_ADMIN`; `None` if unknown.
pub fn canonical_cap(name: &str) -> Option<String> {
    let cap = parse_cap(name)?;
    serde_json::to_value(cap)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
}

fn parse_cap(name: &str) -> Option<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    if upper.is_empty() || upper == "ALL" || upper == "CAP_ALL" {
        return None;
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(serde_json::Value::String(full)).ok()
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

fn bounding_set(bounding: &[String]) -> BTreeSet<String> {
    bounding.iter().filter_map(|c| canonical_cap(c)).collect()
}

/// The caps requested by a container as canonical names.
pub struct CapRequest<'a> {
    pub add: &'a [String],
    pub drop: &'a [String],
    pub ambient: &'a [String],
    pub privileged: bool,
}

/// The computed sets, as canonical names (sorted, for stable specs and tests).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapSets {
    pub main: BTreeSet<String>,
    pub ambient: BTreeSet<String>,
}

/// Order follows containerd: add ALL, drop ALL, add named, drop named; ambient is added last
/// (and also to the main set, since the kernel only keeps ambient caps that are permitted).
pub fn compute_caps(req: &CapRequest, bounding_caps: &[String]) -> Result<CapSets, SpecError> {
    let bounding = bounding_set(bounding_caps);
    if req.privileged {
        return Ok(CapSets {
            main: bounding.clone(),
            ambient: named(req.ambient, "add_ambient_capabilities", &bounding)?,
        });
    }
    let mut main: BTreeSet<String> = DEFAULT_CAPS
        .iter()
        .map(|c| c.to_string())
        .filter(|c| bounding.contains(c))
        .collect();
    // Unknown names are rejected in every list, even where ALL makes them redundant.
    let add = named(req.add, "add_capabilities", &bounding)?;
    let drop = named_any(req.drop, "drop_capabilities")?;
    if req.add.iter().any(|c| is_all(c)) {
        main = bounding.clone();
    }
    if req.drop.iter().any(|c| is_all(c)) {
        main.clear();
    }
    main.extend(add);
    for c in &drop {
        main.remove(c);
    }
    let ambient = named(req.ambient, "add_ambient_capabilities", &bounding)?;
    main.extend(ambient.iter().cloned());
    Ok(CapSets { main, ambient })
}

fn named_any(list: &[String], field: &str) -> Result<BTreeSet<String>, SpecError> {
    let mut out = BTreeSet::new();
    for (i, c) in list.iter().enumerate() {
        if is_all(c) {
            continue;
        }
        let cap = canonical_cap(c).ok_or_else(|| SpecError::Invalid {
            field: format!("security_context.capabilities.{field}[{i}]"),
            reason: format!("unknown capability {c:?}"),
        })?;
        out.insert(cap);
    }
    Ok(out)
}

fn named(
    list: &[String],
    field: &str,
    bounding: &BTreeSet<String>,
) -> Result<BTreeSet<String>, SpecError> {
    let out = named_any(list, field)?;
    for (i, c) in list.iter().enumerate() {
        if let Some(cap) = canonical_cap(c) {
            if !bounding.contains(&cap) {
                return Err(SpecError::Unsupported {
                    field: format!("security_context.capabilities.{field}[{i}]"),
                    reason: format!("{cap} is not in the runtime's bounding set on this host"),
                });
            }
        }
    }
    Ok(out)
}

fn to_oci(set: &BTreeSet<String>) -> Capabilities {
    set.iter().filter_map(|c| parse_cap(c)).collect()
}

/// OCI capabilities: bounding = effective = permitted = main set; inheritable holds only the
/// ambient caps (an ambient cap must be inheritable too; otherwise inheritable stays empty so
/// that file capabilities of binaries cannot gain more, as containerd does since 1.6.18).
pub fn oci_caps(sets: &CapSets) -> LinuxCapabilities {
    let main = to_oci(&sets.main);
    let ambient = to_oci(&sets.ambient);
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(main.clone()));
    caps.set_effective(Some(main.clone()));
    caps.set_permitted(Some(main));
    caps.set_inheritable(Some(ambient.clone()));
    caps.set_ambient(Some(ambient));
    caps
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A typical bounding set without CAP_SYS_RESOURCE, like this build host: the kernel's caps up to
    /// CAP_AUDIT_READ (bit 37).
    pub(crate) fn bounding() -> Vec<String> {
        crate::CAP_NAMES[..=37]
            .iter()
            .filter(|c| **c != "CAP_SYS_RESOURCE")
            .map(|s| s.to_string())
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn req<'a>(add: &'a [String], drop: &'a [String], ambient: &'a [String]) -> CapRequest<'a> {
        CapRequest {
            add,
            drop,
            ambient,
            privileged: false,
        }
    }

    #[test]
    fn default_set_is_the_14() {
        let sets = compute_caps(&req(&[], &[], &[]), &bounding()).unwrap();
        assert_eq!(sets.main.len(), 14);
        assert!(sets.main.contains("CAP_NET_RAW"));
        assert!(sets.ambient.is_empty());
    }

    #[test]
    fn add_drop_with_and_without_prefix() {
        let add = s(&["NET_ADMIN", "CAP_SYS_PTRACE", "sys_time"]);
        let drop = s(&["CAP_NET_RAW", "mknod"]);
        let sets = compute_caps(&req(&add, &drop, &[]), &bounding()).unwrap();
        for c in ["CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_TIME"] {
            assert!(sets.main.contains(c), "{c}");
        }
        assert!(!sets.main.contains("CAP_NET_RAW"));
        assert!(!sets.main.contains("CAP_MKNOD"));
        assert_eq!(sets.main.len(), 14 + 3 - 2);
    }

    #[test]
    fn all_in_add_and_drop() {
        let all = s(&["ALL"]);
        let sets = compute_caps(&req(&all, &[], &[]), &bounding()).unwrap();
        assert_eq!(sets.main, bounding().into_iter().collect());
        let add = s(&["NET_BIND_SERVICE"]);
        let sets = compute_caps(&req(&add, &all, &[]), &bounding()).unwrap();
        assert_eq!(
            sets.main.into_iter().collect::<Vec<_>>(),
            vec!["CAP_NET_BIND_SERVICE"]
        );
        let sets = compute_caps(&req(&all, &s(&["SYS_ADMIN"]), &[]), &bounding()).unwrap();
        assert!(!sets.main.contains("CAP_SYS_ADMIN"));
        assert_eq!(sets.main.len(), bounding().len() - 1);
    }

    #[test]
    fn unknown_cap_is_invalid_naming_it() {
        let add = s(&["CHOWN", "CAP_FLY"]);
        let err = compute_caps(&req(&add, &[], &[]), &bounding()).unwrap_err();
        match &err {
            SpecError::Invalid { field, reason } => {
                assert_eq!(field, "security_context.capabilities.add_capabilities[1]");
                assert!(reason.contains("CAP_FLY"));
            }
            other => panic!("{other:?}"),
        }
        let err = compute_caps(&req(&[], &s(&["NOPE"]), &[]), &bounding()).unwrap_err();
        assert!(err.to_string().contains("drop_capabilities[0]"), "{err}");
    }

    #[test]
    fn outside_bounding_set() {
        // Implicit: ALL does not include SYS_RESOURCE on this host.
        let sets = compute_caps(&req(&s(&["ALL"]), &[], &[]), &bounding()).unwrap();
        assert!(!sets.main.contains("CAP_SYS_RESOURCE"));
        // Default set shrinks with the bounding set.
        let small = s(&["CAP_CHOWN", "CAP_KILL"]);
        let sets = compute_caps(&req(&[], &[], &[]), &small).unwrap();
        assert_eq!(sets.main.len(), 2);
        // Explicit: refused, naming the field.
        let err = compute_caps(&req(&s(&["SYS_RESOURCE"]), &[], &[]), &bounding()).unwrap_err();
        assert!(
            matches!(&err, SpecError::Unsupported { field, .. } if field == "security_context.capabilities.add_capabilities[0]"),
            "{err:?}"
        );
        // Dropping a cap the host lacks is fine.
        compute_caps(&req(&[], &s(&["SYS_RESOURCE"]), &[]), &bounding()).unwrap();
    }

    #[test]
    fn ambient_caps() {
        let amb = s(&["NET_ADMIN"]);
        let sets = compute_caps(&req(&[], &[], &amb), &bounding()).unwrap();
        assert!(sets.main.contains("CAP_NET_ADMIN"));
        assert_eq!(sets.ambient.len(), 1);
        let caps = oci_caps(&sets);
        assert!(caps
            .ambient()
            .as_ref()
            .unwrap()
            .contains(&Capability::NetAdmin));
        assert!(caps
            .inheritable()
            .as_ref()
            .unwrap()
            .contains(&Capability::NetAdmin));
        assert!(caps
            .permitted()
            .as_ref()
            .unwrap()
            .contains(&Capability::NetAdmin));
        let err = compute_caps(&req(&[], &[], &s(&["BOGUS"])), &bounding()).unwrap_err();
        assert!(err.to_string().contains("add_ambient_capabilities[0]"));
    }

    #[test]
    fn privileged_is_the_bounding_set() {
        let r = CapRequest {
            add: &[],
            drop: &s(&["ALL"]),
            ambient: &[],
            privileged: true,
        };
        let sets = compute_caps(&r, &bounding()).unwrap();
        assert_eq!(sets.main.len(), bounding().len());
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_cap("sys_admin").as_deref(), Some("CAP_SYS_ADMIN"));
        assert_eq!(canonical_cap("CAP_BPF").as_deref(), Some("CAP_BPF"));
        assert_eq!(canonical_cap("ALL"), None);
    }
}
