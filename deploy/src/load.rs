//! Compose files to the compose model: read each file, interpolate its values, resolve its
//! `extends`, merge the files in order, check every key against what Compose defines, drop
//! services of inactive profiles, then read the merged tree into the typed model and check
//! its references (`depends_on`, networks, volumes, secrets, configs) and cycles.
//!
//! Every error and warning points at the `file:line:column` of the value at fault: the tree
//! keeps, for every node, the file it came from.
//! Architecture invariant: reads only the compose files, the `.env` file and the files they
//! name (`env_file`, `extends.file`); the environment is given, never read here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::de::{self, join};
use crate::error::{Error, Warning};
use crate::interpolate;
use crate::merge::merge;
use crate::model::{self, Any, Compose, Service};
use crate::read::{read_text_bounded, MAX_TEXT_FILE};
use crate::schema::{self, Keys, Support};
use crate::yaml::{self, Entry, Mark, Node, Value};

/// One compose file: where it is and, when the caller already has it, its text.
pub(crate) struct Source {
    pub path: PathBuf,
    pub text: Option<String>,
}

/// What `load` needs besides the files.
pub(crate) struct Settings<'a> {
    /// Variables for interpolation and for `environment` entries without a value.
    pub env: &'a BTreeMap<String, String>,
    /// The `.env` file to read: `Some(path)` must exist; `None` reads `.env` beside the first
    /// file if there is one.
    pub env_file: Option<&'a Path>,
    /// Whether to look for a `.env` file at all.
    pub read_dotenv: bool,
    pub profiles: &'a [String],
}

/// The result of a load: the model, the merged tree it was read from, the files (indexed by
/// `Mark::file`) and the warnings, in file order.
pub(crate) struct Loaded {
    pub compose: Compose,
    pub tree: Node,
    pub files: Vec<PathBuf>,
    pub warnings: Vec<Warning>,
    /// The variables the files were read with (environment, then `.env`).
    pub vars: BTreeMap<String, String>,
}

pub(crate) fn load(sources: Vec<Source>, settings: &Settings) -> Result<Loaded, Error> {
    let first = sources.first().ok_or(Error::NoFile)?.path.clone();
    let mut loader =
        Loader { files: Vec::new(), trees: BTreeMap::new(), vars: settings.env.clone(), warnings: Vec::new() };
    loader.read_dotenv(&first, settings)?;

    let mut merged: Option<Node> = None;
    for source in sources {
        let id = loader.read(source.path, source.text)?;
        let tree = loader.trees.get(&id).cloned().unwrap_or(Node::new(Mark::start(id), Value::Null));
        merged = Some(match merged {
            None => tree,
            Some(base) => merge(base, tree, &[]),
        });
    }
    let tree = merged.unwrap_or(Node::new(Mark::start(0), Value::Null));
    let compose = loader.project(&tree, settings.profiles)?;
    let mut warnings = loader.warnings;
    warnings.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    warnings.dedup();
    Ok(Loaded { compose, tree, files: loader.files, warnings, vars: loader.vars })
}

/// How many files one load may read through `extends`, a guard against runaway chains.
const MAX_FILES: usize = 256;

struct Loader {
    /// Every file read, indexed by `Mark::file`.
    files: Vec<PathBuf>,
    /// The interpolated, `extends`-resolved tree of each file.
    trees: BTreeMap<usize, Node>,
    vars: BTreeMap<String, String>,
    warnings: Vec<Warning>,
}

impl Loader {
    fn read_dotenv(&mut self, first: &Path, settings: &Settings) -> Result<(), Error> {
        let (path, required) = match settings.env_file {
            Some(path) => (path.to_owned(), true),
            None if settings.read_dotenv => (first.parent().unwrap_or(Path::new("")).join(".env"), false),
            None => return Ok(()),
        };
        let text = match read_text_bounded(&path, MAX_TEXT_FILE, "an environment file") {
            Ok(text) => text,
            Err(err) if !required && err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(Error::Io { file: path, source }),
        };
        let env = settings.env;
        let values = interpolate::dotenv(&text, &|name| env.get(name).cloned()).map_err(|e| Error::Invalid {
            file: path.clone(),
            line: e.line,
            column: 1,
            path: String::new(),
            message: e.message,
        })?;
        // The given environment wins over the file, as in Compose.
        for (name, value) in values {
            self.vars.entry(name).or_insert(value);
        }
        Ok(())
    }

