//! The compose model: a compose project after loading, merging, `extends`, profiles and
//! interpolation, with every value checked and normalised (short syntax made long, lists of
//! `KEY=VALUE` made mappings, durations and sizes typed).
//!
//! Read with serde through `de` (so errors keep their place in the file) and written with
//! serde by `render` (so `stack config` shows exactly this). Maps are `BTreeMap`s and lists
//! keep file order, so the same files always give the same model and the same text.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

pub use crate::units::{ByteSize, Duration, NanoCpus};

/// A resolved compose project: what `stack config` prints.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Compose {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub services: BTreeMap<String, Service>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Network>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Volume>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, FileObject>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, FileObject>,
    /// Top-level `x-…` keys, as written (after interpolation).
    #[serde(flatten)]
    pub extensions: BTreeMap<String, Any>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One service.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Service {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Replaces the image's command; `None` keeps it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    /// Replaces the image's entrypoint; `None` keeps it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Command>,
    /// `env_file` contents under `environment`; `None`: take the deploying user's value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "environment")]
    pub environment: Environment,
    /// Read into `environment` by the loader, so always empty in a loaded project.
    #[serde(skip_serializing, deserialize_with = "env_files")]
    pub env_file: EnvFiles,
    /// Container labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub labels: Labels,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "ports")]
    pub ports: Ports,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "mounts")]
    pub volumes: Vec<Mount>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "file_refs")]
    pub secrets: Vec<FileRef>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "file_refs")]
    pub configs: Vec<FileRef>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "service_networks")]
    pub networks: ServiceNetworks,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    /// `no`, `always`, `on-failure[:N]` or `unless-stopped`; used when `deploy.restart_policy`
    /// is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "depends_on")]
    pub depends_on: DependsOn,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub stdin_open: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "string_or_list")]
    pub dns: StringOrList,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "string_or_list")]
    pub dns_search: StringOrList,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    /// Host name to addresses, from `host:ip`, `host=ip` or a mapping.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "extra_hosts")]
    pub extra_hosts: ExtraHosts,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub sysctls: Labels,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
}

/// `environment` and the like: a mapping or a list of `KEY=VALUE` (`KEY` alone: no value).
pub type Environment = BTreeMap<String, Option<String>>;

/// Any scalar, read as the text written (`1.10` stays `1.10`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a number or a boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A mapping of names to optional scalars, or a list of `NAME=VALUE` / `NAME` strings.
fn key_values<'de, D: Deserializer<'de>>(deserializer: D, what: &'static str) -> Result<Environment, D::Error> {
    struct V(&'static str);
    impl<'de> Visitor<'de> for V {
        type Value = Environment;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a mapping or a list of {} strings", self.0)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Environment, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                check_name::<A::Error>(&key)?;
                let value: Option<Text> = map.next_value()?;
                out.insert(key, value.map(|t| t.0));
            }
            Ok(out)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Environment, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(Text(item)) = seq.next_element::<Text>()? {
                let (name, value) = match item.split_once('=') {
                    Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                    None => (item, None),
                };
                check_name::<A::Error>(&name)?;
                out.insert(name, value);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_any(V(what))
}

fn check_name<E: de::Error>(name: &str) -> Result<(), E> {
    if name.is_empty() {
        Err(E::custom("empty variable name"))
    } else if name.contains('=') {
        Err(E::custom(format_args!("variable name {name:?} contains '='")))
    } else {
        Ok(())
    }
}

/// Deserializes an `Environment` field.
pub(crate) fn environment<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Environment, D::Error> {
    key_values(deserializer, "NAME=VALUE")
}

/// Labels and sysctls: like `environment`, but a name without a value is the empty string.
pub type Labels = BTreeMap<String, String>;

/// A command: a string split like a shell would, or a list of words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Command(pub Vec<String>);

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Command, E> {
                crate::shell::split(v).map(Command).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut words = Vec::new();
                while let Some(Text(word)) = seq.next_element()? {
                    words.push(word);
                }
                Ok(Command(words))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A string or a list of strings, as a list.
pub type StringOrList = Vec<String>;

fn string_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(vec![v.to_owned()])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(Text(item)) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_any(V)
}

/// `env_file`: a path, a list of paths, or a list of `{path, required}`.
pub type EnvFiles = Vec<EnvFile>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnvFile {
    pub path: String,
    pub required: bool,
}

fn env_files<'de, D: Deserializer<'de>>(deserializer: D) -> Result<EnvFiles, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Long {
        path: String,
        #[serde(default = "yes")]
        required: bool,
        #[serde(default)]
        #[allow(dead_code)]
        format: Option<String>,
    }
    struct Item(EnvFile);
    impl<'de> Deserialize<'de> for Item {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Item;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a path or a mapping with \"path\"")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Item, E> {
                    Ok(Item(EnvFile { path: v.to_owned(), required: true }))
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Item, A::Error> {
                    let long = Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                    Ok(Item(EnvFile { path: long.path, required: long.required }))
                }
            }
            deserializer.deserialize_any(V)
        }
    }
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = EnvFiles;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a path or a list of paths")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvFiles, E> {
            Ok(vec![EnvFile { path: v.to_owned(), required: true }])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EnvFiles, A::Error> {
            let mut out = Vec::new();
            while let Some(Item(item)) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_any(V)
}

