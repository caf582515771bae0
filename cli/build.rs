//! Link settings for the `shoal` binary (the runtime crate's build script
//! gives its binaries, `shoal-shim` and `shoal-rt`, the same ones).

fn main() {
    // Relative relocations packed (RELR, glibc 2.36+): at each start the
    // dynamic loader reads a few KiB of them instead of ~1 MiB of RELA
    // entries, a cost each start otherwise pays in time and resident memory.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    // Position-dependent executables: the linker resolves the pointers in `.data.rel.ro`
    // (~700 KiB in `shoal`: vtables, string tables) at link time, so the dynamic loader no
    // longer writes them at each start, which copied every one of those pages (a fault and
    // a 4 KiB copy each, about a third of `shoal`'s start-up). The executable's own code is
    // then not placed at a random address (its libraries, stack and heap still are), as with
    // the Go-built container runtimes (runc, containerd, dockerd release binaries).
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
