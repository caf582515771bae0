//! A seccomp filter equivalent to Docker's default profile (moby `profiles/seccomp/default.json`):
//! an allow-list of system calls, more of them when the container holds the capability that
//! makes them meaningful (`mount` with CAP_SYS_ADMIN, `reboot` with CAP_SYS_BOOT, …), `clone`
//! without namespace flags (unless CAP_SYS_ADMIN), `clone3` answering ENOSYS (so C libraries
//! fall back to `clone`, whose flags the filter can see), `personality` limited to Docker's
//! values, and EPERM for everything else. Built as classic BPF by hand: the three calls with
//! argument checks first, then a binary search over the ranges of consecutive allowed call
//! numbers (Docker's default set makes 29 ranges: 75 instructions, about 10 run per call,
//! where a list of `jeq nr → allow` pairs takes 607, up to 600 run). The kernel runs the filter
//! for every call number when it is installed (to cache the calls it always allows), so its
//! length is paid at every container start.
//!
//! Only x86_64 is covered (other architectures get no filter yet); on x86_64,
//! 32-bit (i386) and x32 system calls are refused.

use std::io;

use crate::capabilities::has;

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
/// The low 32 bits of the first argument (little-endian).
const ARG0_LOW: u32 = 16;

/// `CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET` (Docker's mask).
const CLONE_NAMESPACE_FLAGS: u32 = 0x7e02_0000;
/// The `personality` values Docker allows.
const PERSONALITIES: [u32; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Whether this architecture has a filter.
pub(crate) const SUPPORTED: bool = cfg!(target_arch = "x86_64");

#[cfg(target_arch = "x86_64")]
mod table {
    macro_rules! nrs {
        ($($name:ident),* $(,)?) => { &[$(libc::$name as u32),*] };
    }

    /// Allowed for every container.
    pub(super) const ALWAYS: &[u32] = nrs![
        SYS_accept,
        SYS_accept4,
        SYS_access,
        SYS_adjtimex,
        SYS_alarm,
        SYS_arch_prctl,
        SYS_bind,
        SYS_brk,
        SYS_capget,
        SYS_capset,
        SYS_chdir,
        SYS_chmod,
        SYS_chown,
        SYS_clock_adjtime,
        SYS_clock_getres,
        SYS_clock_gettime,
        SYS_clock_nanosleep,
        SYS_close,
        SYS_close_range,
        SYS_connect,
        SYS_copy_file_range,
        SYS_creat,
        SYS_dup,
        SYS_dup2,
        SYS_dup3,
        SYS_epoll_create,
        SYS_epoll_create1,
        SYS_epoll_ctl,
        SYS_epoll_ctl_old,
        SYS_epoll_pwait,
        SYS_epoll_pwait2,
        SYS_epoll_wait,
        SYS_epoll_wait_old,
        SYS_eventfd,
        SYS_eventfd2,
        SYS_execve,
        SYS_execveat,
        SYS_exit,
        SYS_exit_group,
        SYS_faccessat,
        SYS_faccessat2,
        SYS_fadvise64,
        SYS_fallocate,
        SYS_fanotify_mark,
        SYS_fchdir,
        SYS_fchmod,
        SYS_fchmodat,
        SYS_fchown,
        SYS_fchownat,
        SYS_fcntl,
        SYS_fdatasync,
        SYS_fgetxattr,
        SYS_flistxattr,
        SYS_flock,
        SYS_fork,
        SYS_fremovexattr,
        SYS_fsetxattr,
        SYS_fstat,
        SYS_fstatfs,
        SYS_fsync,
        SYS_ftruncate,
        SYS_futex,
        SYS_futex_waitv,
        SYS_futimesat,
        SYS_getcpu,
        SYS_getcwd,
        SYS_getdents,
        SYS_getdents64,
        SYS_getegid,
        SYS_geteuid,
        SYS_getgid,
        SYS_getgroups,
        SYS_getitimer,
        SYS_getpeername,
        SYS_getpgid,
        SYS_getpgrp,
        SYS_getpid,
        SYS_getppid,
        SYS_getpriority,
        SYS_getrandom,
        SYS_getresgid,
        SYS_getresuid,
        SYS_getrlimit,
        SYS_get_robust_list,
        SYS_getrusage,
        SYS_getsid,
        SYS_getsockname,
        SYS_getsockopt,
        SYS_get_thread_area,
        SYS_gettid,
        SYS_gettimeofday,
        SYS_getuid,
        SYS_getxattr,
        SYS_inotify_add_watch,
        SYS_inotify_init,
        SYS_inotify_init1,
        SYS_inotify_rm_watch,
        SYS_io_cancel,
        SYS_ioctl,
        SYS_io_destroy,
        SYS_io_getevents,
        SYS_ioprio_get,
        SYS_ioprio_set,
        SYS_io_setup,
        SYS_io_submit,
        SYS_kill,
        SYS_landlock_add_rule,
        SYS_landlock_create_ruleset,
        SYS_landlock_restrict_self,
        SYS_lchown,
        SYS_lgetxattr,
        SYS_link,
        SYS_linkat,
        SYS_listen,
        SYS_listxattr,
        SYS_llistxattr,
        SYS_lremovexattr,
        SYS_lseek,
        SYS_lsetxattr,
        SYS_lstat,
        SYS_madvise,
        SYS_membarrier,
        SYS_memfd_create,
        SYS_memfd_secret,
        SYS_mincore,
        SYS_mkdir,
        SYS_mkdirat,
        SYS_mknod,
        SYS_mknodat,
        SYS_mlock,
        SYS_mlock2,
        SYS_mlockall,
        SYS_mmap,
        SYS_modify_ldt,
        SYS_mprotect,
        SYS_mq_getsetattr,
        SYS_mq_notify,
        SYS_mq_open,
        SYS_mq_timedreceive,
        SYS_mq_timedsend,
        SYS_mq_unlink,
        SYS_mremap,
        SYS_msgctl,
        SYS_msgget,
        SYS_msgrcv,
        SYS_msgsnd,
        SYS_msync,
        SYS_munlock,
        SYS_munlockall,
        SYS_munmap,
        SYS_name_to_handle_at,
        SYS_nanosleep,
        SYS_newfstatat,
        SYS_open,
        SYS_openat,
        SYS_openat2,
        SYS_pause,
        SYS_pidfd_open,
        SYS_pidfd_send_signal,
        SYS_pipe,
        SYS_pipe2,
        SYS_pkey_alloc,
        SYS_pkey_free,
        SYS_pkey_mprotect,
        SYS_poll,
        SYS_ppoll,
        SYS_prctl,
        SYS_pread64,
        SYS_preadv,
        SYS_preadv2,
        SYS_prlimit64,
        SYS_process_mrelease,
        SYS_pselect6,
        SYS_pwrite64,
        SYS_pwritev,
        SYS_pwritev2,
        SYS_read,
        SYS_readahead,
        SYS_readlink,
        SYS_readlinkat,
        SYS_readv,
        SYS_recvfrom,
        SYS_recvmmsg,
        SYS_recvmsg,
        SYS_remap_file_pages,
        SYS_removexattr,
        SYS_rename,
        SYS_renameat,
        SYS_renameat2,
        SYS_restart_syscall,
        SYS_rmdir,
        SYS_rseq,
        SYS_rt_sigaction,
        SYS_rt_sigpending,
        SYS_rt_sigprocmask,
        SYS_rt_sigqueueinfo,
        SYS_rt_sigreturn,
        SYS_rt_sigsuspend,
        SYS_rt_sigtimedwait,
        SYS_rt_tgsigqueueinfo,
        SYS_sched_getaffinity,
        SYS_sched_getattr,
        SYS_sched_getparam,
        SYS_sched_get_priority_max,
        SYS_sched_get_priority_min,
        SYS_sched_getscheduler,
        SYS_sched_rr_get_interval,
        SYS_sched_setaffinity,
        SYS_sched_setattr,
        SYS_sched_setparam,
        SYS_sched_setscheduler,
        SYS_sched_yield,
        SYS_seccomp,
        SYS_select,
        SYS_semctl,
        SYS_semget,
        SYS_semop,
        SYS_semtimedop,
        SYS_sendfile,
        SYS_sendmmsg,
        SYS_sendmsg,
        SYS_sendto,
        SYS_setfsgid,
        SYS_setfsuid,
        SYS_setgid,
        SYS_setgroups,
        SYS_setitimer,
        SYS_setpgid,
        SYS_setpriority,
        SYS_setregid,
        SYS_setresgid,
        SYS_setresuid,
        SYS_setreuid,
        SYS_setrlimit,
        SYS_set_robust_list,
        SYS_setsid,
        SYS_setsockopt,
        SYS_set_thread_area,
        SYS_set_tid_address,
        SYS_setuid,
        SYS_setxattr,
        SYS_shmat,
        SYS_shmctl,
        SYS_shmdt,
        SYS_shmget,
        SYS_shutdown,
        SYS_sigaltstack,
        SYS_signalfd,
        SYS_signalfd4,
        SYS_socket,
        SYS_socketpair,
        SYS_splice,
        SYS_stat,
        SYS_statfs,
        SYS_statx,
        SYS_symlink,
        SYS_symlinkat,
        SYS_sync,
        SYS_sync_file_range,
        SYS_syncfs,
        SYS_sysinfo,
        SYS_tee,
        SYS_tgkill,
        SYS_time,
        SYS_timer_create,
        SYS_timer_delete,
        SYS_timer_getoverrun,
        SYS_timer_gettime,
        SYS_timer_settime,
        SYS_timerfd_create,
        SYS_timerfd_gettime,
        SYS_timerfd_settime,
        SYS_times,
        SYS_tkill,
        SYS_truncate,
        SYS_umask,
        SYS_uname,
        SYS_unlink,
        SYS_unlinkat,
        SYS_utime,
        SYS_utimensat,
        SYS_utimes,
        SYS_vfork,
        SYS_vmsplice,
        SYS_wait4,
        SYS_waitid,
        SYS_write,
        SYS_writev,
        // Docker allows these from kernel 4.8 on, where ptrace can no longer bypass seccomp.
        SYS_ptrace,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
    ];

    /// Allowed for every container, missing from the libc crate's table: io_pgetevents.
    pub(super) const ALWAYS_BY_NUMBER: &[u32] = &[333];

    /// Allowed only with the capability named first.
    pub(super) const WITH_CAPABILITY: &[(&str, &[u32])] = &[
        (
            "CAP_SYS_ADMIN",
            nrs![
                SYS_bpf,
                SYS_clone,
                SYS_fanotify_init,
                SYS_fsconfig,
                SYS_fsmount,
                SYS_fsopen,
                SYS_fspick,
                SYS_lookup_dcookie,
                SYS_mount,
                SYS_mount_setattr,
                SYS_move_mount,
                SYS_open_tree,
                SYS_perf_event_open,
                SYS_quotactl,
                SYS_quotactl_fd,
                SYS_setdomainname,
                SYS_sethostname,
                SYS_setns,
                SYS_syslog,
                SYS_umount2,
                SYS_unshare,
                SYS_clone3,
            ],
        ),
        ("CAP_SYS_BOOT", nrs![SYS_reboot]),
        ("CAP_SYS_CHROOT", nrs![SYS_chroot]),
        ("CAP_SYS_MODULE", nrs![SYS_delete_module, SYS_init_module, SYS_finit_module]),
        ("CAP_SYS_PACCT", nrs![SYS_acct]),
        ("CAP_SYS_PTRACE", nrs![SYS_kcmp, SYS_pidfd_getfd, SYS_process_madvise]),
        ("CAP_SYS_RAWIO", nrs![SYS_iopl, SYS_ioperm]),
        ("CAP_SYS_TIME", nrs![SYS_settimeofday, SYS_clock_settime]),
        ("CAP_SYS_TTY_CONFIG", nrs![SYS_vhangup]),
        ("CAP_SYS_NICE", nrs![SYS_get_mempolicy, SYS_mbind, SYS_set_mempolicy]),
        ("CAP_SYSLOG", nrs![SYS_syslog]),
        ("CAP_BPF", nrs![SYS_bpf]),
        ("CAP_PERFMON", nrs![SYS_perf_event_open]),
    ];

    pub(super) const CLONE: u32 = libc::SYS_clone as u32;
    pub(super) const CLONE3: u32 = libc::SYS_clone3 as u32;
    pub(super) const PERSONALITY: u32 = libc::SYS_personality as u32;
}

#[cfg(not(target_arch = "x86_64"))]
mod table {
    pub(super) const ALWAYS: &[u32] = &[];
    pub(super) const ALWAYS_BY_NUMBER: &[u32] = &[];
    pub(super) const WITH_CAPABILITY: &[(&str, &[u32])] = &[];
    pub(super) const CLONE: u32 = u32::MAX;
    pub(super) const CLONE3: u32 = u32::MAX;
    pub(super) const PERSONALITY: u32 = u32::MAX;
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The call numbers allowed outright (without an argument check) for `capabilities`, sorted.
fn allowed_calls(capabilities: &[String]) -> Vec<u32> {
    let mut allowed: Vec<u32> = [table::ALWAYS, table::ALWAYS_BY_NUMBER].concat();
    for (cap, nrs) in table::WITH_CAPABILITY {
        if has(capabilities, cap) {
            allowed.extend_from_slice(nrs);
        }
    }
    allowed.sort_unstable();
    allowed.dedup();
    allowed
}

/// Runs of consecutive numbers in sorted, deduplicated `nrs`, as inclusive ranges.
fn ranges(nrs: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &nr in nrs {
        match out.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(nr) => *hi = nr,
            _ => out.push((nr, nr)),
        }
    }
    out
}

/// Where a conditional jump goes: the next instruction, or a label resolved at the end.
#[derive(Clone, Copy)]
enum Target {
    Next,
    Label(usize),
}

/// A classic BPF program with forward jumps to labels.
#[derive(Default)]
struct Builder {
    code: Vec<(u16, u32, Target, Target)>,
    labels: Vec<Option<usize>>,
}

impl Builder {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn place(&mut self, label: usize) {
        self.labels[label] = Some(self.code.len());
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.code.push((code, k, Target::Next, Target::Next));
    }
    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.code.push((code, k, jt, jf));
    }
    /// The instructions, or `None` if a jump does not reach its label (more than 255
    /// instructions ahead, or backwards).
    fn finish(self) -> Option<Vec<libc::sock_filter>> {
        let offset = |pc: usize, target: Target| -> Option<u8> {
            match target {
                Target::Next => Some(0),
                Target::Label(l) => u8::try_from(self.labels.get(l).copied().flatten()?.checked_sub(pc + 1)?).ok(),
            }
        };
        self.code
            .iter()
            .enumerate()
            .map(|(pc, &(code, k, jt, jf))| Some(jump(code, k, offset(pc, jt)?, offset(pc, jf)?)))
            .collect()
    }

    /// A binary search of `A` (the call number, known to be at least `lower`) over
    /// `ranges`: to `allow` inside one of them, to `deny` outside all.
    fn search(&mut self, ranges: &[(u32, u32)], lower: u32, allow: usize, deny: usize) {
        match ranges {
            [] => self.jump(JEQ_K, 0, Target::Label(deny), Target::Label(deny)),
            [(lo, hi)] => {
                if *lo > lower {
                    self.jump(JGE_K, *lo, Target::Next, Target::Label(deny));
                }
                self.jump(JGT_K, *hi, Target::Label(deny), Target::Label(allow));
            }
            _ => {
                let mid = ranges.len() / 2;
                let upper_half = self.label();
                self.jump(JGE_K, ranges[mid].0, Target::Label(upper_half), Target::Next);
                self.search(&ranges[..mid], lower, allow, deny);
                self.place(upper_half);
                self.search(&ranges[mid..], ranges[mid].0, allow, deny);
            }
        }
    }
}

