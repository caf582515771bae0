//! Link settings for the `shoal` and `shoal-shim` binaries (the shim is
//! executed at every container start, `shoal internal-run` at every
//! runtime-only one).

fn main() {
    // Relative relocations packed (RELR, glibc 2.36+): at each start the
    // dynamic loader reads a few KiB of them instead of ~1 MiB of RELA
    // entries, a cost each start otherwise pays in time and resident memory.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
