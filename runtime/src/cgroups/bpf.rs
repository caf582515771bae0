//! Device control on cgroup v2: a `BPF_CGROUP_DEVICE` program attached to the container's
//! cgroup, the v2 counterpart of v1's `devices.allow` (v2 has no device files).
//!
//! The program is generated from the same rules v1 writes (`c 1:3 rwm`, `c 136:* rwm`,
//! `b *:* m`, …): a device access is allowed when one rule has its type, its major and
//! minor (or `*`) and every access asked for (read, write, mknod); anything else is denied,
//! as after v1's deny-all. runc and crun generate the same kind of program.

use std::{fs, os::fd::AsRawFd, path::Path};

use crate::error::Error;

/// One rule: `c`, `b` or `a` (any), major and minor (`None`: `*`), and the access bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    kind: Option<u32>,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
}

/// `BPF_DEVCG_DEV_*` and `BPF_DEVCG_ACC_*` (linux/bpf.h).
const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;

impl Rule {
    /// Parses a devices cgroup rule (`type major:minor access`).
    pub(crate) fn parse(rule: &str) -> Result<Rule, Error> {
        let bad = || Error::invalid(format!("device rule \"{rule}\" is not \"c|b|a major:minor rwm\""));
        let mut parts = rule.split_whitespace();
        let (Some(kind), Some(numbers), Some(access), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let kind = match kind {
            "c" => Some(DEV_CHAR),
            "b" => Some(DEV_BLOCK),
            "a" => None,
            _ => return Err(bad()),
        };
        let number = |n: &str| if n == "*" { Ok(None) } else { n.parse::<u32>().map(Some).map_err(|_| bad()) };
        let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
        let mut bits = 0;
        for c in access.chars() {
            bits |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => return Err(bad()),
            };
        }
        Ok(Rule { kind, major: number(major)?, minor: number(minor)?, access: bits })
    }
}

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

// Opcodes: class | op | source (linux/bpf_common.h, linux/bpf.h).
/// `dst = *(u32 *)(src + off)`.
const LDX_W: u8 = 0x61;
/// `dst &= imm` (32 bits).
const AND32_K: u8 = 0x54;
/// `dst >>= imm` (32 bits).
const RSH32_K: u8 = 0x74;
/// `dst = src` (64 bits).
const MOV64_X: u8 = 0xbf;
/// `dst = imm` (64 bits).
const MOV64_K: u8 = 0xb7;
/// `if dst != imm goto +off`.
const JNE_K: u8 = 0x55;
const EXIT: u8 = 0x95;