/// The filter for a container holding `capabilities` (names `CAP_…`).
pub(crate) fn program(capabilities: &[String]) -> Vec<libc::sock_filter> {
    // Built from fixed tables, the search always fits; the list is the fallback all the same.
    searched_program(capabilities).unwrap_or_else(|| listed_program(capabilities))
}

/// The arch check; clone, clone3 and personality by their arguments; then a binary search
/// over the ranges of allowed call numbers.
fn searched_program(capabilities: &[String]) -> Option<Vec<libc::sock_filter>> {
    let deny = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let mut b = Builder::default();
    let (allow, denied, search, personality) = (b.label(), b.label(), b.label(), b.label());
    b.stmt(LD_W_ABS, ARCH);
    b.jump(JEQ_K, AUDIT_ARCH_X86_64, Target::Next, Target::Label(denied));
    b.stmt(LD_W_ABS, NR);
    if !has(capabilities, "CAP_SYS_ADMIN") {
        let (clone, not_clone3) = (b.label(), b.label());
        b.jump(JEQ_K, table::CLONE, Target::Label(clone), Target::Next);
        b.jump(JEQ_K, table::CLONE3, Target::Next, Target::Label(not_clone3));
        b.stmt(RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
        b.place(not_clone3);
        b.jump(JEQ_K, table::PERSONALITY, Target::Label(personality), Target::Label(search));
        b.place(clone);
        b.stmt(LD_W_ABS, ARG0_LOW);
        b.jump(JSET_K, CLONE_NAMESPACE_FLAGS, Target::Label(denied), Target::Label(allow));
    } else {
        b.jump(JEQ_K, table::PERSONALITY, Target::Label(personality), Target::Label(search));
    }
    b.place(personality);
    b.stmt(LD_W_ABS, ARG0_LOW);
    for value in PERSONALITIES {
        b.jump(JEQ_K, value, Target::Label(allow), Target::Next);
    }
    b.jump(JEQ_K, 0, Target::Label(denied), Target::Label(denied));
    b.place(search);
    b.search(&ranges(&allowed_calls(capabilities)), 0, allow, denied);
    b.place(allow);
    b.stmt(RET_K, SECCOMP_RET_ALLOW);
    b.place(denied);
    b.stmt(RET_K, deny);
    b.finish()
}

/// The same decisions as a plain list of `jeq nr → allow` pairs.
fn listed_program(capabilities: &[String]) -> Vec<libc::sock_filter> {
    let deny = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let allowed = allowed_calls(capabilities);
    let sys_admin = has(capabilities, "CAP_SYS_ADMIN");

    let mut prog =
        vec![stmt(LD_W_ABS, ARCH), jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0), stmt(RET_K, deny), stmt(LD_W_ABS, NR)];
    for nr in allowed {
        prog.push(jump(JEQ_K, nr, 0, 1));
        prog.push(stmt(RET_K, SECCOMP_RET_ALLOW));
    }
    if !sys_admin {
        // clone without namespace flags; clone3 hides its flags in memory: ENOSYS.
        prog.extend([
            jump(JEQ_K, table::CLONE, 0, 4),
            stmt(LD_W_ABS, ARG0_LOW),
            jump(JSET_K, CLONE_NAMESPACE_FLAGS, 1, 0),
            stmt(RET_K, SECCOMP_RET_ALLOW),
            stmt(RET_K, deny),
            jump(JEQ_K, table::CLONE3, 0, 1),
            stmt(RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        ]);
    }
    let n = PERSONALITIES.len() as u8;
    prog.push(jump(JEQ_K, table::PERSONALITY, 0, n + 3));
    prog.push(stmt(LD_W_ABS, ARG0_LOW));
    for (i, value) in PERSONALITIES.iter().enumerate() {
        // Jump over the remaining compares and the deny, onto the allow.
        prog.push(jump(JEQ_K, *value, n - i as u8, 0));
    }
    prog.push(stmt(RET_K, deny));
    prog.push(stmt(RET_K, SECCOMP_RET_ALLOW));
    prog.push(stmt(RET_K, deny));
    prog
}

/// Installs the filter on the calling thread (inherited by everything it executes).
pub(crate) fn install(capabilities: &[String]) -> io::Result<()> {
    if !SUPPORTED {
        return Ok(());
    }
    let filter = program(capabilities);
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).map_err(|_| io::Error::other("the seccomp filter is too long"))?,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `filter`, which outlives the call; the kernel copies it.
    let ret =
        unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog, 0, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Runs classic BPF `prog` on a `seccomp_data` of (nr, arch, arg0).
    fn run(prog: &[libc::sock_filter], nr: u32, arch: u32, arg0: u32) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let ins = prog[pc];
            pc += 1;
            match ins.code {
                LD_W_ABS => {
                    a = match ins.k {
                        NR => nr,
                        ARCH => arch,
                        ARG0_LOW => arg0,
                        other => panic!("load of offset {other}"),
                    }
                }
                JEQ_K => pc += usize::from(if a == ins.k { ins.jt } else { ins.jf }),
                JGT_K => pc += usize::from(if a > ins.k { ins.jt } else { ins.jf }),
                JGE_K => pc += usize::from(if a >= ins.k { ins.jt } else { ins.jf }),
                JSET_K => pc += usize::from(if a & ins.k != 0 { ins.jt } else { ins.jf }),
                RET_K => return ins.k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    fn caps(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn decisions_follow_dockers_profile() {
        let eperm = SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let default = program(&caps(&crate::capabilities::DEFAULT));
        let x86 = AUDIT_ARCH_X86_64;
        let nr = |n: libc::c_long| n as u32;
        assert_eq!(run(&default, nr(libc::SYS_read), x86, 0), SECCOMP_RET_ALLOW);
        assert_eq!(run(&default, nr(libc::SYS_chroot), x86, 0), SECCOMP_RET_ALLOW);
        assert_eq!(run(&default, nr(libc::SYS_mount), x86, 0), eperm);
        assert_eq!(run(&default, nr(libc::SYS_unshare), x86, 0), eperm);
        assert_eq!(run(&default, nr(libc::SYS_keyctl), x86, 0), eperm);
        assert_eq!(run(&default, nr(libc::SYS_reboot), x86, 0), eperm);
        // fork-like clone yes, namespace-creating clone no, clone3 ENOSYS.
        assert_eq!(run(&default, nr(libc::SYS_clone), x86, libc::SIGCHLD as u32), SECCOMP_RET_ALLOW);
        assert_eq!(run(&default, nr(libc::SYS_clone), x86, libc::CLONE_NEWUSER as u32), eperm);
        assert_eq!(run(&default, nr(libc::SYS_clone3), x86, 0), SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
        assert_eq!(run(&default, nr(libc::SYS_personality), x86, 0x8), SECCOMP_RET_ALLOW);
        assert_eq!(run(&default, nr(libc::SYS_personality), x86, 0xffff_ffff), SECCOMP_RET_ALLOW);
        assert_eq!(run(&default, nr(libc::SYS_personality), x86, 0x0040000), eperm);
        // Another architecture's calls are refused.
        assert_eq!(run(&default, nr(libc::SYS_read), 0x4000_0003, 0), eperm);

        let admin = program(&caps(&["CAP_SYS_ADMIN"]));
        assert_eq!(run(&admin, nr(libc::SYS_mount), x86, 0), SECCOMP_RET_ALLOW);
        assert_eq!(run(&admin, nr(libc::SYS_clone), x86, libc::CLONE_NEWUSER as u32), SECCOMP_RET_ALLOW);
        assert_eq!(run(&admin, nr(libc::SYS_chroot), x86, 0), eperm);
        assert!(default.len() < 4096, "over BPF_MAXINSNS: {}", default.len());
    }

    #[test]
    fn the_search_decides_as_the_list_does() {
        let every: Vec<&str> = crate::capabilities::NAMES.to_vec();
        let sets = [caps(&crate::capabilities::DEFAULT), caps(&[]), caps(&["CAP_SYS_ADMIN"]), caps(&every)];
        let args = [0, libc::SIGCHLD as u32, libc::CLONE_NEWUSER as u32, 0x8, 0x0040000, 0xffff_ffff];
        for set in &sets {
            let searched = searched_program(set).expect("the search fits in 8-bit jumps");
            let listed = listed_program(set);
            assert!(searched.len() * 2 < listed.len(), "{} vs {} instructions", searched.len(), listed.len());
            for arch in [AUDIT_ARCH_X86_64, 0x4000_0003] {
                for nr in 0..1100 {
                    for arg in args {
                        assert_eq!(
                            run(&searched, nr, arch, arg),
                            run(&listed, nr, arch, arg),
                            "call {nr}, arch {arch:#x}, arg {arg:#x}, capabilities {set:?}"
                        );
                    }
                }
            }
        }
        assert_eq!(ranges(&[1, 2, 3, 5, 7, 8]), vec![(1, 3), (5, 5), (7, 8)]);
        assert_eq!(ranges(&[u32::MAX - 1, u32::MAX]), vec![(u32::MAX - 1, u32::MAX)]);
    }
}
