//! Link settings for the runtime's binaries, `shoal-shim` and `shoal-rt` (the shim is executed
//! at every container start, `shoal-rt run` at every runtime-only one), the same as `shoal`'s
//! (see the `cli` crate's build script): a start pays for as little loading as possible.

fn main() {
    // Relative relocations packed (RELR, glibc 2.36+): at each start the dynamic loader reads a
    // few KiB of them instead of every RELA entry.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    // Position-dependent executables: the linker resolves the pointers in `.data.rel.ro` at link
    // time, so the dynamic loader does not write (and so copy) those pages at each start. The
    // executable's own code is then not placed at a random address (its libraries, stack and
    // heap still are), as with the Go-built container runtimes.
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
