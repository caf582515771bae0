//! Link settings for the `shoal` binary, which every container start
//! re-executes as its shim.

fn main() {
    // Relative relocations packed (RELR, glibc 2.36+): at each start the
    // dynamic loader reads a few KiB of them instead of ~1 MiB of RELA
    // entries, a cost each shim otherwise pays in time and resident memory.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