fn yes() -> bool {
    true
}

/// The published ports, short syntax expanded (`"8000-8001:80-81/udp"` is two ports).
pub type Ports = Vec<Port>;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Port {
    pub target: u16,
    /// A port or a range `start-end` on the host; `None`: any free port.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "published")]
    pub published: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    #[serde(default = "tcp")]
    pub protocol: Protocol,
    #[serde(default)]
    pub mode: PortMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

fn tcp() -> Protocol {
    Protocol::Tcp
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortMode {
    #[default]
    Ingress,
    Host,
}

fn published<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let Text(text) = Text::deserialize(deserializer)?;
    let (start, end) = port_range(&text).map_err(de::Error::custom)?;
    Ok(Some(if start == end { start.to_string() } else { format!("{start}-{end}") }))
}

/// `80` or `8000-8010`.
fn port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid port {text:?}: expected a port number 1-65535 or a range like 8000-8010");
    let (start, end) = text.split_once('-').unwrap_or((text, text));
    let start: u16 = start.trim().parse().map_err(|_| bad())?;
    let end: u16 = end.trim().parse().map_err(|_| bad())?;
    if start == 0 || end < start {
        return Err(bad());
    }
    Ok((start, end))
}

/// Parses the short syntax `[[ip:]published:]target[/protocol]`.
pub(crate) fn short_port(text: &str) -> Result<Vec<Port>, String> {
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, Protocol::Tcp),
        Some((spec, "udp")) => (spec, Protocol::Udp),
        Some((spec, "sctp")) => (spec, Protocol::Sctp),
        Some((_, other)) => return Err(format!("unknown protocol {other:?} in port {text:?}: use tcp, udp or sctp")),
        None => (text, Protocol::Tcp),
    };
    // An IPv6 host address is written in brackets: `[::1]:80:80`.
    let (host_ip, rest) = match spec.strip_prefix('[') {
        Some(after) => match after.split_once("]:") {
            Some((ip, rest)) => (Some(ip.to_owned()), rest),
            None => return Err(format!("invalid port {text:?}: unclosed '[' in the host address")),
        },
        None => match spec.matches(':').count() {
            0 | 1 => (None, spec),
            2 => spec.split_once(':').map(|(ip, rest)| (Some(ip.to_owned()), rest)).unwrap_or((None, spec)),
            _ => return Err(format!("invalid port {text:?}: expected [[ip:]published:]target[/protocol]")),
        },
    };
    let (published, target) = match rest.rsplit_once(':') {
        Some((published, target)) => (Some(published), target),
        None => (None, rest),
    };
    let host_ip = host_ip.filter(|ip| !ip.is_empty());
    let (t_start, t_end) = port_range(target)?;
    let published = match published.filter(|p| !p.is_empty()) {
        Some(p) => Some(port_range(p)?),
        None => None,
    };
    let count = t_end - t_start;
    let port = |target: u16, published: Option<String>| Port {
        target,
        published,
        host_ip: host_ip.clone(),
        protocol,
        mode: PortMode::Ingress,
        name: None,
        app_protocol: None,
    };
    match published {
        None => Ok((t_start..=t_end).map(|t| port(t, None)).collect()),
        Some((p_start, p_end)) if count == 0 => {
            let text = if p_start == p_end { p_start.to_string() } else { format!("{p_start}-{p_end}") };
            Ok(vec![port(t_start, Some(text))])
        }
        Some((p_start, p_end)) if p_end - p_start == count => {
            Ok((0..=count).map(|i| port(t_start + i, Some((p_start + i).to_string()))).collect())
        }
        Some(_) => Err(format!("invalid port {text:?}: the published and target ranges differ in length")),
    }
}

