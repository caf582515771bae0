//! `shoal-rt`: shoal's container runtime on its own, with no daemon, as `crun run` is an OCI
//! runtime on its own. It runs containers from the images in a data root's image store (put
//! there by `shoal image import|load` through a daemon) and removes them when they exit.
//!
//! A binary of its own, like `shoal-shim`, so that what it costs to start is the runtime's
//! code, not the whole `shoal` command line: the start benchmark (`tests/benches/start.sh`)
//! times it against `crun run`.

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;
use shoal_runtime::{ContainerSpec, Runtime};

const USAGE: &str = "usage:
  shoal-rt run [--data-root DIR] IMAGE [COMMAND [ARG...]]
      Creates a container from IMAGE, starts it, waits for it to exit, removes it, and
      exits with its exit code (125 when the runtime itself fails). Its output goes to its
      log, as for `shoal run -d`.
  shoal-rt bench [--data-root DIR] [--runs N] [--warmup N] IMAGE [COMMAND [ARG...]]
      Opens the runtime once, then times N cycles (default 100, after 5 uncounted ones) of
      create, start, wait and remove of such a container, in this process. Prints one line
      per cycle in milliseconds (the cycle, then each step), and the median on stderr.

DIR is a shoal data root no daemon is using (default /var/lib/shoal); its images are
imported by a daemon beforehand (`shoal image import`, `shoal image load`).";

/// What `run` exits with when the runtime fails (as `docker run` does).
const RUNTIME_FAILED: u8 = 125;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match Args::parse(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("shoal-rt: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match parsed.command {
        Cmd::Run => run(&parsed),
        Cmd::Bench { runs, warmup } => bench(&parsed, runs, warmup).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(RUNTIME_FAILED)),
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(RUNTIME_FAILED)
        }
    }
}

enum Cmd {
    Run,
    Bench { runs: usize, warmup: usize },
}

struct Args {
    command: Cmd,
    data_root: PathBuf,
    image: String,
    cmd: Vec<String>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args, String> {
        let (sub, mut rest) = match args.split_first() {
            Some((sub, rest)) => (sub.as_str(), rest),
            None => return Err("no command given".into()),
        };
        let mut command = match sub {
            "run" => Cmd::Run,
            "bench" => Cmd::Bench { runs: 100, warmup: 5 },
            "-h" | "--help" | "help" => return Err("shoal's container runtime, without a daemon".into()),
            other => return Err(format!("unknown command \"{other}\": use run or bench")),
        };
        let mut data_root = PathBuf::from("/var/lib/shoal");
        // Options come before the image; everything after the image is the container's command.
        while let Some((flag, after)) = rest.split_first().filter(|(flag, _)| flag.starts_with('-')) {
            let (value, after) = after.split_first().ok_or_else(|| format!("{flag} needs a value"))?;
            let count = |what: &str| {
                value.parse::<usize>().map_err(|_| format!("{what} must be a whole number, not \"{value}\""))
            };
            match (flag.as_str(), &mut command) {
                ("--data-root", _) => data_root = PathBuf::from(value),
                ("--runs", Cmd::Bench { runs, .. }) => *runs = count("--runs")?,
                ("--warmup", Cmd::Bench { warmup, .. }) => *warmup = count("--warmup")?,
                _ => return Err(format!("unknown option {flag} for {sub}")),
            }
            rest = after;
        }
        let (image, cmd) = rest.split_first().ok_or("no image given")?;
        Ok(Args { command, data_root, image: image.clone(), cmd: cmd.to_vec() })
    }

    /// The runtime under the data root, and the spec of a container removed once it exits
    /// (as with `shoal run --rm`).
    fn open(&self) -> anyhow::Result<(Runtime, ContainerSpec)> {
        let runtime = Runtime::open(&self.data_root.join("runtime"), shim_binary()?, Vec::new())
            .with_context(|| format!("opening the runtime under {}", self.data_root.display()))?;
        let spec = ContainerSpec {
            image: self.image.clone(),
            cmd: (!self.cmd.is_empty()).then(|| self.cmd.clone()),
            disposable: true,
            ..Default::default()
        };
        Ok((runtime, spec))
    }
}

