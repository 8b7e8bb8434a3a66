//! Seccomp: the built-in RuntimeDefault profile, and loading of localhost profiles written in
//! either the OCI format or the Docker/containerd format (with `archMap`, `includes`,
//! `excludes`), which is converted to OCI.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::caps::DEFAULT_CAPS;
use crate::{HostInfo, SpecError};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Syscalls every container may make. The list follows the Docker/containerd default
/// profile: everything except what needs a capability, touches host-global state without
/// namespacing (keyring, kernel modules, clock, swap, reboot, ...), or is a known escape path.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Syscalls unlocked by a capability the container holds.
const BY_CAP: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

// CLONE_NEWNS|CLONE_NEWCGROUP|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET
const CLONE_NS_MASK: u64 = 0x7E02_0000;
const AF_VSOCK: u64 = 40;

/// `(native arch, companion arches)` in libseccomp names.
fn arches() -> (&'static str, &'static [&'static str]) {
    match std::env::consts::ARCH {
        "x86_64" => ("SCMP_ARCH_X86_64", &["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
        "aarch64" => ("SCMP_ARCH_AARCH64", &["SCMP_ARCH_ARM"]),
        "x86" => ("SCMP_ARCH_X86", &[]),
        "arm" => ("SCMP_ARCH_ARM", &[]),
        "riscv64" => ("SCMP_ARCH_RISCV64", &[]),
        "s390x" => ("SCMP_ARCH_S390X", &["SCMP_ARCH_S390"]),
        "powerpc64" => ("SCMP_ARCH_PPC64LE", &[]),
        _ => ("SCMP_ARCH_NATIVE", &[]),
    }
}

/// The same list as [`arches`], typed.
fn typed_arches() -> Vec<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "x86" => vec![Arch::ScmpArchX86],
        "arm" => vec![Arch::ScmpArchArm],
        "riscv64" => vec![Arch::ScmpArchRiscv64],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        "powerpc64" => vec![Arch::ScmpArchPpc64le],
        _ => vec![Arch::ScmpArchNative],
    }
}

fn arch_specific() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" | "x86" => &["arch_prctl", "modify_ldt"],
        "aarch64" | "arm" => &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        "s390x" => &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
        "riscv64" => &["riscv_flush_icache"],
        _ => &[],
    }
}

/// The RuntimeDefault profile for a container holding the default capability set.
pub fn default_seccomp_profile(host: &HostInfo) -> LinuxSeccomp {
    let caps: BTreeSet<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    default_seccomp_profile_for(host, &caps)
}

/// The RuntimeDefault profile for a container holding `caps` (canonical `CAP_*` names): the
/// capability-gated syscalls are allowed only with their capability, as in containerd.
pub fn default_seccomp_profile_for(_host: &HostInfo, caps: &BTreeSet<String>) -> LinuxSeccomp {
    let mut allowed: Vec<&str> = ALLOWED.iter().chain(arch_specific()).copied().collect();
    for (cap, calls) in BY_CAP {
        if caps.contains(*cap) {
            allowed.extend_from_slice(calls);
        }
    }
    let sys_admin = caps.contains("CAP_SYS_ADMIN");
    allowed.sort_unstable();
    allowed.dedup();
    let mut syscalls = vec![rule(&allowed, LinuxSeccompAction::ScmpActAllow, None, None)];
    // personality(2) only for the harmless execution domains (PER_LINUX, PER_LINUX32,
    // UNAME26 variants, and the 0xffffffff query).
    for persona in [0x0u64, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(rule(
            &["personality"],
            LinuxSeccompAction::ScmpActAllow,
            None,
            Some(arg(0, persona, None, LinuxSeccompOperator::ScmpCmpEq)),
        ));
    }
    syscalls.push(rule(
        &["socket"],
        LinuxSeccompAction::ScmpActAllow,
        None,
        Some(arg(0, AF_VSOCK, None, LinuxSeccompOperator::ScmpCmpNe)),
    ));
    if !sys_admin {
        // clone without namespace flags; on s390x the flags are the second argument.
        let index = if std::env::consts::ARCH == "s390x" {
            1
        } else {
            0
        };
        syscalls.push(rule(
            &["clone"],
            LinuxSeccompAction::ScmpActAllow,
            None,
            Some(arg(
                index,
                CLONE_NS_MASK,
                Some(0),
                LinuxSeccompOperator::ScmpCmpMaskedEq,
            )),
        ));
        // clone3 passes flags in memory seccomp cannot inspect: ENOSYS makes libc fall back
        // to clone, which the rule above filters.
        syscalls.push(rule(
            &["clone3"],
            LinuxSeccompAction::ScmpActErrno,
            Some(ENOSYS),
            None,
        ));
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(EPERM));
    profile.set_architectures(Some(typed_arches()));
    profile.set_syscalls(Some(syscalls));
    profile
}

fn rule(
    names: &[&str],
    action: LinuxSeccompAction,
    errno: Option<u32>,
    arg: Option<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut r = LinuxSyscall::default();
    r.set_names(names.iter().map(|n| n.to_string()).collect());
    r.set_action(action);
    r.set_errno_ret(errno);
    r.set_args(arg.map(|a| vec![a]));
    r
}