fn ports<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Ports, D::Error> {
    struct Item(Vec<Port>);
    impl<'de> Deserialize<'de> for Item {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Item;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a port like \"8080:80/udp\" or a mapping with \"target\"")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Item, E> {
                    short_port(v).map(Item).map_err(E::custom)
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Item, E> {
                    self.visit_str(&v.to_string())
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Item, E> {
                    self.visit_str(&v.to_string())
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Item, A::Error> {
                    Port::deserialize(de::value::MapAccessDeserializer::new(map)).map(|p| Item(vec![p]))
                }
            }
            deserializer.deserialize_any(V)
        }
    }
    let items: Vec<Item> = Vec::deserialize(deserializer)?;
    Ok(items.into_iter().flat_map(|i| i.0).collect())
}

/// A mount: bind, volume or tmpfs, from `source:target[:mode]` or the long syntax.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountKind,
    /// A host path (bind) or a volume name; `None` for an anonymous volume or a tmpfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub target: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsOptions>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
    Npipe,
    Cluster,
    Image,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct BindOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_host_path: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct VolumeOptions {
    #[serde(default, skip_serializing_if = "is_false")]
    pub nocopy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TmpfsOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "file_mode")]
    pub mode: Option<FileMode>,
}

/// Parses the short syntax `[source:]target[:options]`.
pub(crate) fn short_mount(text: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => (None, *target, None),
        [source, target] if target.starts_with('/') || !source.starts_with('/') => (Some(*source), *target, None),
        [target, options] => (None, *target, Some(*options)),
        [source, target, options] => (Some(*source), *target, Some(*options)),
        _ => return Err(format!("invalid volume {text:?}: expected [source:]target[:ro|rw|…]")),
    };
    if target.is_empty() || !target.starts_with('/') {
        return Err(format!(
            "invalid volume {text:?}: the target {target:?} must be an absolute path in the container"
        ));
    }
    let source = source.filter(|s| !s.is_empty());
    let bind = source.is_some_and(|s| s.starts_with(['.', '/', '~']));
    let kind = if bind { MountKind::Bind } else { MountKind::Volume };
    let mut mount = Mount {
        kind,
        source: source.map(str::to_owned),
        target: target.to_owned(),
        read_only: false,
        consistency: None,
        bind: None,
        volume: None,
        tmpfs: None,
    };
    for option in options.into_iter().flat_map(|o| o.split(',')) {
        match option {
            "ro" => mount.read_only = true,
            "rw" => mount.read_only = false,
            "nocopy" => mount.volume = Some(VolumeOptions { nocopy: true, subpath: None }),
            "z" | "Z" => mount.bind.get_or_insert_with(BindOptions::default).selinux = Some(option.to_owned()),
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                mount.bind.get_or_insert_with(BindOptions::default).propagation = Some(option.to_owned())
            }
            "cached" | "delegated" | "consistent" => mount.consistency = Some(option.to_owned()),
            other => return Err(format!("invalid volume {text:?}: unknown option {other:?}")),
        }
    }
    if kind == MountKind::Volume && mount.bind.is_some() {
        return Err(format!("invalid volume {text:?}: propagation and SELinux options are for bind mounts"));
    }
    Ok(mount)
}

