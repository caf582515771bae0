//! `shoal`: the command line and the node daemon.
//!
//! This crate only wires: the logic lives in the library crates (`manager`,
//! `agent`, `runtime`, `deploy`). `shoal daemon` runs a node; every other
//! command is a client of a daemon's HTTP API on its Unix socket.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use shoal::client::Client;
use shoal::commands::Format;
use shoal::{api, client, commands, daemon, lab};

const DEFAULT_HOST: &str = "unix:///run/shoal/shoal.sock";

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "A multi-host container orchestrator: a Docker Swarm you can read and trust"
)]
struct Cli {
    /// The daemon to talk to.
    #[arg(short = 'H', long = "host", env = "SHOAL_HOST", default_value = DEFAULT_HOST, global = true)]
    host: String,
    /// Where simulated hosts (`machine`, `lab`) keep their state.
    #[arg(long, env = "SHOAL_LAB_ROOT", default_value = "/var/lib/shoal/lab", global = true)]
    lab_root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node daemon.
    Daemon {
        /// Where the node keeps its state (raft, images, containers).
        #[arg(long, default_value = "/var/lib/shoal")]
        data_root: PathBuf,
        /// The API socket.
        #[arg(long, default_value = "/run/shoal/shoal.sock")]
        socket: PathBuf,
        /// Standalone containers' default network outside a swarm: `default` (the node's
        /// bridge `shoal0`, NAT to the outside) or `none` (loopback only). In a swarm they
        /// are on the bridge either way.
        #[arg(long, default_value = "default", value_parser = ["default", "none"])]
        bridge: String,
    },
    /// Manage the swarm.
    #[command(subcommand)]
    Swarm(SwarmCmd),
    /// Manage swarm nodes.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Manage services.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Manage stacks (compose files).
    #[command(subcommand)]
    Stack(StackCmd),
    /// Manage swarm secrets.
    #[command(subcommand)]
    Secret(FileObjectCmd),
    /// Manage swarm configs.
    #[command(subcommand)]
    Config(FileObjectCmd),
    /// Manage swarm networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage images on this node.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage volumes on this node.
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Manage containers on this node.
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Show system-wide information.
    Info,
    /// Manage simulated hosts (network namespaces on this machine).
    #[command(subcommand)]
    Machine(MachineCmd),
    /// Manage a lab of simulated hosts.
    #[command(subcommand)]
    Lab(LabCmd),
    /// Run a container (`container run`).
    Run(RunArgs),
    /// List containers (`container ls`).
    Ps(ContainerLsArgs),
    /// Show a container's logs (`container logs`).
    Logs(LogsArgs),
    /// Run a command in a running container (`container exec`).
    Exec(ExecArgs),
    /// Kills, unmounts and removes the cgroups of what a dead daemon left
    /// under a data root (for tests and recovery).
    #[command(hide = true)]
    InternalCleanup { data_root: PathBuf },
}

#[derive(Subcommand)]
enum MachineCmd {
    /// Create a machine and start its daemon.
    Create {
        /// The driver: only netns (network + UTS namespaces on this host).
        #[arg(short, long, default_value = "netns")]
        driver: String,
        /// Its address on the lab bridge (default: the next free one).
        #[arg(long)]
        addr: Option<std::net::Ipv4Addr>,
        name: String,
    },
    /// List machines.
    #[command(alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Run a command inside a machine (its network, hostname and socket).
    Ssh {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Copy a file to a machine: scp SRC MACHINE:DST.
    Scp { source: PathBuf, destination: String },
    /// Start a machine's daemon.
    Start { names: Vec<String> },
    /// Stop a machine's daemon (its containers keep running).
    Stop { names: Vec<String> },
    /// Remove machines and everything they made.
    #[command(alias = "remove")]
    Rm { names: Vec<String> },
}

#[derive(Subcommand)]
enum LabCmd {
    /// Create N machines and form a swarm: the first inits it, the next M-1
    /// join as managers, the rest as workers.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// How many of the machines are managers (an odd number keeps quorum best).
        #[arg(long, default_value_t = 1)]
        managers: u32,
    },
    /// Remove every machine, the lab bridge and the lab's files.
    Down,
}