    /// Reads, parses, interpolates and resolves the `extends` of one file; returns its index.
    fn read(&mut self, path: PathBuf, text: Option<String>) -> Result<usize, Error> {
        if let Some(id) = self.files.iter().position(|f| *f == path) {
            if self.trees.contains_key(&id) {
                return Ok(id);
            }
        }
        let id = self.files.len();
        self.files.push(path.clone());
        let text = match text {
            Some(text) => text,
            None => read_text_bounded(&path, MAX_TEXT_FILE, "a compose file")
                .map_err(|source| Error::Io { file: path.clone(), source })?,
        };
        let mut tree = yaml::parse(&text, id).map_err(|err| Error::Yaml {
            file: path.clone(),
            line: err.mark.line,
            column: err.mark.column,
            message: err.message,
        })?;
        self.interpolate(&mut tree, "")?;
        self.trees.insert(id, tree.clone());
        self.resolve_extends(id, &mut tree)?;
        self.trees.insert(id, tree);
        Ok(id)
    }

    fn interpolate(&self, node: &mut Node, path: &str) -> Result<(), Error> {
        match &mut node.value {
            Value::Str(text) if text.contains('$') => {
                let vars = &self.vars;
                *text = interpolate::interpolate(text, &|name| vars.get(name).cloned())
                    .map_err(|err| self.invalid(node.mark, path, err.to_string()))?;
            }
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.interpolate(item, &format!("{path}[{i}]"))?;
                }
            }
            Value::Map(entries) => {
                for entry in entries {
                    let child = join(path, &entry.key);
                    self.interpolate(&mut entry.value, &child)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Replaces every service of file `id` that `extends` another by the merge of the two.
    fn resolve_extends(&mut self, id: usize, tree: &mut Node) -> Result<(), Error> {
        let names: Vec<String> = match tree.get("services").and_then(Node::entries) {
            Some(entries) => {
                entries.iter().filter(|e| e.value.get("extends").is_some()).map(|e| e.key.clone()).collect()
            }
            None => return Ok(()),
        };
        for name in names {
            let resolved = self.extended(id, &name, &mut Vec::new())?;
            if let Value::Map(top) = &mut tree.value {
                if let Some(services) = top.iter_mut().find(|e| e.key == "services") {
                    if let Value::Map(entries) = &mut services.value.value {
                        if let Some(entry) = entries.iter_mut().find(|e| e.key == name) {
                            entry.value = resolved;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Service `name` of file `id` with its `extends` chain merged in. `chain` holds the
    /// services being resolved, to report a cycle.
    fn extended(&mut self, id: usize, name: &str, chain: &mut Vec<(usize, String)>) -> Result<Node, Error> {
        // Callers only name services they have seen in a file already read.
        let service = self.trees.get(&id).and_then(|t| t.get("services")).and_then(|s| s.get(name)).cloned();
        let Some(service) = service else {
            let file = self.files.get(id).map(|f| f.display().to_string()).unwrap_or_default();
            return Err(self.invalid(Mark::start(id), "services", format!("service {name:?} not found in {file}")));
        };
        let Some(extends) = service.get("extends").cloned() else {
            return Ok(service);
        };
        let path = format!("services.{name}.extends");
        if let Some(entries) = extends.entries() {
            self.check_keys(entries, &path, &schema::EXTENDS)?;
        }
        let (base_name, base_file) = match &extends.value {
            Value::Str(base) => (base.clone(), None),
            Value::Map(_) => {
                let base = extends.get("service").and_then(Node::scalar_text).ok_or_else(|| {
                    self.invalid(extends.mark, &path, "\"service\" is required: name the service to extend")
                })?;
                (base.to_owned(), extends.get("file").map(|f| (f.mark, f.scalar_text().unwrap_or_default().to_owned())))
            }
            _ => return Err(self.expected(&extends, &path, "a service name or a mapping with \"service\"")),
        };
        chain.push((id, name.to_owned()));
        let base_id = match base_file {
            None => id,
            Some((mark, file)) => {
                let dir = self.files.get(id).and_then(|f| f.parent()).unwrap_or(Path::new("")).to_owned();
                let file_path = PathBuf::from(normalize_path(&dir.join(&file).to_string_lossy()));
                if self.files.len() >= MAX_FILES {
                    return Err(self.invalid(
                        mark,
                        &format!("{path}.file"),
                        format!("more than {MAX_FILES} files through extends: is there a cycle?"),
                    ));
                }
                let known = self.files.iter().position(|f| *f == file_path).filter(|i| self.trees.contains_key(i));
                match known {
                    Some(i) => i,
                    None => self.read(file_path, None).map_err(|err| match err {
                        Error::Io { source, .. } => {
                            self.invalid(mark, &format!("{path}.file"), format!("cannot read {file:?}: {source}"))
                        }
                        other => other,
                    })?,
                }
            }
        };
        if let Some(at) = chain.iter().position(|(i, n)| *i == base_id && *n == base_name) {
            let mut links: Vec<(usize, String)> = chain[at..].to_vec();
            links.push((base_id, base_name));
            let one_file = links.iter().all(|(i, _)| *i == base_id);
            let names: Vec<String> = links
                .iter()
                .map(|(i, n)| match self.files.get(*i).and_then(|f| f.file_name()) {
                    Some(file) if !one_file => format!("{}:{n}", file.to_string_lossy()),
                    _ => n.clone(),
                })
                .collect();
            return Err(self.invalid(extends.mark, &path, format!("extends cycle: {}", names.join(" -> "))));
        }
        let exists = self.trees.get(&base_id).and_then(|t| t.get("services")).and_then(|s| s.get(&base_name)).is_some();
        if !exists {
            let file = self.files.get(base_id).map(|f| f.display().to_string()).unwrap_or_default();
            return Err(self.invalid(extends.mark, &path, format!("service {base_name:?} not found in {file}")));
        }
        let base = self.extended(base_id, &base_name, chain)?;
        chain.pop();
        let mut service = service;
        if let Value::Map(entries) = &mut service.value {
            entries.retain(|e| e.key != "extends");
        }
        Ok(merge(base, service, &["services", name]))
    }

    /// The merged tree to the model.
    fn project(&mut self, root: &Node, profiles: &[String]) -> Result<Compose, Error> {
        let entries = match &root.value {
            Value::Map(entries) => entries,
            Value::Null => {
                return Err(self.invalid(
                    root.mark,
                    "",
                    "the file is empty: a compose file needs a \"services\" mapping",
                ))
            }
            _ => return Err(self.expected(root, "", "a mapping with a \"services\" key")),
        };
        self.check_keys(entries, "", &schema::TOP_LEVEL)?;

        let mut compose = Compose::default();
        if let Some(node) = root.get("name") {
            let name: String = self.read_node(node, "name")?;
            if !model::is_valid_name(&name) {
                return Err(self.invalid(
                    node.mark,
                    "name",
                    format!("invalid project name {name:?}: use letters, digits, '_', '.' and '-'"),
                ));
            }
            compose.name = Some(name);
        }
        for entry in entries.iter().filter(|e| schema::is_extension(&e.key)) {
            compose.extensions.insert(entry.key.clone(), any(&entry.value));
        }
        compose.networks = self.top_level(root, "networks", &schema::NETWORK)?;
        compose.volumes = self.top_level(root, "volumes", &schema::VOLUME)?;
        compose.secrets = self.top_level(root, "secrets", &schema::FILE_OBJECT)?;
        compose.configs = self.top_level(root, "configs", &schema::FILE_OBJECT)?;
        self.move_external_names(root, &mut compose);
        self.check_volume_names(root, &compose)?;
        self.check_networks(root, &compose)?;
        self.resolve_object_files(root, &mut compose);

        let services_node = root.get("services");
        let service_entries: &[Entry] = match services_node {
            Some(node) => match &node.value {
                Value::Map(entries) => entries,
                _ => return Err(self.expected(node, "services", "a mapping of service names to services")),
            },
            None => &[],
        };
        let services_mark = entries.iter().find(|e| e.key == "services").map_or(root.mark, |e| e.key_mark);
        let mut inactive = BTreeMap::new();
        for entry in service_entries {
            let (name, service) = self.service(entry)?;
            if is_active(&service, profiles) {
                compose.services.insert(name, service);
            } else {
                inactive.insert(name, service.profiles.clone());
            }
        }
        if compose.services.is_empty() {
            let message = if inactive.is_empty() {
                "no services defined: a stack needs at least one service".to_owned()
            } else {
                "no services enabled: every service is in an inactive profile (enable one with --profile)".to_owned()
            };
            return Err(self.invalid(services_mark, "services", message));
        }
        self.check_references(root, &compose, &inactive)?;
        Ok(compose)
    }

    fn service(&mut self, entry: &Entry) -> Result<(String, Service), Error> {
        let name = entry.key.clone();
        if !model::is_valid_name(&name) {
            return Err(self.invalid(
                entry.key_mark,
                "services",
                format!("invalid service name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or a digit"),
            ));
        }
        let path = join("services", &name);
        let node = &entry.value;
        let entries: &[Entry] = match &node.value {
            Value::Map(entries) => entries,
            Value::Null => &[],
            _ => return Err(self.expected(node, &path, "a mapping")),
        };
        self.check_service_keys(node, entries, &path)?;
        let mut service: Service = if entries.is_empty() { Service::default() } else { self.read_node(node, &path)? };
        match &service.image {
            Some(image) if image.trim().is_empty() => {
                let mark = node.get("image").map_or(entry.key_mark, |n| n.mark);
                return Err(self.invalid(mark, &join(&path, "image"), "the image name is empty"));
            }
            Some(_) => {}
            None => {
                return Err(self.invalid(
                    entry.key_mark,
                    &path,
                    "\"image\" is required: name the image to run, e.g. `image: nginx:1.27`",
                ))
            }
        }
        if let Some(mode) = &service.network_mode {
            if mode != "host" && mode != "none" {
                let mark = node.get("network_mode").map_or(entry.key_mark, |n| n.mark);
                self.warn(mark, &join(&path, "network_mode"), "only \"host\" and \"none\" work in a swarm, ignored");
                service.network_mode = None;
            }
        }
        let mut published = BTreeSet::new();
        for port in &service.ports {
            if let Some(host_port) = &port.published {
                let key = (port.host_ip.clone(), host_port.clone(), port.protocol);
                if !published.insert(key) {
                    let mark = node.get("ports").map_or(entry.key_mark, |n| n.mark);
                    return Err(self.invalid(
                        mark,
                        &join(&path, "ports"),
                        format!("published port {host_port}/{} is used twice", port.protocol.as_str()),
                    ));
                }
            }
        }
        self.read_env_files(node, &path, &mut service)?;
        // Bind sources are relative to the file that names them, as Docker resolves them.
        if let Some(Value::Seq(items)) = node.get("volumes").map(|n| &n.value) {
            for (mount, item) in service.volumes.iter_mut().zip(items) {
                if mount.kind == model::MountKind::Bind {
                    if let Some(source) = &mut mount.source {
                        *source = self.resolve_path(item.mark.file, source);
                    }
                }
            }
        }
        // A name without a value takes the deploying user's value, when they have one.
        let names: Vec<String> =
            service.environment.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| k.clone()).collect();
        for name in names {
            if let Some(value) = self.vars.get(&name) {
                service.environment.insert(name, Some(value.clone()));
            }
        }
        Ok((name, service))
    }

    /// Reads every `env_file` into `environment`; `environment` wins.
    fn read_env_files(&mut self, node: &Node, path: &str, service: &mut Service) -> Result<(), Error> {
        if service.env_file.is_empty() {
            return Ok(());
        }
        let env_node = node.get("env_file");
        let mark = env_node.map_or(node.mark, |n| n.mark);
        // Each path is relative to the file that names it (lists merge across files).
        let item_marks: Vec<Mark> = match env_node.map(|n| &n.value) {
            Some(Value::Seq(items)) => items.iter().map(|i| i.mark).collect(),
            _ => Vec::new(),
        };
        let mut from_files: BTreeMap<String, String> = BTreeMap::new();
        for (i, env_file) in std::mem::take(&mut service.env_file).into_iter().enumerate() {
            let origin = item_marks.get(i).map_or(mark.file, |m| m.file);
            let dir = self.files.get(origin).and_then(|f| f.parent()).unwrap_or(Path::new(""));
            let file = PathBuf::from(normalize_path(&dir.join(&env_file.path).to_string_lossy()));
            let text = match read_text_bounded(&file, MAX_TEXT_FILE, "an environment file") {
                Ok(text) => text,
                Err(err) if !env_file.required && err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    return Err(self.invalid(
                        mark,
                        &join(path, "env_file"),
                        format!("cannot read {}: {err}", file.display()),
                    ))
                }
            };
            let vars = &self.vars;
            let values = interpolate::dotenv(&text, &|name| vars.get(name).cloned()).map_err(|e| Error::Invalid {
                file: file.clone(),
                line: e.line,
                column: 1,
                path: String::new(),
                message: e.message,
            })?;
            from_files.extend(values);
        }
        for (name, value) in from_files {
            service.environment.entry(name).or_insert(Some(value));
        }
        Ok(())
    }

    /// Every top-level volume must make a volume name Docker's rule allows: its key is made
    /// of name characters (the stack prefixes it), and a `name:` (or the key of an external
    /// volume, used as it is) is a whole valid name.
    fn check_volume_names(&self, root: &Node, compose: &Compose) -> Result<(), Error> {
        let Some(entries) = root.get("volumes").and_then(Node::entries) else {
            return Ok(());
        };
        for entry in entries {
            let path = join("volumes", &entry.key);
            if !model::is_volume_key(&entry.key) {
                return Err(self.invalid(
                    entry.key_mark,
                    &path,
                    format!(
                        "{:?} is not a valid volume name: use letters, digits, '_', '.' and '-' (the stack's name and '_' go before it)",
                        entry.key
                    ),
                ));
            }
            let Some(volume) = compose.volumes.get(&entry.key) else { continue };
            let whole = match &volume.name {
                Some(name) => {
                    Some((name, entry.value.get("name").map_or(entry.key_mark, |n| n.mark), join(&path, "name")))
                }
                None if volume.external => Some((&entry.key, entry.key_mark, path.clone())),
                None => None,
            };
            if let Some((name, mark, at)) = whole {
                shoal_proto::names::check_volume_name(name).map_err(|why| self.invalid(mark, &at, why))?;
            }
        }
        Ok(())
    }

    /// Encrypted overlays are refused: shoal cannot encrypt traffic between nodes yet, and a
    /// network asked to be encrypted must never carry it in plain text.
    fn check_networks(&self, root: &Node, compose: &Compose) -> Result<(), Error> {
        for (key, network) in &compose.networks {
            if network.external || !network.driver_opts.contains_key("encrypted") {
                continue;
            }
            let node = root.get("networks").and_then(|n| n.get(key));
            let option = node
                .and_then(|n| n.get("driver_opts"))
                .and_then(Node::entries)
                .and_then(|e| e.iter().find(|e| e.key == "encrypted"));
            let mark = option.map(|e| e.key_mark).or(node.map(|n| n.mark)).unwrap_or(root.mark);
            return Err(self.invalid(
                mark,
                &format!("networks.{key}.driver_opts.encrypted"),
                "encrypted overlay networks are not available yet: shoal will not carry this network's traffic \
                 between nodes unencrypted; remove the option to deploy an unencrypted network",
            ));
        }
        Ok(())
    }

    fn top_level<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        root: &Node,
        key: &str,
        keys: &Keys,
    ) -> Result<BTreeMap<String, T>, Error> {
        let Some(node) = root.get(key) else {
            return Ok(BTreeMap::new());
        };
        let Some(entries) = node.entries() else {
            return Err(self.expected(node, key, "a mapping of names to definitions"));
        };
        let mut out = BTreeMap::new();
        for entry in entries {
            let path = join(key, &entry.key);
            let value = match &entry.value.value {
                Value::Null => T::default(),
                Value::Map(fields) => {
                    self.check_keys(fields, &path, keys)?;
                    if let Some(ipam) = entry.value.get("ipam").filter(|_| key == "networks") {
                        let ipam_path = join(&path, "ipam");
                        if let Some(ipam_entries) = ipam.entries() {
                            self.check_keys(ipam_entries, &ipam_path, &schema::IPAM)?;
                        }
                        if let Some(Value::Seq(pools)) = ipam.get("config").map(|n| &n.value) {
                            for (i, pool) in pools.iter().enumerate() {
                                if let Some(pool_entries) = pool.entries() {
                                    self.check_keys(
                                        pool_entries,
                                        &format!("{ipam_path}.config[{i}]"),
                                        &schema::IPAM_POOL,
                                    )?;
                                }
                            }
                        }
                    }
                    self.read_node(&entry.value, &path)?
                }
                _ => return Err(self.expected(&entry.value, &path, "a mapping")),
            };
            out.insert(entry.key.clone(), value);
        }
        Ok(out)
    }

    /// `external: {name: x}` (Compose file format 3.x) means `external: true, name: x`.
    fn move_external_names(&self, root: &Node, compose: &mut Compose) {
        let legacy = |kind: &str, name: &str| {
            root.get(kind)?.get(name)?.get("external")?.get("name")?.scalar_text().map(str::to_owned)
        };
        for (name, network) in &mut compose.networks {
            if let Some(n) = legacy("networks", name) {
                network.name.get_or_insert(n);
            }
        }
        for (name, volume) in &mut compose.volumes {
            if let Some(n) = legacy("volumes", name) {
                volume.name.get_or_insert(n);
            }
        }
        for (kind, objects) in [("secrets", &mut compose.secrets), ("configs", &mut compose.configs)] {
            for (name, object) in objects.iter_mut() {
                if let Some(n) = legacy(kind, name) {
                    object.name.get_or_insert(n);
                }
            }
        }
    }

    /// The `file:` of secrets and configs is relative to the file that names it.
    fn resolve_object_files(&self, root: &Node, compose: &mut Compose) {
        for (kind, objects) in [("secrets", &mut compose.secrets), ("configs", &mut compose.configs)] {
            for (name, object) in objects.iter_mut() {
                let mark = root.get(kind).and_then(|n| n.get(name)).and_then(|n| n.get("file")).map(|n| n.mark);
                if let (Some(mark), Some(file)) = (mark, &mut object.file) {
                    *file = self.resolve_path(mark.file, file);
                }
            }
        }
    }

    /// `path` as Docker reads it in file `file`: `~/…` in the home directory, a relative
    /// path from the file's directory, with `.` and `..` taken out.
    fn resolve_path(&self, file: usize, path: &str) -> String {
        let joined = if let Some(rest) = path.strip_prefix("~/") {
            match self.vars.get("HOME") {
                Some(home) => Path::new(home).join(rest),
                None => return path.to_owned(),
            }
        } else {
            match self.files.get(file).and_then(|f| f.parent()) {
                Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
                _ => return path.to_owned(),
            }
        };
        normalize_path(&joined.to_string_lossy())
    }

    /// Every name a service uses must be defined; `depends_on` must not loop.
    fn check_references(
        &self,
        root: &Node,
        compose: &Compose,
        inactive: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), Error> {
        let locate = |service: &str, key: &str| -> Mark {
            let node = root.get("services").and_then(|s| s.get(service));
            node.and_then(|n| n.get(key)).or(node).map_or(root.mark, |n| n.mark)
        };
        for (name, service) in &compose.services {
            let path = |key: &str| format!("services.{name}.{key}");
            for dependency in service.depends_on.keys() {
                if compose.services.contains_key(dependency) {
                    continue;
                }
                let message = match inactive.get(dependency) {
                    Some(profiles) => format!(
                        "depends on service {dependency:?}, which is only in the inactive profile(s) {}: enable one with --profile",
                        profiles.join(", ")
                    ),
                    None => format!("depends on service {dependency:?}, which is not defined"),
                };
                if service.depends_on.get(dependency).is_some_and(|d| !d.required) {
                    continue;
                }
                return Err(self.invalid(locate(name, "depends_on"), &path("depends_on"), message));
            }
            for network in service.networks.keys() {
                if network != "default" && !compose.networks.contains_key(network) {
                    return Err(self.invalid(
                        locate(name, "networks"),
                        &path("networks"),
                        format!("uses network {network:?}, which is not defined under the top-level \"networks\""),
                    ));
                }
            }
            let items = match root.get("services").and_then(|s| s.get(name)).and_then(|n| n.get("volumes")) {
                Some(Node { value: Value::Seq(items), .. }) => items.as_slice(),
                _ => &[],
            };
            for (i, mount) in service.volumes.iter().enumerate() {
                if let (model::MountKind::Volume, Some(source)) = (mount.kind, &mount.source) {
                    let mark = items.get(i).map_or_else(|| locate(name, "volumes"), |item| item.mark);
                    let at = format!("services.{name}.volumes[{i}]");
                    if !model::is_volume_key(source) {
                        let next = if source.starts_with(['/', '.', '~']) {
                            format!("for the host path {source:?}, use type: bind")
                        } else {
                            "name a volume defined under the top-level \"volumes\" (letters, digits, '_', '.' and '-')"
                                .to_owned()
                        };
                        return Err(self.invalid(
                            mark,
                            &at,
                            format!("the source {source:?} is not a valid volume name: {next}"),
                        ));
                    }
                    if !compose.volumes.contains_key(source) {
                        return Err(self.invalid(
                            mark,
                            &at,
                            format!("uses volume {source:?}, which is not defined under the top-level \"volumes\""),
                        ));
                    }
                }
            }
            for (kind, refs, defined) in
                [("secret", &service.secrets, &compose.secrets), ("config", &service.configs, &compose.configs)]
            {
                for r in refs {
                    if !defined.contains_key(&r.source) {
                        return Err(self.invalid(
                            locate(name, &format!("{kind}s")),
                            &path(&format!("{kind}s")),
                            format!("uses {kind} {:?}, which is not defined under the top-level \"{kind}s\"", r.source),
                        ));
                    }
                }
            }
        }
        if let Some(cycle) = dependency_cycle(compose) {
            let first = cycle.first().cloned().unwrap_or_default();
            return Err(self.invalid(
                locate(&first, "depends_on"),
                &format!("services.{first}.depends_on"),
                format!("dependency cycle: {}", cycle.join(" -> ")),
            ));
        }
        Ok(())
    }

    fn check_service_keys(&mut self, node: &Node, entries: &[Entry], path: &str) -> Result<(), Error> {
        self.check_keys(entries, path, &schema::SERVICE)?;
        let nested: [(&[&str], &Keys); 10] = [
            (&["deploy"], &schema::DEPLOY),
            (&["deploy", "resources"], &schema::RESOURCES),
            (&["deploy", "resources", "limits"], &schema::RESOURCE_VALUES),
            (&["deploy", "resources", "reservations"], &schema::RESOURCE_VALUES),
            (&["deploy", "restart_policy"], &schema::RESTART_POLICY),
            (&["deploy", "placement"], &schema::PLACEMENT),
            (&["deploy", "update_config"], &schema::UPDATE_CONFIG),
            (&["deploy", "rollback_config"], &schema::UPDATE_CONFIG),
            (&["healthcheck"], &schema::HEALTHCHECK),
            (&["logging"], &schema::LOGGING),
        ];
        for (keys_path, keys) in nested {
            let mut current = Some(node);
            for key in keys_path {
                current = current.and_then(|n| n.get(key));
            }
            if let Some(entries) = current.and_then(Node::entries) {
                self.check_keys(entries, &format!("{path}.{}", keys_path.join(".")), keys)?;
            }
        }
        // Items of lists written in the long syntax, and values of mappings of settings.
        let items: [(&[&str], &Keys); 6] = [
            (&["ports"], &schema::PORT),
            (&["volumes"], &schema::MOUNT),
            (&["secrets"], &schema::FILE_REF),
            (&["configs"], &schema::FILE_REF),
            (&["deploy", "placement", "preferences"], &schema::PREFERENCE),
            (&["networks"], &schema::SERVICE_NETWORK),
        ];
        for (keys_path, keys) in items {
            let mut current = Some(node);
            for key in keys_path {
                current = current.and_then(|n| n.get(key));
            }
            let list_path = format!("{path}.{}", keys_path.join("."));
            let children: Vec<(String, &Node)> = match current.map(|n| &n.value) {
                Some(Value::Seq(items)) => {
                    items.iter().enumerate().map(|(i, item)| (format!("{list_path}[{i}]"), item)).collect()
                }
                Some(Value::Map(entries)) => entries.iter().map(|e| (join(&list_path, &e.key), &e.value)).collect(),
                _ => Vec::new(),
            };
            for (child_path, child) in children {
                let Some(entries) = child.entries() else {
                    continue;
                };
                self.check_keys(entries, &child_path, keys)?;
                if keys_path == ["volumes"] {
                    for (option, option_keys) in
                        [("bind", &schema::BIND), ("volume", &schema::VOLUME_OPTIONS), ("tmpfs", &schema::TMPFS)]
                    {
                        if let Some(option_entries) = child.get(option).and_then(Node::entries) {
                            self.check_keys(option_entries, &join(&child_path, option), option_keys)?;
                        }
                    }
                }
            }
        }
        if let Some(Value::Map(dependencies)) = node.get("depends_on").map(|n| &n.value) {
            for dependency in dependencies {
                if let Some(entries) = dependency.value.entries() {
                    self.check_keys(entries, &join(&join(path, "depends_on"), &dependency.key), &schema::DEPENDENCY)?;
                }
            }
        }
        Ok(())
    }

    /// An unknown key is an error; a key swarm cannot honour is a warning.
    fn check_keys(&mut self, entries: &[Entry], path: &str, keys: &Keys) -> Result<(), Error> {
        for entry in entries {
            if schema::is_extension(&entry.key) {
                continue;
            }
            let key_path = join(path, &entry.key);
            match keys.support(&entry.key) {
                Some(Support::Read | Support::Quiet) => {}
                Some(Support::Ignored) => self.warn(entry.key_mark, &key_path, "not supported by shoal yet, ignored"),
                None => {
                    let message = match keys.suggest(&entry.key) {
                        Some(near) => format!("unknown key (did you mean {near:?}?)"),
                        None => "unknown key: the Compose specification defines no such key here".to_owned(),
                    };
                    return Err(self.invalid(entry.key_mark, &key_path, message));
                }
            }
        }
        Ok(())
    }

    fn read_node<'n, T: serde::Deserialize<'n>>(&self, node: &'n Node, path: &str) -> Result<T, Error> {
        de::from_node(node, path).map_err(|err| self.invalid(err.mark.unwrap_or(node.mark), &err.path, err.message))
    }

    fn warn(&mut self, mark: Mark, path: &str, message: &str) {
        self.warnings.push(Warning {
            file: self.file(mark),
            line: mark.line,
            column: mark.column,
            message: format!("{path}: {message}"),
        });
    }

    fn file(&self, mark: Mark) -> PathBuf {
        self.files.get(mark.file).cloned().unwrap_or_default()
    }

    fn invalid(&self, mark: Mark, path: &str, message: impl Into<String>) -> Error {
        Error::Invalid {
            file: self.file(mark),
            line: mark.line,
            column: mark.column,
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// "expected X, found Y", pointing at the value.
    fn expected(&self, node: &Node, path: &str, what: &str) -> Error {
        self.invalid(node.mark, path, format!("expected {what}, found {node}"))
    }
}

/// `path` with `.` components removed and `..` applied, without touching the disk.
fn normalize_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Whether `service` runs with the `active` profiles: it has none, or one of them (`*`
/// enables all).
fn is_active(service: &Service, active: &[String]) -> bool {
    service.profiles.is_empty() || active.iter().any(|p| p == "*" || service.profiles.contains(p))
}

/// The first `depends_on` cycle, as service names from a service back to itself.
fn dependency_cycle(compose: &Compose) -> Option<Vec<String>> {
    fn visit<'a>(
        name: &'a str,
        compose: &'a Compose,
        done: &mut BTreeSet<&'a str>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| *n == name) {
            let mut cycle: Vec<String> = stack[at..].iter().map(|n| (*n).to_owned()).collect();
            cycle.push(name.to_owned());
            return Some(cycle);
        }
        if !done.insert(name) {
            return None;
        }
        stack.push(name);
        let service = compose.services.get(name)?;
        for dependency in service.depends_on.keys() {
            if let Some(cycle) = visit(dependency, compose, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for name in compose.services.keys() {
        if let Some(cycle) = visit(name, compose, &mut done, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

/// An extension value as written.
fn any(node: &Node) -> Any {
    match &node.value {
        Value::Null => Any::Null,
        Value::Bool { value, .. } => Any::Bool(*value),
        Value::Int { value, .. } => Any::Int(*value),
        Value::Float { text } => text.parse().map_or_else(|_| Any::Str(text.clone()), Any::Float),
        Value::Str(s) => Any::Str(s.clone()),
        Value::Seq(items) => Any::Seq(items.iter().map(any).collect()),
        Value::Map(entries) => Any::Map(entries.iter().map(|e| (e.key.clone(), any(&e.value))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_lexically() {
        assert_eq!(normalize_path("/a/./b/../c"), "/a/c");
        assert_eq!(normalize_path("/../x"), "/x");
        assert_eq!(normalize_path("a/../../b"), "../b");
        assert_eq!(normalize_path("./"), ".");
        assert_eq!(normalize_path("/srv/app/./config"), "/srv/app/config");
    }

    #[test]
    fn profiles() {
        let service = |profiles: &[&str]| Service {
            profiles: profiles.iter().map(|p| (*p).to_owned()).collect(),
            ..Service::default()
        };
        let active = ["debug".to_owned()];
        assert!(is_active(&service(&[]), &[]));
        assert!(!is_active(&service(&["debug"]), &[]));
        assert!(is_active(&service(&["tools", "debug"]), &active));
        assert!(is_active(&service(&["tools"]), &["*".to_owned()]));
    }
}