fn arg(
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    let b = match value_two {
        Some(v) => b.value_two(v),
        None => b,
    };
    // The builder defaults every field, so build() has no failure case; the default it would
    // fall back to (arg0 == 0) only narrows a rule, never widens it.
    b.build().unwrap_or_default()
}

/// Where a localhost profile lives. The structured `localhost_ref` must be absolute (CRI says
/// so); for the deprecated `localhost/<path>` form a relative path is resolved under
/// `profile_root` (pass `Some`). `..` is refused in both.
pub fn localhost_profile_path(
    field: &str,
    reference: &str,
    profile_root: Option<&Path>,
) -> Result<PathBuf, SpecError> {
    let p = Path::new(reference);
    if reference.is_empty() {
        return Err(SpecError::invalid(field, "localhost profile needs a path"));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(SpecError::invalid(
            field,
            format!("{reference:?} must not contain '..'"),
        ));
    }
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    match profile_root {
        Some(root) => Ok(root.join(p)),
        None => Err(SpecError::invalid(
            field,
            format!("{reference:?} must be an absolute path"),
        )),
    }
}

/// Loads and converts a localhost profile (OCI or Docker format).
pub fn load_profile(
    field: &str,
    path: &Path,
    caps: &BTreeSet<String>,
) -> Result<LinuxSeccomp, SpecError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SpecError::invalid(field, format!("cannot read {}: {e}", path.display())))?;
    parse_profile(&text, caps)
        .map_err(|e| SpecError::invalid(field, format!("{}: {e}", path.display())))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerProfile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Vec<DockerSyscall>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerSyscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    caps: Vec<String>,
}

/// The host architecture in the short names Docker profiles use in `includes.arches`.
fn docker_arch_names() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" => &["amd64", "x86_64"],
        "x86" => &["386", "x86"],
        "aarch64" => &["arm64", "aarch64"],
        "arm" => &["arm"],
        "s390x" => &["s390x"],
        "riscv64" => &["riscv64"],
        "powerpc64" => &["ppc64le"],
        _ => &[],
    }
}