fn mounts<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Mount>, D::Error> {
    struct Item(Mount);
    impl<'de> Deserialize<'de> for Item {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Item;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a volume like \"data:/var/lib/data:ro\" or a mapping with \"type\" and \"target\"")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Item, E> {
                    short_mount(v).map(Item).map_err(E::custom)
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Item, A::Error> {
                    Mount::deserialize(de::value::MapAccessDeserializer::new(map)).map(Item)
                }
            }
            deserializer.deserialize_any(V)
        }
    }
    let items: Vec<Item> = Vec::deserialize(deserializer)?;
    Ok(items.into_iter().map(|i| i.0).collect())
}

/// A file permission, read as octal when written with a leading zero (`0444`), as Compose does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("0{:o}", self.0))
    }
}

fn file_mode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<FileMode>, D::Error> {
    let Text(text) = Text::deserialize(deserializer)?;
    let trimmed = text.trim();
    let parsed = match trimmed.strip_prefix("0o").or_else(|| trimmed.strip_prefix('0')) {
        Some("") => Ok(0),
        Some(octal) => u32::from_str_radix(octal, 8),
        None => trimmed.parse(),
    };
    match parsed {
        Ok(mode) if mode <= 0o7777 => Ok(Some(FileMode(mode))),
        _ => Err(de::Error::custom(format_args!("invalid file mode {text:?}: write it in octal, e.g. 0440"))),
    }
}

/// A service's use of a secret or config: `name` or `{source, target, uid, gid, mode}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct FileRef {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "file_mode")]
    pub mode: Option<FileMode>,
}

fn file_refs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<FileRef>, D::Error> {
    struct Item(FileRef);
    impl<'de> Deserialize<'de> for Item {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Item;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a name or a mapping with \"source\"")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Item, E> {
                    Ok(Item(FileRef { source: v.to_owned(), target: None, uid: None, gid: None, mode: None }))
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Item, A::Error> {
                    FileRef::deserialize(de::value::MapAccessDeserializer::new(map)).map(Item)
                }
            }
            deserializer.deserialize_any(V)
        }
    }
    let items: Vec<Item> = Vec::deserialize(deserializer)?;
    Ok(items.into_iter().map(|i| i.0).collect())
}

/// The networks a service joins, by the name the compose file gives them.
pub type ServiceNetworks = BTreeMap<String, ServiceNetwork>;

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct ServiceNetwork {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub driver_opts: Labels,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw_priority: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
}

/// A list of names, or a mapping of names to settings (or to nothing).
fn names_or_map<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    deserializer: D,
) -> Result<BTreeMap<String, T>, D::Error> {
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for V<T> {
        type Value = BTreeMap<String, T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of names or a mapping")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(name) = seq.next_element::<String>()? {
                out.insert(name, T::default());
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(name) = map.next_key::<String>()? {
                let value: Option<T> = map.next_value()?;
                out.insert(name, value.unwrap_or_default());
            }
            Ok(out)
        }
    }
    deserializer.deserialize_any(V(std::marker::PhantomData))
}

fn service_networks<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ServiceNetworks, D::Error> {
    names_or_map(deserializer)
}

/// `depends_on`: a list of service names, or a mapping of names to conditions.
pub type DependsOn = BTreeMap<String, Dependency>;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Dependency {
    pub condition: Condition,
    #[serde(skip_serializing_if = "is_false")]
    pub restart: bool,
    pub required: bool,
}

