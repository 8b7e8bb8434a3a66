//! `crius config default`: the complete default configuration as commented TOML, generated from
//! [`Config::default`] so it cannot drift from what the daemon uses. Keys without a default value
//! (optional paths) are printed commented out with an example.

use crate::config::Config;

/// Key → comment (and, for keys that are unset by default, an example value printed commented out).
const DOCS: &[(&str, &str, Option<&str>)] = &[
    ("root", "Persistent state: metadata store, images, snapshots, CNI result cache.", None),
    ("state", "Runtime state (tmpfs in production): sockets, bundles, namespace pins, monitor files.", None),
    ("listen", "The CRI gRPC unix socket (point the kubelet's --container-runtime-endpoint here).", None),
    ("registry_config_dir", "Registry hosts, containerd layout: <dir>/<host>/hosts.toml.", None),
    ("cni_conf_dir", "CNI network configuration directory (empty: crius' native network, see network_backend).", None),
    ("cni_bin_dir", "CNI plugin directories, searched in order.", None),
    ("network_backend", "Pod networking: auto (the CNI configuration in cni_conf_dir when it holds one, else crius'\nnative network), cni (always CNI; an empty dir means the embedded bridge conflist) or native\n(netlink and nftables, no CNI plugins, whatever cni_conf_dir holds).", None),
    ("native_network", "The native network: bridge, subnet (IPv4; the bridge gets the first address, pods the\nrest), mtu of the pod's veth pair, ipam_dir (reservations in host-local's format; the default is\nthe embedded conflist's, so both share one pool).", None),
    ("default_runtime", "The runtime handler for pods that name none: a key of [runtimes], or auto (crun when its trial\ncontainer passes at start, else runc; the choice is logged and shown by `crictl info` as defaultRuntime).", None),
    ("log_level", "error, warn, info, debug, trace, or a tracing filter directive.", None),
    ("log_format", "text, or json (one object a line).", None),
    ("streaming_address", "exec/attach/port-forward server, ip:port or a bare IP (port 0 = ephemeral).", None),
    ("monitor_path", "The per-container monitor binary. Default: crius-monitor next to crius.", Some("\"/usr/bin/crius-monitor\"")),
    ("pause_path", "The pause binary for pods sharing one PID namespace. Default: next to crius.", Some("\"/usr/bin/crius-pause\"")),
    ("pull_stall_timeout_secs", "Seconds a registry may send nothing before a pull fails.", None),
    ("selinux", "SELinux labels (containerd's enable_selinux). false: selinux_options and selinux_relabel are\naccepted and ignored. true needs an SELinux host; crius then labels containers (per-pod MCS pair) and relabels volumes.", None),
    ("cgroup_driver", "auto (systemd when systemd is PID 1), systemd (pod cgroup parents are slices such as\nkubepods-burstable-pod<uid>.slice, containers are scopes) or cgroupfs.", None),
    ("metrics_address", "Prometheus metrics endpoint (http://<addr>/metrics). Off unless set.", Some("\"127.0.0.1:9090\"")),
    ("tracing_endpoint", "OTLP/HTTP endpoint for trace export (JSON, no TLS). Off unless set.", Some("\"http://127.0.0.1:4318/v1/traces\"")),
    ("container_events_buffer", "Container events held for a GetContainerEvents client that is not reading; a client\nfurther behind gets its stream closed (DataLoss).", None),
    ("max_grpc_connections", "CRI socket connections served at once; more wait until one closes.", None),
    ("max_layer_unpacked_bytes", "Bytes one image layer may inflate to; more fail the pull (ResourceExhausted).", None),
    ("max_layer_entries", "Tar entries one image layer may hold; more fail the pull (ResourceExhausted).", None),
    ("cdi_spec_dirs", "CDI spec directories, lowest priority first.", None),
    ("criu_path", "The CRIU binary probed at start for checkpointing (path or name in PATH).", None),
    ("stream_idle_timeout", "exec/attach/port-forward sessions idle this long are closed (4h, 30m, 90s, 1h30m).", None),
    ("max_streaming_sessions", "exec/attach/port-forward sessions served at once; more are refused (HTTP 503).", None),
    ("feature_gates", "Alpha features to turn on by name (see `crius features`), e.g. CRIListStreaming = true.", None),
    ("runtimes", "Runtime handlers (RuntimeClass handler name → OCI runtime): path is a binary or a name looked up in PATH; root (optional) is the runtime's own state dir, default <state>/runtime/<name>; kind (optional) is \"oci\" or \"sandbox\" (default: sandbox for a binary named runsc, i.e. gVisor); args are global flags given before every runtime command (runsc's default: --network=host, --oci-seccomp). allow_unfiltered_exec (default false) lets ExecSync/Exec run in a container with a seccomp filter on a handler whose exec'd processes run without it (execSeccomp = no: youki 0.7.0, runsc); otherwise that exec is refused with FailedPrecondition. `crius features --handlers` prints what each handler can do.", None),
];

fn comment(out: &mut String, text: &str) {
    for line in text.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
}

/// The default configuration as TOML with a comment above every key.
pub fn render() -> String {
    let value = toml::Table::try_from(Config::default()).unwrap_or_default();
    let doc = |key: &str| {
        DOCS.iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, d, _)| *d)
            .unwrap_or("(undocumented key)")
    };
    let mut out = String::from(
        "# crius configuration (/etc/crius/crius.toml): these are the defaults, as `crius config default`\n\
         # prints them. Every key is also a `crius daemon` flag; flags win over this file.\n\n",
    );
    let mut tables = Vec::new();
    // In the order of DOCS (grouped by topic), then any key DOCS does not know yet.
    let mut keys: Vec<&String> = DOCS
        .iter()
        .filter_map(|(k, _, _)| value.get_key_value(*k).map(|(k, _)| k))
        .collect();
    keys.extend(
        value
            .keys()
            .filter(|k| !DOCS.iter().any(|(d, _, _)| d == k)),
    );
    for key in keys {
        let v = &value[key.as_str()];
        if let toml::Value::Table(t) = v {
            tables.push((key.clone(), t.clone()));
            continue;
        }
        comment(&mut out, doc(key));
        let mut one = toml::Table::new();
        one.insert(key.clone(), v.clone());
        out.push_str(&toml::to_string(&one).unwrap_or_default());
        out.push('\n');
    }
    for (key, d, example) in DOCS {
        if let Some(example) = example {
            if !value.contains_key(*key) {
                comment(&mut out, d);
                out.push_str(&format!("# {key} = {example}\n\n"));
            }
        }
    }
    for (key, t) in tables {
        comment(&mut out, doc(&key));
        let mut one = toml::Table::new();
        one.insert(key.clone(), toml::Value::Table(t.clone()));
        let text = toml::to_string(&one).unwrap_or_default();
        if t.is_empty() {
            out.push_str(&format!("[{key}]\n"));
        } else {
            out.push_str(&text);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_config_is_the_default_config() {
        let text = render();
        let parsed = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed, Config::default(), "{text}");
        parsed.validate().unwrap();
    }

    #[test]
    fn every_key_is_printed_with_a_comment() {
        let text = render();
        assert!(!text.contains("(undocumented key)"), "{text}");
        let value = toml::Table::try_from(Config::default()).unwrap();
        for key in value.keys() {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} ="))
                    || l == format!("[{key}]")
                    || l.starts_with(&format!("[{key}."))),
                "{key} missing:\n{text}"
            );
        }
        for (key, _, example) in DOCS {
            if example.is_some() {
                assert!(text.contains(&format!("# {key} = ")), "{key}:\n{text}");
            }
        }
    }
}