/// `shoal-shim`, next to this binary.
fn shim_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| anyhow::anyhow!("finding shoal-rt's own path: {e}"))?;
    let shim = exe.with_file_name("shoal-shim");
    if !shim.is_file() {
        anyhow::bail!(
            "the container shim {} is missing: install shoal-shim next to {} (`cargo build -p shoal-runtime` builds both)",
            shim.display(),
            exe.display()
        );
    }
    Ok(shim)
}

fn run(args: &Args) -> anyhow::Result<i32> {
    let (rt, spec) = args.open()?;
    let info = rt.create_container(&spec)?;
    let result = rt.start_container(&info.id).and_then(|_| rt.wait_container_blocking(&info.id, Duration::MAX));
    rt.remove_container(&info.id, true)?;
    match result {
        Ok(done) => Ok(done.exit_code.unwrap_or(255)),
        Err(shoal_runtime::Error::Exec { exit_code, message, container }) => {
            eprintln!("Error: {message} in container {container}");
            Ok(exit_code)
        }
        Err(e) => Err(e.into()),
    }
}

fn bench(args: &Args, runs: usize, warmup: usize) -> anyhow::Result<()> {
    let (rt, spec) = args.open()?;
    let ms = |from: Instant, to: Instant| to.duration_since(from).as_secs_f64() * 1000.0;
    println!("# cycle_ms create_ms start_ms wait_ms remove_ms");
    let mut cycles = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        let t0 = Instant::now();
        let info = rt.create_container(&spec)?;
        let t1 = Instant::now();
        let started = rt.start_container(&info.id);
        let t2 = Instant::now();
        let done = started.and_then(|_| rt.wait_container_blocking(&info.id, Duration::MAX));
        let t3 = Instant::now();
        rt.remove_container(&info.id, true)?;
        let t4 = Instant::now();
        let done = done?;
        if done.exit_code != Some(0) {
            anyhow::bail!(
                "the container exited with {:?} ({}): the benchmark needs a command that succeeds",
                done.exit_code,
                done.error.unwrap_or_default()
            );
        }
        if i >= warmup {
            println!("{:.3} {:.3} {:.3} {:.3} {:.3}", ms(t0, t4), ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t3, t4));
            cycles.push(ms(t0, t4));
        }
    }
    cycles.sort_by(f64::total_cmp);
    if let Some(median) = cycles.get(cycles.len() / 2) {
        eprintln!("{} cycles, median {median:.2} ms", cycles.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments() {
        let a = parse(&["run", "--data-root", "/d", "bb:1", "sh", "-c", "exit 3"]).expect("valid");
        assert!(matches!(a.command, Cmd::Run));
        assert_eq!(a.data_root, Path::new("/d"));
        assert_eq!(a.image, "bb:1");
        assert_eq!(a.cmd, ["sh", "-c", "exit 3"]);
        let b = parse(&["bench", "--runs", "7", "--warmup", "0", "bb:1"]).expect("valid");
        assert!(matches!(b.command, Cmd::Bench { runs: 7, warmup: 0 }));
        assert_eq!(b.data_root, Path::new("/var/lib/shoal"));
        assert!(b.cmd.is_empty());
        for (bad, says) in [
            (&["run"][..], "no image"),
            (&["bench", "--runs", "x", "bb"], "whole number"),
            (&["run", "--runs", "3", "bb"], "unknown option --runs"),
            (&["run", "--data-root"], "needs a value"),
            (&["start", "bb"], "unknown command"),
            (&[], "no command"),
        ] {
            let err = parse(bad).err().unwrap_or_default();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }
}