impl Default for Dependency {
    fn default() -> Self {
        Dependency { condition: Condition::ServiceStarted, restart: false, required: true }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    #[default]
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

fn depends_on<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DependsOn, D::Error> {
    names_or_map(deserializer)
}

/// `healthcheck`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Healthcheck {
    /// `["CMD", …]`, `["CMD-SHELL", "…"]` or `["NONE"]`; a string is `CMD-SHELL`.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "health_test")]
    pub test: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<Duration>,
    #[serde(skip_serializing_if = "is_false")]
    pub disable: bool,
}

fn health_test<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a command string or a list starting with CMD, CMD-SHELL or NONE")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(vec!["CMD-SHELL".to_owned(), v.to_owned()])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(Text(word)) = seq.next_element()? {
                out.push(word);
            }
            match out.first().map(String::as_str) {
                Some("CMD" | "CMD-SHELL" | "NONE") => Ok(out),
                _ => Err(de::Error::custom("a healthcheck test list starts with \"CMD\", \"CMD-SHELL\" or \"NONE\"")),
            }
        }
    }
    deserializer.deserialize_any(V).map(Some)
}

/// `deploy`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Deploy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
    /// Service labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub labels: Labels,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_mode: Option<EndpointMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Replicated,
    Global,
    ReplicatedJob,
    GlobalJob,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    Vip,
    Dnsrr,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceValues>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservations: Option<ResourceValues>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct ResourceValues {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<NanoCpus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct RestartPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<RestartCondition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    None,
    OnFailure,
    Any,
}

/// The service-level `restart:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    No,
    Always,
    UnlessStopped,
    OnFailure(Option<u64>),
}

impl<'de> Deserialize<'de> for Restart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Text(text) = Text::deserialize(deserializer)?;
        match text.as_str() {
            "no" | "false" => Ok(Restart::No),
            "always" => Ok(Restart::Always),
            "unless-stopped" => Ok(Restart::UnlessStopped),
            "on-failure" => Ok(Restart::OnFailure(None)),
            other => match other.strip_prefix("on-failure:").and_then(|n| n.parse().ok()) {
                Some(n) => Ok(Restart::OnFailure(Some(n))),
                None => Err(de::Error::custom(format_args!(
                    "unknown restart policy {other:?}: expected \"no\", \"always\", \"on-failure[:N]\" or \"unless-stopped\""
                ))),
            },
        }
    }
}

