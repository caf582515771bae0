//! `shoal-shim <container dir>`: the per-container shim (see `shoal_runtime::shim`), a binary
//! of its own so that every container start execs only the code the shim needs, not the whole
//! `shoal` binary. `shoal` finds it next to itself.

fn main() {
    let mut args = std::env::args_os().skip(1);
    match (args.next(), args.next()) {
        (Some(dir), None) => shoal_runtime::shim::main(std::path::Path::new(&dir)),
        _ => {
            eprintln!(
                "usage: shoal-shim <container dir>\n\nThe shim of one container, started by the shoal daemon (or `shoal-rt`) for each container start; not meant to be run by hand."
            );
            std::process::exit(2);
        }
    }
}
