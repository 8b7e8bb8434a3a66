//! SELinux, as containerd's `enable_selinux`: off by default (`selinux = false`). Off, the SELinux
//! fields of the CRI (`selinux_options` of pods and containers, `selinux_relabel` of mounts) are accepted
//! and ignored, whatever the host runs — the kubelet sets `selinux_relabel` on nearly every volume, and
//! refusing it would refuse nearly every pod. On, the host must have SELinux (else the daemon does not
//! start), and crius applies labels (`selinux_labels`): a per-pod MCS pair, process and mount labels,
//! relabelled volumes.

/// What the daemon does with SELinux fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fields accepted and ignored.
    Ignored,
    /// Fields reach crius-spec, which refuses labels it cannot apply (fail fast).
    Enforced,
}

/// Decides the mode from the config key and whether the host has SELinux (`/sys/fs/selinux/enforce`).
pub fn mode(configured: bool, host_has_selinux: bool) -> Result<Mode, String> {
    match (configured, host_has_selinux) {
        (false, _) => Ok(Mode::Ignored),
        (true, true) => Ok(Mode::Enforced),
        (true, false) => Err(
            "config key `selinux`: true, but SELinux is not enabled on this host (/sys/fs/selinux/enforce \
             is missing)"
                .into(),
        ),
    }
}

/// Status (verbose info key `selinux`).
pub fn status(mode: Mode, host_has_selinux: bool) -> serde_json::Value {
    let note = match mode {
        Mode::Ignored => {
            "selinux = false: selinux_options and selinux_relabel are accepted and ignored (as containerd \
             without enable_selinux)"
        }
        Mode::Enforced => {
            "selinux = true: containers get process and mount labels from the host's lxc_contexts with a \
             unique MCS pair per pod (selinux_options override field by field); selinux_relabel volumes are \
             relabelled (security.selinux). The pause process is not labelled and rootfs overlays are mounted \
             without context=: crius' root needs container-selinux's labels (semanage fcontext -e \
             /var/lib/containers <root>). Verified by unit tests and a node without an SELinux kernel only"
        }
    };
    serde_json::json!({
        "enabled": mode == Mode::Enforced,
        "hostHasSELinux": host_has_selinux,
        "note": note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_ignores_labels_on_any_host() {
        assert_eq!(mode(false, false), Ok(Mode::Ignored));
        assert_eq!(mode(false, true), Ok(Mode::Ignored));
    }

    #[test]
    fn on_needs_an_selinux_host() {
        assert_eq!(mode(true, true), Ok(Mode::Enforced));
        let err = mode(true, false).unwrap_err();
        assert!(err.contains("`selinux`"), "{err}");
    }

    #[test]
    fn status_says_what_happens_to_labels() {
        let s = status(Mode::Ignored, true);
        assert_eq!(s["enabled"], false);
        assert!(s["note"].as_str().unwrap().contains("ignored"));
        assert_eq!(status(Mode::Enforced, true)["enabled"], true);
    }
}
