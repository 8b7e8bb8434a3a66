//! Pod user namespaces (`NamespaceOption.userns_options`, KEP-127): validation of what the kubelet
//! sends and the user-namespace part of a container's spec.
//!
//! A pod either uses the host's user namespace (NODE, or no option) or has its own (POD) with exactly
//! one uid and one gid range, each mapping container id 0. Every container of a POD pod runs in the
//! pod's user namespace. CONTAINER (a namespace per container) is not implemented; TARGET is invalid.

use cri_api::v1::{IdMapping, NamespaceMode, NamespaceOption};
use serde::{Deserialize, Serialize};

use crate::SpecError;

/// One id range: container ids `container_id..container_id+length` are host ids
/// `host_id..host_id+length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

impl IdMap {
    /// The host id of container id `id`, if mapped.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        (id >= self.container_id && id - self.container_id < self.length)
            .then(|| self.host_id + (id - self.container_id))
    }
}

/// A pod's own user namespace, as requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodUserns {
    pub uids: Vec<IdMap>,
    pub gids: Vec<IdMap>,
}

impl PodUserns {
    /// Host uid and gid of the pod's root (container id 0).
    pub fn root(&self) -> (u32, u32) {
        let u = self.uids.iter().find_map(|m| m.to_host(0)).unwrap_or(0);
        let g = self.gids.iter().find_map(|m| m.to_host(0)).unwrap_or(0);
        (u, g)
    }
}

fn ranges(field: &str, v: &[IdMapping]) -> Result<Vec<IdMap>, SpecError> {
    if v.len() != 1 {
        return Err(SpecError::invalid(
            field,
            format!(
                "exactly one mapping is supported, got {} (the kubelet sends one range per pod)",
                v.len()
            ),
        ));
    }
    let m = &v[0];
    if m.length == 0 {
        return Err(SpecError::invalid(
            field,
            "the mapping length must not be 0",
        ));
    }
    if m.container_id != 0 {
        return Err(SpecError::invalid(
            field,
            format!(
                "container id 0 must be mapped (the range starts at container id {})",
                m.container_id
            ),
        ));
    }
    if m.host_id == 0 {
        return Err(SpecError::invalid(
            field,
            "host id 0 must not be mapped: the pod's root would be the host's root",
        ));
    }
    if u64::from(m.host_id) + u64::from(m.length) > u64::from(u32::MAX) {
        return Err(SpecError::invalid(
            field,
            format!(
                "host range {}+{} is beyond the largest id",
                m.host_id, m.length
            ),
        ));
    }
    Ok(vec![IdMap {
        container_id: m.container_id,
        host_id: m.host_id,
        length: m.length,
    }])
}

/// OCI `linux.uidMappings`/`gidMappings` entries.
pub(crate) fn oci_maps(v: &[IdMap]) -> Vec<oci_spec::runtime::LinuxIdMapping> {
    v.iter()
        .filter_map(|m| {
            oci_spec::runtime::LinuxIdMappingBuilder::default()
                .container_id(m.container_id)
                .host_id(m.host_id)
                .size(m.length)
                .build()
                .ok()
        })
        .collect()
}

/// The pod's user namespace from its `namespace_options` (field names relative to
/// `linux.security_context.namespace_options`): None for the host's.
pub fn pod_userns(opts: &NamespaceOption) -> Result<Option<PodUserns>, SpecError> {
    const F: &str = "userns_options";
    let Some(u) = &opts.userns_options else {
        return Ok(None);
    };
    let mode = NamespaceMode::try_from(u.mode)
        .map_err(|_| SpecError::invalid(F, format!("unknown namespace mode {}", u.mode)))?;
    match mode {
        NamespaceMode::Node => {
            if !u.uids.is_empty() || !u.gids.is_empty() {
                return Err(SpecError::invalid(
                    F,
                    "mappings are only valid with mode POD",
                ));
            }
            Ok(None)
        }
        NamespaceMode::Pod => {
            let uids = ranges(&format!("{F}.uids"), &u.uids)?;
            let gids = ranges(&format!("{F}.gids"), &u.gids)?;
            if opts.network == NamespaceMode::Node as i32 {
                return Err(SpecError::unsupported(
                    F,
                    "a user namespace with the host network is not supported (UserNamespacesHostNetworkSupport)",
                ));
            }
            for (name, v) in [("pid", opts.pid), ("ipc", opts.ipc)] {
                if v == NamespaceMode::Node as i32 {
                    return Err(SpecError::invalid(
                        F,
                        format!(
                            "a user namespace cannot be combined with the host {name} namespace"
                        ),
                    ));
                }
            }
            Ok(Some(PodUserns { uids, gids }))
        }
        NamespaceMode::Container => Err(SpecError::unsupported(
            F,
            "mode CONTAINER (a user namespace per container) is not implemented; use POD",
        )),
        NamespaceMode::Target => Err(SpecError::invalid(
            F,
            "mode TARGET is not valid for user namespaces",
        )),
    }
}