/// Parses a profile. Docker-only fields are resolved for this host: `archMap` picks the native
/// architecture and its sub-architectures, `includes`/`excludes` are evaluated against the
/// container's capabilities and the host architecture. `minKernel` is not evaluated (treated
/// as satisfied): crius targets kernels newer than every minKernel in the upstream profiles.
pub fn parse_profile(text: &str, caps: &BTreeSet<String>) -> Result<LinuxSeccomp, String> {
    let p: DockerProfile =
        serde_json::from_str(text).map_err(|e| format!("not a seccomp profile: {e}"))?;
    if p.default_action.is_empty() {
        return Err("defaultAction is missing".into());
    }
    let (native, _) = arches();
    let mut architectures = p.architectures.clone();
    for m in &p.arch_map {
        if m.architecture == native {
            architectures.push(m.architecture.clone());
            architectures.extend(m.sub_architectures.iter().cloned());
        }
    }
    let arch_names = docker_arch_names();
    let has_cap = |c: &String| crate::caps::canonical_cap(c).is_some_and(|c| caps.contains(&c));
    let mut syscalls = Vec::new();
    for s in &p.syscalls {
        let inc = &s.includes;
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| arch_names.contains(&a.as_str())) {
            continue;
        }
        if !inc.caps.is_empty() && !inc.caps.iter().all(has_cap) {
            continue;
        }
        let exc = &s.excludes;
        if exc.arches.iter().any(|a| arch_names.contains(&a.as_str())) {
            continue;
        }
        if exc.caps.iter().any(has_cap) {
            continue;
        }
        let mut names = s.names.clone();
        if let Some(n) = &s.name {
            names.push(n.clone());
        }
        if names.is_empty() {
            return Err("a syscall rule has no names".into());
        }
        let mut rule = json!({"names": names, "action": s.action});
        if let Some(e) = s.errno_ret {
            rule["errnoRet"] = json!(e);
        }
        if let Some(a) = &s.args {
            if !a.is_null() {
                rule["args"] = a.clone();
            }
        }
        syscalls.push(rule);
    }
    let mut out = json!({"defaultAction": p.default_action, "syscalls": syscalls});
    if !architectures.is_empty() {
        out["architectures"] = json!(architectures);
    }
    if let Some(e) = p.default_errno_ret {
        out["defaultErrnoRet"] = json!(e);
    }
    if !p.flags.is_empty() {
        out["flags"] = json!(p.flags);
    }
    if let Some(l) = p.listener_path {
        out["listenerPath"] = json!(l);
    }
    if let Some(l) = p.listener_metadata {
        out["listenerMetadata"] = json!(l);
    }
    serde_json::from_value(out).map_err(|e| format!("invalid profile: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &LinuxSeccomp, action: LinuxSeccompAction) -> BTreeSet<String> {
        p.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|s| s.action() == action && s.args().is_none())
            .flat_map(|s| s.names().iter().cloned())
            .collect()
    }

    #[test]
    fn default_profile_shape() {
        let p = default_seccomp_profile(&HostInfo::default());
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(EPERM));
        assert!(!p.architectures().as_ref().unwrap().is_empty());
        let allowed = names(&p, LinuxSeccompAction::ScmpActAllow);
        for s in ["read", "write", "execve", "futex", "chroot", "exit_group"] {
            assert!(allowed.contains(s), "{s}");
        }
        for s in [
            "mount",
            "unshare",
            "setns",
            "reboot",
            "init_module",
            "ptrace",
            "keyctl",
            "bpf",
            "clone",
        ] {
            assert!(
                !allowed.contains(s),
                "{s} must not be unconditionally allowed"
            );
        }
        // clone is filtered by flags; clone3 returns ENOSYS.
        let rules = p.syscalls().as_ref().unwrap();
        let clone = rules
            .iter()
            .find(|s| s.names().iter().any(|n| n == "clone"))
            .unwrap();
        let arg = &clone.args().as_ref().unwrap()[0];
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(arg.value(), CLONE_NS_MASK);
        assert_eq!(arg.value_two(), Some(0));
        let clone3 = rules
            .iter()
            .find(|s| s.names().iter().any(|n| n == "clone3"))
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(ENOSYS));
    }

    #[test]
    fn caps_unlock_syscalls() {
        let mut caps: BTreeSet<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
        caps.insert("CAP_SYS_ADMIN".into());
        caps.insert("CAP_SYS_PTRACE".into());
        caps.remove("CAP_SYS_CHROOT");
        let p = default_seccomp_profile_for(&HostInfo::default(), &caps);
        let allowed = names(&p, LinuxSeccompAction::ScmpActAllow);
        for s in ["mount", "unshare", "setns", "clone", "clone3", "ptrace"] {
            assert!(allowed.contains(s), "{s}");
        }
        assert!(!allowed.contains("chroot"));
    }

    #[test]
    fn serialises_as_oci_json() {
        let p = default_seccomp_profile(&HostInfo::default());
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(v["syscalls"].as_array().unwrap().len() > 5);
    }

    #[test]
    fn oci_profile_parses() {
        let text = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#;
        let p = parse_profile(text, &BTreeSet::new()).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        let s = &p.syscalls().as_ref().unwrap()[0];
        assert_eq!(s.names(), &vec!["mkdir".to_string()]);
        assert_eq!(s.errno_ret(), Some(13));
    }

    #[test]
    fn docker_profile_is_converted() {
        let (native, subs) = arches();
        let text = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [
                {"architecture": native, "subArchitectures": subs},
                {"architecture": "SCMP_ARCH_MIPS", "subArchitectures": []}
            ],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [],
                 "comment": "", "includes": {}, "excludes": {}},
                {"name": "mount", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_CHROOT"]}},
                {"names": ["s390_only"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}}
            ]
        })
        .to_string();
        let caps: BTreeSet<String> = ["CAP_SYS_CHROOT".to_string()].into();
        let p = parse_profile(&text, &caps).unwrap();
        let all: Vec<String> = p
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .flat_map(|s| s.names().iter().cloned())
            .collect();
        assert_eq!(all, vec!["read", "write"]);
        let archs = serde_json::to_value(p.architectures()).unwrap();
        assert_eq!(archs.as_array().unwrap().len(), 1 + subs.len());
        let caps: BTreeSet<String> = ["CAP_SYS_ADMIN".to_string()].into();
        let p = parse_profile(&text, &caps).unwrap();
        assert_eq!(p.syscalls().as_ref().unwrap().len(), 3);
    }

    #[test]
    fn bad_profiles() {
        assert!(parse_profile("not json", &BTreeSet::new()).is_err());
        assert!(parse_profile("{}", &BTreeSet::new()).is_err());
        assert!(parse_profile(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#, &BTreeSet::new()).is_err());
        assert!(parse_profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ALLOW"}]}"#,
            &BTreeSet::new()
        )
        .is_err());
    }

    #[test]
    fn localhost_paths() {
        let root = Path::new("/var/lib/kubelet/seccomp");
        assert_eq!(
            localhost_profile_path("f", "/abs/p.json", Some(root)).unwrap(),
            PathBuf::from("/abs/p.json")
        );
        assert_eq!(
            localhost_profile_path("f", "/abs/p.json", None).unwrap(),
            PathBuf::from("/abs/p.json")
        );
        assert_eq!(
            localhost_profile_path("f", "profiles/p.json", Some(root)).unwrap(),
            root.join("profiles/p.json")
        );
        let err = localhost_profile_path("x.seccomp", "profiles/p.json", None).unwrap_err();
        assert_eq!(err.field(), Some("x.seccomp"));
        let err = localhost_profile_path("x.seccomp", "../p.json", Some(root)).unwrap_err();
        assert_eq!(err.field(), Some("x.seccomp"));
        assert!(localhost_profile_path("f", "", Some(root)).is_err());
    }
}