#[derive(Subcommand)]
enum SwarmCmd {
    /// Create a swarm with this node as its first manager.
    Init {
        /// The address other nodes reach this manager at (IP[:PORT]).
        #[arg(long, default_value = "")]
        advertise_addr: String,
        /// Where the manager listens (IP:PORT).
        #[arg(long, default_value = "0.0.0.0:2377")]
        listen_addr: String,
        /// Raft log entries between snapshots (default 10000).
        #[arg(long)]
        snapshot_interval: Option<u64>,
        /// How often the raft leader sends heartbeats (default 100ms).
        #[arg(long, value_parser = parse_duration)]
        raft_heartbeat: Option<Duration>,
        /// The least time without a leader before managers elect one
        /// (default 250ms; the greatest is twice it).
        #[arg(long, value_parser = parse_duration)]
        raft_election_timeout: Option<Duration>,
        /// Replicas one service may ask for (default 10000, at most 1000000).
        #[arg(long)]
        max_replicas: Option<u64>,
    },
    /// Join a swarm as a worker (or a manager, by the token).
    Join {
        /// The join token (`shoal swarm join-token worker` on a manager).
        #[arg(long)]
        token: String,
        /// The address this node advertises (IP).
        #[arg(long, default_value = "")]
        advertise_addr: String,
        /// Where this node's manager listens, if the token makes it one (IP:PORT).
        #[arg(long, default_value = "0.0.0.0:2377")]
        listen_addr: String,
        /// A manager's address (HOST[:PORT], port 2377 by default).
        remote: String,
    },
    /// Leave the swarm (the last manager needs --force: it erases the swarm).
    Leave {
        #[arg(short, long)]
        force: bool,
    },
    /// Show the command to join the swarm as a worker or a manager.
    JoinToken {
        role: String,
        #[arg(short, long)]
        quiet: bool,
        /// Replace the token: the old one stops working; joined nodes stay.
        #[arg(long)]
        rotate: bool,
    },
    /// Change the swarm's settings.
    Update {
        /// Terminated tasks kept per slot.
        #[arg(long)]
        task_history_limit: Option<i64>,
        /// How often agents send heartbeats (e.g. 2s).
        #[arg(long, value_parser = parse_duration)]
        dispatcher_heartbeat: Option<Duration>,
        /// How long node certificates live (e.g. 2160h).
        #[arg(long, value_parser = parse_duration)]
        cert_expiry: Option<Duration>,
        /// Replicas one service may ask for (0: the default, 10000; at most
        /// 1000000). Running services keep theirs; their next update must fit.
        #[arg(long)]
        max_replicas: Option<u64>,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Change a node's availability or labels.
    Update {
        /// active (takes tasks), pause (keeps its tasks, takes no new ones) or
        /// drain (its tasks move to other nodes).
        #[arg(long, value_parser = ["active", "pause", "drain"])]
        availability: Option<String>,
        #[arg(long)]
        label_add: Vec<String>,
        #[arg(long)]
        label_rm: Vec<String>,
        node: String,
    },
    /// Make workers managers: each joins the raft membership.
    Promote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make managers workers (refused for the last manager, or when the
    /// others would lose quorum).
    Demote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Show nodes in detail (JSON); `self` is this node.
    Inspect {
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Print a human-readable summary instead of JSON.
        #[arg(long)]
        pretty: bool,
    },
    /// List the tasks of a node (`self` is this node).
    Ps {
        #[arg(default_value = "self")]
        node: String,
        #[arg(long)]
        no_trunc: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove nodes from the swarm.
    #[command(alias = "remove")]
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// List nodes.
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// A duration flag (`--timeout 5m`, `--raft-heartbeat 200ms`), read by the one duration
/// parser (Go's grammar, as Docker's flags): at most about 292 years, never negative, so that no
/// deadline computed from it overflows.
fn parse_duration(s: &str) -> Result<Duration, String> {
    shoal_deploy::units::Duration::parse(s).map(shoal_deploy::units::Duration::to_std)
}

#[derive(Subcommand)]
enum ServiceCmd {
    /// Create a service.
    Create {
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = 1)]
        replicas: u64,
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// Return at once instead of waiting for the service to converge.
        #[arg(short, long)]
        detach: bool,
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
        image: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List services.
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List the tasks of a service.
    Ps {
        service: String,
        #[arg(long)]
        no_trunc: bool,
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Scale services: SERVICE=REPLICAS…
    Scale {
        #[arg(required = true)]
        pairs: Vec<String>,
        #[arg(short, long)]
        detach: bool,
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Show a service's logs.
    Logs {
        service: String,
        /// Keep printing new lines as they are written.
        #[arg(short, long)]
        follow: bool,
        #[arg(short, long)]
        timestamps: bool,
        #[arg(long)]
        tail: Option<String>,
    },
    /// Remove services.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Show services in detail (JSON).
    Inspect {
        #[arg(required = true)]
        services: Vec<String>,
    },
}

/// The compose files of a stack and how to read them.
#[derive(clap::Args)]
struct ComposeArgs {
    #[arg(short = 'c', long = "compose-file", required = true)]
    files: Vec<PathBuf>,
    /// Variables for interpolation (default: .env beside the first file).
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Enable services of this profile (repeatable; `*` for all).
    #[arg(long = "profile")]
    profiles: Vec<String>,
}

#[derive(Subcommand)]
enum StackCmd {
    /// Deploy a stack from compose files, and wait until it runs.
    #[command(alias = "up")]
    Deploy {
        #[command(flatten)]
        compose: ComposeArgs,
        /// Remove the stack's services that are no longer in the files.
        #[arg(long)]
        prune: bool,
        /// Return at once instead of waiting for the stack to converge.
        #[arg(short, long)]
        detach: bool,
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
        name: String,
    },
    /// Print the compose files as shoal understands them: merged, interpolated, resolved.
    Config(ComposeArgs),
    /// List stacks.
    #[command(alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List a stack's services.
    Services {
        name: String,
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List a stack's tasks.
    Ps {
        name: String,
        /// Only tasks matching KEY=VALUE (id, name, node, desired-state); repeatable.
        #[arg(short, long)]
        filter: Vec<String>,
        #[arg(long)]
        no_trunc: bool,
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove a stack, and wait until its containers are gone.
    #[command(alias = "remove", alias = "down")]
    Rm {
        name: String,
        #[arg(short, long)]
        detach: bool,
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand)]
enum FileObjectCmd {
    /// Create one from a file, or from standard input with "-".
    Create {
        /// A label KEY=VALUE (repeatable).
        #[arg(short, long = "label")]
        labels: Vec<String>,
        name: String,
        file: PathBuf,
    },
    /// List them (the data is never shown).
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        /// Filter: id=…, name=… (prefix), label=KEY[=VALUE].
        #[arg(short, long = "filter")]
        filters: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show one or more in detail.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more (refused while a service uses one).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum NetworkCmd {
    /// Create a swarm-scoped overlay network.
    Create {
        #[arg(short, long, default_value = "overlay")]
        driver: String,
        /// An IPv4 subnet such as 10.20.0.0/24 (default: one from the cluster's pool).
        #[arg(long)]
        subnet: Option<String>,
        #[arg(long)]
        gateway: Option<String>,
        #[arg(long)]
        internal: bool,
        #[arg(long)]
        attachable: bool,
        #[arg(long = "label")]
        labels: Vec<String>,
        /// A driver option KEY=VALUE (repeatable).
        #[arg(short, long = "opt")]
        options: Vec<String>,
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show one or more networks in detail.
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove one or more networks (refused while a service uses one).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Connect a standalone container to a network (`bridge` or an attachable overlay).
    Connect {
        /// Another name the container answers to on the network (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a standalone container from a network.
    Disconnect {
        /// Accepted for Docker's sake: disconnecting never waits.
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
}

#[derive(Subcommand)]
enum VolumeCmd {
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only volumes that match: dangling=true|false, driver=local, label=KEY[=VALUE], name=NAME.
        #[arg(short, long = "filter")]
        filter: Vec<String>,
    },
    /// Create a volume (without a name: an anonymous one).
    Create {
        name: Option<String>,
        /// Set a label (KEY=VALUE).
        #[arg(short, long = "label")]
        label: Vec<String>,
    },
    /// Show volumes in detail (JSON).
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container uses one, unless --force).
    #[command(alias = "remove")]
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove the anonymous volumes no container uses (with --all, named ones too).
    Prune {
        #[arg(short, long)]
        all: bool,
        /// Only volumes that match: label=KEY[=VALUE], label!=KEY[=VALUE].
        #[arg(long = "filter")]
        filter: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Give an image another name.
    Tag { source: String, target: String },
    /// Remove images (refused while a container uses one, unless --force).
    #[command(alias = "remove", alias = "rmi")]
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show images in detail (JSON).
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove images that have no name and no container.
    Prune,
    /// Write images to an archive (OCI layout, which Docker loads too).
    Save {
        #[arg(short, long)]
        output: PathBuf,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Load images from a `docker save` or OCI archive.
    Load {
        #[arg(short, long)]
        input: PathBuf,
    },
    /// Import a root filesystem (a tarball or a directory) as an image.
    Import {
        /// Set the image config with a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE,
        /// LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable.
        #[arg(short, long = "change")]
        change: Vec<String>,
        source: PathBuf,
        reference: String,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

#[derive(clap::Args)]
struct CreateArgs {
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass this one's).
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    #[arg(long)]
    hostname: Option<String>,
    /// Replace the image's entrypoint.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Set a label (KEY=VALUE).
    #[arg(short, long = "label")]
    label: Vec<String>,
    /// The user to run as: uid[:gid] or name[:group].
    #[arg(short, long)]
    user: Option<String>,
    /// Mount a host path or a named volume: SRC:DST[:ro].
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// Mount a bind, volume or tmpfs, in Docker's syntax: type=bind,source=/srv,target=/data[,readonly].
    #[arg(long, value_parser = commands::container::parse_mount)]
    mount: Vec<shoal::api::docker::types::Mount>,
    /// Mount a tmpfs: PATH[:OPTIONS].
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Memory limit (e.g. 64m, 1g); the container is OOM-killed above it.
    #[arg(short, long, value_parser = commands::container::parse_bytes)]
    memory: Option<i64>,
    /// CPU limit (e.g. 0.5).
    #[arg(long, value_parser = commands::container::parse_cpus)]
    cpus: Option<i64>,
    /// Maximum number of processes.
    #[arg(long)]
    pids_limit: Option<i64>,
    /// Add a Linux capability.
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop a Linux capability.
    #[arg(long)]
    cap_drop: Vec<String>,
    /// All capabilities, no seccomp, no masked paths.
    #[arg(long)]
    privileged: bool,
    /// Run an init as pid 1 that reaps zombies and forwards signals.
    #[arg(long)]
    init: bool,
    /// Security options (no-new-privileges).
    #[arg(long)]
    security_opt: Vec<String>,
    /// The signal `stop` sends first.
    #[arg(long)]
    stop_signal: Option<String>,
    /// Seconds `stop` waits before killing.
    #[arg(long)]
    stop_timeout: Option<u64>,
    /// Restart policy: no, on-failure[:max-retries], always or unless-stopped.
    #[arg(long, value_parser = commands::container::parse_restart)]
    restart: Option<shoal_runtime::RestartPolicy>,
    /// Give the container a host device: /dev/host[:/dev/container][:rwm].
    #[arg(long, value_parser = commands::container::parse_device)]
    device: Vec<shoal_runtime::Device>,
    /// The container's network: bridge (the default: the node's bridge, with NAT to the
    /// outside; loopback only where the daemon runs with --bridge none outside a swarm),
    /// none (loopback only), host, or an attachable overlay network of the swarm (its name or ID).
    #[arg(long, default_value = "default")]
    network: String,
    /// A name server for the container's resolv.conf.
    #[arg(long)]
    dns: Vec<String>,
    /// A search domain for the container's resolv.conf.
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// A resolver option for the container's resolv.conf (ndots:2).
    #[arg(long = "dns-option")]
    dns_option: Vec<String>,
    /// Add a line to the container's /etc/hosts: NAME:IP.
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// Give the container a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// Keep the container's stdin open (and attach it, with run).
    #[arg(short, long)]
    interactive: bool,
    image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl CreateArgs {
    fn options(self) -> commands::container::CreateOptions {
        commands::container::CreateOptions {
            name: self.name,
            env: self.env,
            env_files: self.env_file,
            workdir: self.workdir,
            hostname: self.hostname,
            entrypoint: self.entrypoint,
            labels: self.label,
            user: self.user,
            volumes: self.volume,
            mounts: self.mount,
            tmpfs: self.tmpfs,
            read_only: self.read_only,
            memory: self.memory,
            nano_cpus: self.cpus,
            pids_limit: self.pids_limit,
            cap_add: self.cap_add,
            cap_drop: self.cap_drop,
            privileged: self.privileged,
            init: self.init,
            security_opt: self.security_opt,
            stop_signal: self.stop_signal,
            stop_timeout: self.stop_timeout,
            restart: self.restart.unwrap_or_default(),
            devices: self.device,
            network: self.network,
            dns: self.dns,
            dns_search: self.dns_search,
            dns_options: self.dns_option,
            extra_hosts: self.add_host,
            image: self.image,
            args: self.args,
            tty: self.tty,
            interactive: self.interactive,
        }
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    #[command(flatten)]
    create: CreateArgs,
}

#[derive(clap::Args)]
struct ContainerLsArgs {
    /// Also the containers that are not running.
    #[arg(short, long)]
    all: bool,
    #[arg(short, long)]
    quiet: bool,
    /// Only containers that match: label=KEY[=VALUE], name=NAME, id=ID, status=STATUS.
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(clap::Args)]
struct LogsArgs {
    container: String,
    #[arg(short, long)]
    follow: bool,
    #[arg(short, long)]
    timestamps: bool,
    #[arg(long)]
    tail: Option<String>,
    /// Only lines from then on: a duration back from now (10m, 1h30m), an RFC 3339 time or a
    /// unix time.
    #[arg(long)]
    since: Option<String>,
    /// Only lines up to then (the same forms as --since).
    #[arg(long)]
    until: Option<String>,
}

#[derive(Subcommand)]
enum ContainerCmd {
    /// Create and start a container; print its output until it exits.
    Run(RunArgs),
    /// Create a container.
    Create(CreateArgs),
    /// Start containers.
    Start {
        /// Attach to the container's output until it exits (one container).
        #[arg(short, long)]
        attach: bool,
        /// With --attach, also attach stdin (the container needs -i).
        #[arg(short, long)]
        interactive: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Attach the terminal to a running container's stdio.
    Attach {
        /// Do not pass stdin to the container.
        #[arg(long)]
        no_stdin: bool,
        container: String,
    },
    /// Stop containers: the stop signal, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before killing.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers.
    Kill {
        #[arg(short, long, default_value = "SIGKILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    #[command(alias = "remove")]
    Rm {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    #[command(alias = "list", alias = "ps")]
    Ls(ContainerLsArgs),
    /// Show a container's logs.
    Logs(LogsArgs),
    /// Show containers in detail (JSON).
    Inspect {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Wait for containers to exit; print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers (as `stop` does), then start them again.
    Restart {
        /// Seconds to wait before killing (default: each container's stop timeout).
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Make an image of a container's changes.
    Commit {
        /// Set the image config with a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE,
        /// LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable.
        #[arg(short, long = "change")]
        change: Vec<String>,
        /// A comment recorded in the image's history.
        #[arg(short, long)]
        message: Option<String>,
        container: String,
        reference: String,
    },
    /// Freeze every process of containers.
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Run a command in a running container.
    Exec(ExecArgs),
}

#[derive(clap::Args)]
struct ExecArgs {
    /// Keep stdin open: the command reads what you type or pipe in.
    #[arg(short, long)]
    interactive: bool,
    /// Give the command a terminal.
    #[arg(short, long)]
    tty: bool,
    /// Run it in the background.
    #[arg(short, long)]
    detach: bool,
    #[arg(short, long = "env")]
    env: Vec<String>,
    #[arg(short, long)]
    user: Option<String>,
    #[arg(short, long)]
    workdir: Option<String>,
    container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: starting the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Daemon { data_root, socket, bridge } => return run_daemon(data_root, socket, bridge != "none").await,
        Command::Machine(cmd) => return machine_command(&cli.lab_root, cmd).await,
        Command::InternalCleanup { data_root } => {
            lab::clean_data_root(&data_root);
            return Ok(());
        }
        Command::Lab(LabCmd::Up { nodes, managers }) => return lab_up(&cli.lab_root, nodes, managers).await,
        Command::Stack(StackCmd::Config(a)) => return commands::stack::config(&a.files, a.env_file, a.profiles),
        Command::Lab(LabCmd::Down) => {
            if cli.lab_root.exists() {
                lab::Lab::open(&cli.lab_root, None)?.down()?;
            }
            return Ok(());
        }
        _ => {}
    }
    let client = Client::new(&cli.host)?;
    let c = &client;
    match cli.command {
        Command::Daemon { .. } | Command::InternalCleanup { .. } | Command::Machine(_) | Command::Lab(_) => Ok(()),
        Command::Info => commands::swarm::info(c).await,
        Command::Swarm(SwarmCmd::Init {
            advertise_addr,
            listen_addr,
            snapshot_interval,
            raft_heartbeat,
            raft_election_timeout,
            max_replicas,
        }) => {
            let raft = serde_json::json!({
                "SnapshotInterval": snapshot_interval.unwrap_or(0),
                "HeartbeatMs": raft_heartbeat.map(|d| d.as_millis() as u64).unwrap_or(0),
                "ElectionTimeoutMs": raft_election_timeout.map(|d| d.as_millis() as u64).unwrap_or(0),
            });
            let limits = serde_json::json!({ "MaxReplicas": max_replicas.unwrap_or(0) });
            commands::swarm::init(c, &listen_addr, &advertise_addr, raft, limits).await
        }
        Command::Swarm(SwarmCmd::Join { token, advertise_addr, listen_addr, remote }) => {
            commands::swarm::join(c, &token, &remote, &listen_addr, &advertise_addr).await
        }
        Command::Swarm(SwarmCmd::JoinToken { role, quiet, rotate }) => {
            commands::swarm::join_token(c, &role, quiet, rotate).await
        }
        Command::Swarm(SwarmCmd::Update { task_history_limit, dispatcher_heartbeat, cert_expiry, max_replicas }) => {
            commands::swarm::update(c, task_history_limit, dispatcher_heartbeat, cert_expiry, max_replicas).await
        }
        Command::Node(NodeCmd::Ls { quiet, format }) => commands::node::ls(c, quiet, format).await,
        Command::Node(NodeCmd::Update { availability, label_add, label_rm, node }) => {
            commands::node::update(c, &node, availability.as_deref(), &label_add, &label_rm).await
        }
        Command::Node(NodeCmd::Inspect { nodes, pretty }) => commands::node::inspect(c, &nodes, pretty).await,
        Command::Node(NodeCmd::Ps { node, no_trunc, format }) => commands::node::ps(c, &node, no_trunc, format).await,
        Command::Node(NodeCmd::Rm { force, nodes }) => commands::node::rm(c, &nodes, force).await,
        Command::Node(NodeCmd::Promote { nodes }) => commands::node::set_role(c, &nodes, "manager").await,
        Command::Node(NodeCmd::Demote { nodes }) => commands::node::set_role(c, &nodes, "worker").await,
        Command::Swarm(SwarmCmd::Leave { force }) => commands::swarm::leave(c, force).await,
        Command::Service(cmd) => match cmd {
            ServiceCmd::Create { name, replicas, env, detach, timeout, image, args } => {
                let o = commands::service::CreateOptions { name, replicas, env, detach, image, args };
                commands::service::create(c, o, timeout).await
            }
            ServiceCmd::Ls { quiet, format } => commands::service::ls(c, quiet, format).await,
            ServiceCmd::Ps { service, no_trunc, quiet, format } => {
                commands::service::ps(c, &service, no_trunc, quiet, format).await
            }
            ServiceCmd::Scale { pairs, detach, timeout } => commands::service::scale(c, &pairs, detach, timeout).await,
            ServiceCmd::Logs { service, follow, timestamps, tail } => {
                commands::service::logs(c, &service, commands::service::LogOptions { follow, timestamps, tail }).await
            }
            ServiceCmd::Rm { services } => commands::service::rm(c, &services).await,
            ServiceCmd::Inspect { services } => commands::service::inspect(c, &services).await,
        },
        Command::Stack(cmd) => match cmd {
            StackCmd::Deploy { compose, prune, detach, timeout, name } => {
                let ComposeArgs { files, env_file, profiles } = compose;
                let o = commands::stack::DeployOptions { files, env_file, profiles, name, prune, detach, timeout };
                commands::stack::deploy(c, o).await
            }
            StackCmd::Config(a) => commands::stack::config(&a.files, a.env_file, a.profiles),
            StackCmd::Ls { format } => commands::stack::ls(c, format).await,
            StackCmd::Services { name, quiet, format } => commands::stack::services(c, &name, quiet, format).await,
            StackCmd::Ps { name, filter, no_trunc, quiet, format } => {
                commands::stack::ps(c, &name, &filter, no_trunc, quiet, format).await
            }
            StackCmd::Rm { name, detach, timeout } => commands::stack::rm(c, &name, detach, timeout).await,
        },
        Command::Secret(cmd) => file_object(c, commands::secret::Kind::Secret, cmd).await,
        Command::Config(cmd) => file_object(c, commands::secret::Kind::Config, cmd).await,
        Command::Network(cmd) => match cmd {
            NetworkCmd::Create { driver, subnet, gateway, internal, attachable, labels, options, name } => {
                let o = commands::network::CreateOptions {
                    name,
                    driver,
                    subnet,
                    gateway,
                    internal,
                    attachable,
                    labels,
                    options,
                };
                commands::network::create(c, o).await
            }
            NetworkCmd::Ls { quiet, format } => commands::network::ls(c, quiet, format).await,
            NetworkCmd::Inspect { networks } => commands::network::inspect(c, &networks).await,
            NetworkCmd::Rm { networks } => commands::network::rm(c, &networks).await,
            NetworkCmd::Connect { aliases, network, container } => {
                commands::network::connect(c, &network, &container, &aliases).await
            }
            NetworkCmd::Disconnect { force, network, container } => {
                commands::network::disconnect(c, &network, &container, force).await
            }
        },
        Command::Image(ImageCmd::Import { change, source, reference }) => {
            commands::image::import(c, &source, &reference, &change).await
        }
        Command::Image(ImageCmd::Ls { quiet, format }) => commands::image::ls(c, quiet, format).await,
        Command::Volume(VolumeCmd::Ls { quiet, format, filter }) => {
            commands::volume::ls(c, quiet, format, &filter).await
        }
        Command::Volume(VolumeCmd::Create { name, label }) => {
            commands::volume::create(c, name.as_deref(), &label).await
        }
        Command::Volume(VolumeCmd::Inspect { names }) => commands::volume::inspect(c, &names).await,
        Command::Volume(VolumeCmd::Rm { force, names }) => commands::volume::rm(c, &names, force).await,
        Command::Volume(VolumeCmd::Prune { all, filter }) => commands::volume::prune(c, all, &filter).await,
        Command::Image(ImageCmd::Tag { source, target }) => commands::image::tag(c, &source, &target).await,
        Command::Image(ImageCmd::Rm { force, images }) => commands::image::rm(c, &images, force).await,
        Command::Image(ImageCmd::Inspect { images }) => commands::image::inspect(c, &images).await,
        Command::Image(ImageCmd::Prune) => commands::image::prune(c).await,
        Command::Image(ImageCmd::Save { output, images }) => commands::image::save(c, &images, &output).await,
        Command::Image(ImageCmd::Load { input }) => commands::image::load(c, &input).await,
        Command::Ps(a) | Command::Container(ContainerCmd::Ls(a)) => {
            commands::container::ls(c, a.all, a.quiet, &a.filter, a.format).await
        }
        Command::Run(r) | Command::Container(ContainerCmd::Run(r)) => {
            let attached = !r.detach && (r.create.tty || r.create.interactive);
            let code = commands::container::run(c, &r.create.options(), r.detach, r.rm).await?;
            // An attached run leaves a thread blocked reading stdin: exit now, as Docker does,
            // rather than wait for input that is not needed.
            if code != 0 || attached {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Logs(l) | Command::Container(ContainerCmd::Logs(l)) => {
            commands::container::logs(c, &l.container, l.follow, l.timestamps, l.tail, l.since, l.until).await
        }
        Command::Exec(e) | Command::Container(ContainerCmd::Exec(e)) => {
            let options = commands::container::ExecOptions {
                cmd: &e.command,
                env: &e.env,
                user: e.user.as_deref(),
                workdir: e.workdir.as_deref(),
                interactive: e.interactive,
                tty: e.tty,
                detach: e.detach,
            };
            let code = commands::container::exec(c, &e.container, &options).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Container(cmd) => container_command(c, cmd).await,
    }
}

/// Exits with a container's exit code (also 0: an attached session may leave a
/// thread blocked reading stdin, which must not hold the program up).
fn exit_with(code: i32) -> ! {
    std::process::exit(code)
}

async fn machine_command(lab_root: &std::path::Path, cmd: MachineCmd) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("machines are network namespaces: run shoal machine as root");
    }
    let lab = lab::Lab::open(lab_root, None)?;
    match cmd {
        MachineCmd::Create { driver, addr, name } => {
            if driver != "netns" {
                anyhow::bail!("unknown driver \"{driver}\": the only driver is netns");
            }
            let m = lab.create(&name, addr)?;
            println!("{} created at {} (socket unix://{})", m.name, m.addr, lab.socket(&m.name).display());
            Ok(())
        }
        MachineCmd::Ls { format } => commands::machine::ls(&lab, format).await,
        MachineCmd::Ssh { name, command } => {
            let code = commands::machine::ssh(&lab, &name, &command)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        MachineCmd::Scp { source, destination } => {
            let to = commands::machine::scp(&lab, &source, &destination)?;
            println!("{}", to.display());
            Ok(())
        }
        MachineCmd::Start { names } => names.iter().try_for_each(|n| lab.start(&lab.machine(n)?)),
        MachineCmd::Stop { names } => names.iter().try_for_each(|n| lab.stop(&lab.machine(n)?)),
        MachineCmd::Rm { names } => names.iter().try_for_each(|n| lab.remove(&lab.machine(n)?)),
    }
}

/// `lab up`: machines n1…nN, a swarm initialised on n1, the rest joined.
async fn lab_up(lab_root: &std::path::Path, nodes: u32, managers: u32) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("machines are network namespaces: run shoal lab as root");
    }
    if nodes == 0 || managers == 0 || managers > nodes {
        anyhow::bail!("--nodes must be at least 1 and --managers between 1 and --nodes");
    }
    let lab = lab::Lab::open(lab_root, None)?;
    if !lab.machines()?.is_empty() {
        anyhow::bail!("the lab at {} already has machines: `shoal lab down` first", lab_root.display());
    }
    let mut machines = Vec::new();
    for i in 1..=nodes {
        let m = lab.create(&format!("n{i}"), None)?;
        println!("{} created at {}", m.name, m.addr);
        machines.push(m);
    }
    let client_of = |m: &lab::Machine| Client::new(&format!("unix://{}", lab.socket(&m.name).display()));
    let first = &machines[0];
    let listen = format!("{}:2377", first.addr);
    let c1 = client_of(first)?;
    c1.post("/swarm/init", &serde_json::json!({ "ListenAddr": listen, "AdvertiseAddr": listen })).await?;
    let swarm: bollard_stubs::models::Swarm = commands::answer(c1.get("/swarm").await?, "GET /swarm")?;
    let tokens = swarm.join_tokens.unwrap_or_default();
    let (worker, manager) = (tokens.worker.unwrap_or_default(), tokens.manager.unwrap_or_default());
    for (i, m) in machines.iter().enumerate().skip(1) {
        let token = if i < managers as usize { &manager } else { &worker };
        let body = serde_json::json!({
            "RemoteAddrs": [listen],
            "JoinToken": token,
            "AdvertiseAddr": m.addr.to_string(),
            "ListenAddr": format!("{}:2377", m.addr),
        });
        client_of(m)?.post("/swarm/join", &body).await.with_context(|| format!("joining {} to the swarm", m.name))?;
    }
    // Ready means every node has registered with the manager.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let listed: Vec<bollard_stubs::models::Node> = commands::answer(c1.get("/nodes").await?, "GET /nodes")?;
        let is_ready = |n: &bollard_stubs::models::Node| {
            n.status.as_ref().and_then(|s| s.state) == Some(bollard_stubs::models::NodeState::READY)
        };
        let ready = listed.iter().filter(|n| is_ready(n)).count();
        if ready == nodes as usize {
            break;
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("only {} of {nodes} nodes became ready within 30s; see the machines' daemon.log", ready);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("swarm of {nodes} nodes ({managers} managers) ready; try: shoal machine ssh n1 -- shoal node ls");
    Ok(())
}

async fn file_object(c: &Client, kind: commands::secret::Kind, cmd: FileObjectCmd) -> anyhow::Result<()> {
    match cmd {
        FileObjectCmd::Create { labels, name, file } => commands::secret::create(c, kind, &name, &file, &labels).await,
        FileObjectCmd::Ls { quiet, filters, format } => commands::secret::ls(c, kind, quiet, format, &filters).await,
        FileObjectCmd::Inspect { names } => commands::secret::inspect(c, kind, &names).await,
        FileObjectCmd::Rm { names } => commands::secret::rm(c, kind, &names).await,
    }
}

async fn container_command(c: &Client, cmd: ContainerCmd) -> anyhow::Result<()> {
    use commands::container::{each, Verb};
    match cmd {
        ContainerCmd::Create(a) => {
            println!("{}", commands::container::create(c, &a.options()).await?);
            Ok(())
        }
        ContainerCmd::Start { attach: true, interactive, containers } => {
            let [container] = containers.as_slice() else {
                anyhow::bail!("start --attach takes one container, not {}", containers.len());
            };
            exit_with(commands::container::start_attached(c, container, interactive).await?)
        }
        ContainerCmd::Start { attach: false, interactive: true, .. } => {
            anyhow::bail!("start --interactive needs --attach")
        }
        ContainerCmd::Start { containers, .. } => {
            each(c, &containers, |id| (Verb::Post, format!("/containers/{id}/start"))).await
        }
        ContainerCmd::Attach { no_stdin, container } => {
            exit_with(commands::container::attach(c, &container, no_stdin).await?)
        }
        ContainerCmd::Stop { time, containers } => {
            each(c, &containers, |id| (Verb::Post, format!("/containers/{id}/stop?t={time}"))).await
        }
        ContainerCmd::Kill { signal, containers } => {
            let signal = client::encode(&signal);
            each(c, &containers, |id| (Verb::Post, format!("/containers/{id}/kill?signal={signal}"))).await
        }
        ContainerCmd::Rm { force, containers } => {
            each(c, &containers, |id| (Verb::Delete, format!("/containers/{id}?force={}", u8::from(force)))).await
        }
        ContainerCmd::Inspect { containers } => commands::container::inspect(c, &containers).await,
        ContainerCmd::Wait { containers } => commands::container::wait(c, &containers).await,
        ContainerCmd::Restart { time, containers } => {
            let t = time.map(|t| format!("?t={t}")).unwrap_or_default();
            each(c, &containers, |id| (Verb::Post, format!("/containers/{id}/restart{t}"))).await
        }
        ContainerCmd::Commit { change, message, container, reference } => {
            commands::image::commit(c, &container, &reference, &change, message.as_deref()).await
        }
        ContainerCmd::Pause { containers } => {
            each(c, &containers, |id| (Verb::Post, format!("/containers/{id}/pause"))).await
        }
        ContainerCmd::Unpause { containers } => {
            each(c, &containers, |id| (Verb::Post, format!("/containers/{id}/unpause"))).await
        }
        ContainerCmd::Run(_) | ContainerCmd::Ls(_) | ContainerCmd::Logs(_) | ContainerCmd::Exec(_) => Ok(()),
    }
}

/// Raises the daemon's limit on open files, as dockerd's service does (`LimitNOFILE`): to 2^20
/// (or the kernel's `fs.nr_open`, if lower), else at least the soft limit to the hard one. The
/// routing mesh holds two descriptors per proxied connection; 1024 (a common soft limit) would
/// cap a node at a few hundred. Containers get this limit unless their specs set `nofile`.
fn raise_open_files_limit() {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse::<u64>().ok());
    let want = nr_open.unwrap_or(1 << 20).min(1 << 20);
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= want {
            return;
        }
        let before = limit.rlim_cur;
        let raised = libc::rlimit { rlim_cur: want, rlim_max: want.max(limit.rlim_max) };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return;
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            tracing::warn!(before, "could not raise the limit on open files");
        }
    }
}

async fn run_daemon(data_root: PathBuf, socket: PathBuf, bridge: bool) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,h2=warn,tower=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("shoal daemon must run as root: it creates namespaces, mounts and cgroups");
    }
    // One crypto provider for every TLS connection: ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    raise_open_files_limit();
    let daemon = daemon::Daemon::start(daemon::DaemonConfig { data_root, bridge }).await?;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if socket.exists() {
        // A socket nobody answers on is left from a daemon that died.
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            anyhow::bail!("another daemon is already serving {}: stop it or choose another --socket", socket.display());
        }
        std::fs::remove_file(&socket).with_context(|| format!("removing the stale socket {}", socket.display()))?;
    }
    let listener =
        tokio::net::UnixListener::bind(&socket).with_context(|| format!("listening on {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o660))?;
    tracing::info!(socket = %socket.display(), "API listening");
    let signalled = async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    // The server is one of the daemon's tasks: its shutdown stops it with the others.
    let mut server = daemon.track(api::serve(listener, daemon.clone(), daemon.stopping()));
    let served = tokio::select! {
        () = signalled => None,
        served = &mut server => Some(served),
    };
    tracing::info!("shutting down: containers keep running and are re-adopted at the next start");
    daemon.shutdown().await;
    let _ = std::fs::remove_file(&socket);
    match served {
        Some(served) => served.context("the API server stopped")?.context("serving the API"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_flags_follow_the_one_grammar_and_never_overflow() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h2m3.5s"), Ok(Duration::from_millis(3_723_500)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        for bad in ["999999999999h", "999999999999999999m", "18446744073709551615s", "-5m", "5", "5x", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        // The largest accepted duration still makes a deadline.
        let longest = parse_duration("2562047h47m16.854775807s").expect("the longest duration");
        assert!(std::time::Instant::now().checked_add(longest).is_some());
    }
}