impl Serialize for Restart {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Restart::No => serializer.serialize_str("no"),
            Restart::Always => serializer.serialize_str("always"),
            Restart::UnlessStopped => serializer.serialize_str("unless-stopped"),
            Restart::OnFailure(None) => serializer.serialize_str("on-failure"),
            Restart::OnFailure(Some(n)) => serializer.collect_str(&format_args!("on-failure:{n}")),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Placement {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<Preference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replicas_per_node: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Preference {
    pub spread: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct UpdateConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<FailureAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<UpdateOrder>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    Continue,
    Rollback,
    Pause,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    StartFirst,
    StopFirst,
}

/// Host name to address (`extra_hosts`), from `host:ip`, `host=ip` or a mapping.
pub type ExtraHosts = BTreeMap<String, String>;

fn extra_hosts<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ExtraHosts, D::Error> {
    let raw = key_values(deserializer, "HOST=IP")?;
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        match value {
            Some(ip) => out.insert(key, ip),
            // `host:ip` has no '=': split at the first ':' (an IPv6 address keeps its colons).
            None => match key.split_once(':') {
                Some((host, ip)) => out.insert(host.to_owned(), ip.trim_matches(['[', ']']).to_owned()),
                None => {
                    return Err(de::Error::custom(format_args!("extra host {key:?} has no address: write host:ip")))
                }
            },
        };
    }
    Ok(out)
}

fn labels<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Labels, D::Error> {
    Ok(key_values(deserializer, "KEY=VALUE")?.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect())
}

/// `ulimits`: a number (soft and hard) or `{soft, hard}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            soft: i64,
            hard: i64,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ulimit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a mapping with \"soft\" and \"hard\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ulimit, E> {
                Ok(Ulimit { soft: v, hard: v })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ulimit, E> {
                let v = i64::try_from(v).map_err(|_| E::custom("ulimit too large"))?;
                Ok(Ulimit { soft: v, hard: v })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ulimit, E> {
                let v: i64 = v.trim().parse().map_err(|_| E::custom(format_args!("expected a number, found {v:?}")))?;
                Ok(Ulimit { soft: v, hard: v })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Ulimit, A::Error> {
                let long = Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Ulimit { soft: long.soft, hard: long.hard })
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Logging {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub options: Labels,
}

/// A top-level network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Network {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub driver_opts: Labels,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "external")]
    pub external: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub internal: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub attachable: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub enable_ipv6: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub labels: Labels,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Ipam {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub options: Labels,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct IpamPool {
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub aux_addresses: Labels,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

/// A top-level volume.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Volume {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub driver_opts: Labels,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "external")]
    pub external: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub labels: Labels,
}

/// A top-level secret or config: from a file, an environment variable, inline content, or
/// already in the cluster (`external`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct FileObject {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "external")]
    pub external: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub labels: Labels,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "labels")]
    pub driver_opts: Labels,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_driver: Option<String>,
}

/// `external: true`, or the old `external: {name: …}` (the loader moves the name to `name`).
fn external<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            while map.next_key::<de::IgnoredAny>()?.is_some() {
                map.next_value::<de::IgnoredAny>()?;
            }
            Ok(true)
        }
    }
    deserializer.deserialize_bool(V)
}

/// An extension value kept as written.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Any {
    Null,
    Bool(bool),
    Int(i128),
    /// A float, as written.
    Float(f64),
    Str(String),
    Seq(Vec<Any>),
    Map(BTreeMap<String, Any>),
}

/// Whether `name` may name a stack or a service: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, the rule
/// Compose and Docker apply.
/// A top-level volume's key (or a mount's source naming one): the characters Docker allows in
/// a volume name, which the stack's `<stack>_` prefix then starts with a letter or digit.
pub(crate) fn is_volume_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["web", "Web1", "a", "0", "my_app.v2-beta"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "_web", "-web", ".web", "my app", "web/1", "wéb", "web:1"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn short_ports() {
        let p = short_port("8000-8001:80-81/udp").expect("valid");
        assert_eq!(p.len(), 2);
        assert_eq!((p[1].target, p[1].published.as_deref(), p[1].protocol), (81, Some("8001"), Protocol::Udp));
        let p = short_port("127.0.0.1:8080:80").expect("valid");
        assert_eq!(
            (p[0].host_ip.as_deref(), p[0].published.as_deref(), p[0].target),
            (Some("127.0.0.1"), Some("8080"), 80)
        );
        let p = short_port("[::1]:53:53/udp").expect("valid");
        assert_eq!(p[0].host_ip.as_deref(), Some("::1"));
        assert_eq!(short_port("3000-3002").expect("valid").len(), 3);
        assert!(short_port("80/xyz").is_err());
        assert!(short_port("8000-8002:80-81").is_err());
        assert!(short_port("0").is_err());
    }

    #[test]
    fn short_mounts() {
        let m = short_mount("./data:/data:ro").expect("valid");
        assert_eq!((m.kind, m.source.as_deref(), m.read_only), (MountKind::Bind, Some("./data"), true));
        let m = short_mount("db:/var/lib/db").expect("valid");
        assert_eq!(m.kind, MountKind::Volume);
        let m = short_mount("/cache").expect("valid");
        assert_eq!((m.kind, m.source), (MountKind::Volume, None));
        assert!(short_mount("data:relative").is_err());
        assert!(short_mount("a:/b:bogus").is_err());
    }
}