/// Checks a container's `userns_options` against its pod's user namespace: absent follows the pod;
/// NODE only in a pod without one; POD only in a pod with one and with the pod's mappings.
pub(crate) fn check_container_userns(
    opts: &NamespaceOption,
    pod: Option<&PodUserns>,
) -> Result<(), SpecError> {
    const F: &str = "security_context.namespace_options.userns_options";
    let Some(u) = &opts.userns_options else {
        return Ok(());
    };
    let mode = NamespaceMode::try_from(u.mode)
        .map_err(|_| SpecError::invalid(F, format!("unknown namespace mode {}", u.mode)))?;
    match (mode, pod) {
        (NamespaceMode::Node, None) => Ok(()),
        (NamespaceMode::Node, Some(_)) => Err(SpecError::invalid(
            F,
            "the pod has its own user namespace; its containers cannot use the host's",
        )),
        (NamespaceMode::Pod, None) => Err(SpecError::invalid(
            F,
            "mode POD but the pod was created without a user namespace",
        )),
        (NamespaceMode::Pod, Some(p)) => {
            if u.uids.is_empty() && u.gids.is_empty() {
                return Ok(());
            }
            let mine = pod_userns(&NamespaceOption {
                userns_options: Some(u.clone()),
                ..Default::default()
            })
            .map_err(|e| match e {
                SpecError::Invalid { field, reason } => SpecError::Invalid {
                    field: format!("security_context.namespace_options.{field}"),
                    reason,
                },
                other => other,
            })?;
            if mine.as_ref() != Some(p) {
                return Err(SpecError::invalid(
                    F,
                    "the mappings differ from the pod's user namespace",
                ));
            }
            Ok(())
        }
        (NamespaceMode::Container, _) => Err(SpecError::unsupported(
            F,
            "mode CONTAINER (a user namespace per container) is not implemented; use POD",
        )),
        (NamespaceMode::Target, _) => Err(SpecError::invalid(
            F,
            "mode TARGET is not valid for user namespaces",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_api::v1::UserNamespace;

    fn opts(mode: NamespaceMode, uids: Vec<IdMapping>, gids: Vec<IdMapping>) -> NamespaceOption {
        NamespaceOption {
            userns_options: Some(UserNamespace {
                mode: mode as i32,
                uids,
                gids,
            }),
            ..Default::default()
        }
    }

    fn map(c: u32, h: u32, l: u32) -> IdMapping {
        IdMapping {
            container_id: c,
            host_id: h,
            length: l,
        }
    }

    #[test]
    fn pod_mode_with_one_range_each() {
        let o = opts(
            NamespaceMode::Pod,
            vec![map(0, 1000, 100000)],
            vec![map(0, 2000, 100000)],
        );
        let u = pod_userns(&o).unwrap().unwrap();
        assert_eq!(u.root(), (1000, 2000));
        assert_eq!(u.uids[0].to_host(5), Some(1005));
        assert_eq!(u.uids[0].to_host(100000), None);
    }

    #[test]
    fn refusals_name_the_field() {
        let two = vec![map(0, 1000, 100000), map(0, 2000, 100000)];
        let cases = [
            (
                opts(NamespaceMode::Pod, two.clone(), two),
                "userns_options.uids",
                true,
            ),
            (
                opts(
                    NamespaceMode::Pod,
                    vec![map(1, 1000, 10)],
                    vec![map(0, 1000, 10)],
                ),
                "userns_options.uids",
                true,
            ),
            (
                opts(NamespaceMode::Pod, vec![map(0, 0, 10)], vec![map(0, 0, 10)]),
                "userns_options.uids",
                true,
            ),
            (
                opts(NamespaceMode::Target, vec![], vec![]),
                "userns_options",
                true,
            ),
            (
                opts(NamespaceMode::Container, vec![], vec![]),
                "userns_options",
                false,
            ),
        ];
        for (o, field, invalid) in cases {
            let e = pod_userns(&o).unwrap_err();
            assert_eq!(e.field(), Some(field), "{e}");
            assert_eq!(matches!(e, SpecError::Invalid { .. }), invalid, "{e}");
        }
    }

    #[test]
    fn host_network_with_userns_is_unsupported() {
        let mut o = opts(
            NamespaceMode::Pod,
            vec![map(0, 1000, 10)],
            vec![map(0, 1000, 10)],
        );
        o.network = NamespaceMode::Node as i32;
        assert!(matches!(pod_userns(&o), Err(SpecError::Unsupported { .. })));
    }

    #[test]
    fn node_mode_is_no_userns() {
        assert_eq!(
            pod_userns(&opts(NamespaceMode::Node, vec![], vec![])).unwrap(),
            None
        );
        assert_eq!(pod_userns(&NamespaceOption::default()).unwrap(), None);
    }

    #[test]
    fn container_follows_pod() {
        let pod = PodUserns {
            uids: vec![IdMap {
                container_id: 0,
                host_id: 1000,
                length: 10,
            }],
            gids: vec![IdMap {
                container_id: 0,
                host_id: 1000,
                length: 10,
            }],
        };
        let same = opts(
            NamespaceMode::Pod,
            vec![map(0, 1000, 10)],
            vec![map(0, 1000, 10)],
        );
        check_container_userns(&same, Some(&pod)).unwrap();
        check_container_userns(&NamespaceOption::default(), Some(&pod)).unwrap();
        let other = opts(
            NamespaceMode::Pod,
            vec![map(0, 5000, 10)],
            vec![map(0, 5000, 10)],
        );
        assert!(check_container_userns(&other, Some(&pod)).is_err());
        assert!(check_container_userns(&same, None).is_err());
        let node = opts(NamespaceMode::Node, vec![], vec![]);
        assert!(check_container_userns(&node, Some(&pod)).is_err());
        check_container_userns(&node, None).unwrap();
    }
}
