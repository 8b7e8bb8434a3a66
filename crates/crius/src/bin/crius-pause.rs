//! crius-pause: pid 1 of a pod's shared PID namespace. It does nothing but reap orphans until it is told
//! to stop. Started by the daemon with the new PID namespace already unshared for its children, it forks
//! once (the child becomes pid 1), writes the child's host pid to the file named by its argument, and
//! exits. No allocator-heavy code after the fork.

use std::io::Write;

extern "C" fn on_term(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}
extern "C" fn on_chld(_: libc::c_int) {}

/// The audit architecture this binary's syscall numbers belong to.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// The only syscalls the reaping loop makes (glibc's waitpid is wait4, sigsuspend rt_sigsuspend;
/// the signal handlers return through rt_sigreturn and exit through exit_group).
const ALLOWED: [libc::c_long; 7] = [
    libc::SYS_wait4,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// Installs pause's own seccomp filter: the syscalls above, EPERM for every other, the process killed
/// for another architecture's calling convention. Stricter than any profile a pod can name, so the
/// pause is never less confined than its pod asked (and confined when it asked for nothing).
/// Async-signal-safe: no allocation. Needs no_new_privs (set before).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn confine() -> Result<(), ()> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    // seccomp_data: nr at offset 0, arch at offset 4.
    let mut prog = [op(0, 0, 0, 0); 6 + ALLOWED.len()];
    prog[0] = op(LD_W_ABS, 0, 0, 4);
    prog[1] = op(JEQ_K, 1, 0, AUDIT_ARCH);
    prog[2] = op(RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS);
    prog[3] = op(LD_W_ABS, 0, 0, 0);
    let n = ALLOWED.len();
    for (i, nr) in ALLOWED.iter().enumerate() {
        // On a match, jump over the remaining checks and the EPERM return to ALLOW.
        prog[4 + i] = op(JEQ_K, (n - i) as u8, 0, *nr as u32);
    }
    prog[4 + n] = op(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32);
    let last = prog.len() - 1;
    prog[last] = op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW);
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies the filter.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(())
    }
}

/// Other architectures: no filter (their audit arch is not spelled out here).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn confine() -> Result<(), ()> {
    Ok(())
}

fn main() {
    let Some(pid_file) = std::env::args_os().nth(1) else {
        eprintln!("usage: crius-pause PID_FILE [UID GID | keep keep]");
        std::process::exit(2);
    };
    // The pod's user (default 65535, like the upstream pause image): pid 1 keeps no privilege.
    let id = |n: usize| -> libc::uid_t {
        std::env::args()
            .nth(n)
            .and_then(|s| s.parse().ok())
            .unwrap_or(65535)
    };
    let (uid, gid) = (id(2), id(3) as libc::gid_t);
    // "keep": a pod with its own user namespace, where pause has no capability to change identity.
    let keep = std::env::args().nth(2).as_deref() == Some("keep");
    // SAFETY: plain libc calls; the child runs only async-signal-safe code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        eprintln!("crius-pause: fork: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    if pid > 0 {
        let tmp = {
            let mut p = pid_file.clone();
            p.push(".tmp");
            p
        };
        let res = std::fs::File::create(&tmp)
            // No fsync: the pid file lives in the state dir and means nothing after a reboot.
            .and_then(|mut f| f.write_all(pid.to_string().as_bytes()))
            .and_then(|_| std::fs::rename(&tmp, &pid_file));
        if let Err(e) = res {
            eprintln!("crius-pause: write pid file {:?}: {e}", pid_file);
            // SAFETY: kill the child we just made so nothing is left behind.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            std::process::exit(1);
        }
        std::process::exit(0);
    }
    // SAFETY: signal setup and the reaping loop use async-signal-safe libc calls only.
    unsafe {
        // The daemon waits for EOF on the pipes it gave us; pid 1 must not hold them.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
        // Drop everything before idling: no groups, the pod's gid and uid (a non-zero uid leaves no
        // capabilities), no way back through setuid binaries. A failure leaves nothing running.
        if (!keep
            && (libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0))
            || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        {
            libc::_exit(1);
        }
        libc::signal(libc::SIGTERM, on_term as *const () as usize);
        libc::signal(libc::SIGINT, on_term as *const () as usize);
        libc::signal(libc::SIGCHLD, on_chld as *const () as usize);
        let mut block: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGCHLD);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_BLOCK, &block, &mut old);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        // Last: from here on pid 1 can only reap, wait for signals and exit.
        if confine().is_err() {
            libc::_exit(1);
        }
        loop {
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
            libc::sigsuspend(&empty);
        }
    }
}