/// The program for `rules`: r2 = type, r3 = access, r4 = major, r5 = minor (from the context
/// in r1, `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`), then one
/// block per rule that returns 1 when it matches, and 0 at the end.
fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for rule in rules {
        let mut checks: Vec<(u8, i32)> = Vec::new();
        if let Some(kind) = rule.kind {
            checks.push((2, kind as i32));
        }
        if let Some(major) = rule.major {
            checks.push((4, major as i32));
        }
        if let Some(minor) = rule.minor {
            checks.push((5, minor as i32));
        }
        // Each check jumps past the block when it fails: the checks, the access test
        // (copy, mask, jump) and the accepting return (set, exit).
        let len = checks.len() + 3 + 2;
        for (i, (reg, value)) in checks.iter().enumerate() {
            p.push(insn(JNE_K, *reg, 0, (len - i - 1) as i16, *value));
        }
        // Every access asked for is in the rule: (access & !rule) == 0.
        p.push(insn(MOV64_X, 1, 3, 0, 0));
        p.push(insn(AND32_K, 1, 0, 0, (!rule.access & 0xffff) as i32));
        p.push(insn(JNE_K, 1, 0, 2, 0));
        p.push(insn(MOV64_K, 0, 0, 0, 1));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// The start of `union bpf_attr` for `BPF_PROG_LOAD`.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_PROG_ATTACH`.
#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Loads the program for `rules` and attaches it to the cgroup v2 directory `cgroup`.
/// Returns false, having said so in the log once, when this process may not load BPF
/// programs at all (`EPERM`, `ENOSYS`: shoal itself runs in a container, or in a kernel
/// without BPF), where whoever confines shoal confines its devices too.
pub(crate) fn attach(cgroup: &Path, rules: &[Rule]) -> Result<bool, Error> {
    let insns = program(rules);
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 4096];
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"shoal_device");
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: `load` is a valid bpf_attr prefix of the size given; the pointers in it (the
    // instructions, the license, the log buffer) outlive the call.
    let prog = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &load as *const ProgLoad, std::mem::size_of::<ProgLoad>())
    };
    if prog < 0 {
        let e = std::io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)) {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    error = %e,
                    "this process may not load BPF programs: containers' devices are not restricted by cgroup (cgroup v2)"
                )
            });
            return Ok(false);
        }
        let verifier =
            String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)]).trim().to_string();
        return Err(Error::io(
            format!(
                "loading the device filter for cgroup {} (cgroup v2 controls devices with a BPF program; the kernel needs CONFIG_CGROUP_BPF){}",
                cgroup.display(),
                if verifier.is_empty() { String::new() } else { format!(": {verifier}") }
            ),
            e,
        ));
    }
    // SAFETY: the kernel just returned this new descriptor, owned by nothing else.
    let prog = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(prog as i32) };
    let dir = fs::File::open(cgroup).map_err(|e| Error::io(format!("opening cgroup {}", cgroup.display()), e))?;
    let attach = ProgAttach {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        // No flags: one program per cgroup, and attaching again (each start of the
        // container) replaces it instead of adding one more. Programs on ancestors attached
        // with BPF_F_ALLOW_MULTI (systemd's) still apply as well.
        attach_flags: 0,
        ..Default::default()
    };
    // SAFETY: `attach` is a valid bpf_attr of the size given, its descriptors open for the call.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, &attach as *const ProgAttach, std::mem::size_of::<ProgAttach>())
    };
    if rc < 0 {
        return Err(Error::io(
            format!("attaching the device filter to cgroup {}", cgroup.display()),
            std::io::Error::last_os_error(),
        ));
    }
    // The attachment holds the program from now on, until the cgroup is removed.
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse() {
        assert_eq!(
            Rule::parse("c 1:3 rwm").ok(),
            Some(Rule { kind: Some(DEV_CHAR), major: Some(1), minor: Some(3), access: 7 })
        );
        assert_eq!(
            Rule::parse("b *:* m").ok(),
            Some(Rule { kind: Some(DEV_BLOCK), major: None, minor: None, access: ACC_MKNOD })
        );
        assert_eq!(Rule::parse("a 136:* r").ok(), Some(Rule { kind: None, major: Some(136), minor: None, access: 2 }));
        for bad in ["", "c 1:3", "x 1:3 r", "c 1 r", "c 1:3 rx", "c a:3 r", "c 1:3 r extra"] {
            assert!(Rule::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// A cgroup v2 hierarchy to try the filter in (this machine's hybrid one, or a pure v2
    /// one), when running as root.
    fn cgroup2_mount() -> Option<std::path::PathBuf> {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
        info.lines().find_map(|line| {
            let (fields, fstype) = line.split_once(" - ")?;
            fstype.starts_with("cgroup2 ").then(|| fields.split(' ').nth(4)).flatten().map(std::path::PathBuf::from)
        })
    }

    /// Runs `head -c 1 <device>` in `cgroup`: whether it could read the device.
    fn reads(cgroup: &Path, device: &str) -> bool {
        use std::os::unix::process::CommandExt;
        let procs = std::ffi::CString::new(cgroup.join("cgroup.procs").as_os_str().as_encoded_bytes())
            .expect("no NUL in a cgroup path");
        let mut cmd = std::process::Command::new("head");
        cmd.args(["-c", "1", device]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        // SAFETY: only async-signal-safe calls (open, write, close) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                Ok(())
            })
        };
        cmd.status().is_ok_and(|s| s.success())
    }

    #[test]
    fn the_filter_allows_only_its_devices() {
        let Some(mount) = cgroup2_mount() else {
            eprintln!("skipped: needs root and a cgroup2 mount");
            return;
        };
        let cgroup = mount.join(format!("shoal-bpf-test-{}", std::process::id()));
        fs::create_dir(&cgroup).expect("creating a test cgroup");
        // Attached twice, as for a container started twice: the second replaces the first.
        let first = ["c 1:5 r"].map(|r| Rule::parse(r).expect("rule"));
        let rules = ["c 1:3 rwm", "c 1:9 r"].map(|r| Rule::parse(r).expect("rule"));
        let attached = attach(&cgroup, &first).and_then(|_| attach(&cgroup, &rules));
        let results = attached
            .as_ref()
            .ok()
            .map(|_| (reads(&cgroup, "/dev/null"), reads(&cgroup, "/dev/urandom"), reads(&cgroup, "/dev/zero")));
        let _ = fs::remove_dir(&cgroup);
        assert!(attached.expect("attaching the filter"), "root may load BPF programs");
        // null and urandom are allowed, zero (1:5) is not.
        assert_eq!(results, Some((true, true, false)));
        // Outside the cgroup, zero reads.
        assert!(reads(&mount, "/dev/zero") || !mount.join("cgroup.procs").exists());
    }

    #[test]
    fn program_jumps_land_on_the_next_rule() {
        let rules = [Rule::parse("c 1:3 rwm").expect("rule"), Rule::parse("b *:* m").expect("rule")];
        let p = program(&rules);
        // 6 loads, rule 1: 3 checks + 5, rule 2: 1 check + 5, the final deny: 2.
        assert_eq!(p.len(), 6 + 8 + 6 + 2);
        // Every failed check of rule 1 jumps to rule 2's first instruction (index 14).
        for (i, ins) in p[6..9].iter().enumerate() {
            assert_eq!((6 + i) as i16 + 1 + ins.off, 14, "{ins:?}");
        }
        // Rule 2's check and its access test jump to the final deny (index 20).
        assert_eq!(14 + 1 + p[14].off, 20);
        assert_eq!(17 + 1 + p[17].off, 20);
        assert_eq!(p[17].code, JNE_K);
        assert_eq!(p[20], insn(MOV64_K, 0, 0, 0, 0));
    }
}
