//! Container metadata: what the container runtime knows about a container id
//! (`cgroup::container_id`): its name, image and digest, labels, Kubernetes pod,
//! and which runtime runs it.
//!
//! The [`ContainerResolver`] owns a cache and one background thread. The event
//! path only calls [`ContainerResolver::lookup`] (a mutex and, on a miss, a
//! non-blocking channel send) and [`ContainerResolver::take_resolved`]; every
//! socket and file is touched by the thread. An event carries what is known
//! when it is made; a container resolved later is announced once through
//! `take_resolved`, for the pipeline to turn into a `container` event.
//!
//! Sources, tried in this order until one knows the id:
//!
//! 1. **A Docker-compatible Engine API** on a unix socket (docker, podman's
//!    `podman system service`): `GET /containers/{id}/json`, then
//!    `GET /images/{image id}/json` for the digest. A minimal HTTP/1.1 client
//!    (`Content-Length`, chunked, read to EOF), with one deadline per request
//!    and a 4 MiB cap. The `Server` header tells podman (`Libpod/…`) from docker.
//! 2. **docker**, from disk: `containers/<id>/config.v2.json` and
//!    `image/*/repositories.json` under docker's root, for when its API does
//!    not answer.
//! 3. **containerd**, from disk: the task bundle's OCI `config.json`
//!    (`<state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json`,
//!    whose CRI annotations name the container, pod and image) and containerd's
//!    metadata database (`io.containerd.metadata.v1.bolt/meta.db`, read with
//!    the small read-only bbolt reader below: container labels, image name,
//!    image digest). containerd's gRPC API is not used: it needs protobuf and
//!    HTTP/2, and the disk holds the same facts. Namespace `moby` is docker's.
//! 4. **containers/storage** (podman and CRI-O share it): `containers.json` and
//!    `images.json` (names, image ids, digests), the bundle's `config.json`
//!    (annotations: `io.container.manager`, CRI-O's `io.kubernetes.cri-o.*`),
//!    and podman's own database `libpod/bolt_state.db` (labels). Podman 5's
//!    SQLite database (`db.sql`) is not read: such containers resolve without
//!    labels. Rootless podman's per-user stores are not looked in.
//!
//! Every on-disk path, API sockets included, lies under a configurable root,
//! so tests point it at a fixture tree and a containerised ksight at `/host`.
//!
//! Invariants: nothing here panics on any input (malformed JSON or HTTP, a
//! corrupt database, a socket that hangs, closes early or never stops
//! talking); every read is bounded in size and every request in time. Errors
//! are counted in [`ResolverStats`], never printed. The event path never waits
//! on I/O: it never takes a lock the thread holds across I/O.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

/// Largest HTTP response read (head and body), and largest JSON file read.
const MAX_BODY: usize = 4 << 20;
/// Largest HTTP response head.
const MAX_HEAD: usize = 64 << 10;
/// Largest `containers.json` / `images.json`: hosts with thousands of
/// containers have multi-MiB ones.
const MAX_FILE: u64 = 32 << 20;
/// Resolution requests waiting for the thread; beyond, a lookup drops its
/// request (counted) and the next lookup of that id asks again.
const QUEUE: usize = 1024;
/// Namespaces looked through under a containerd task directory.
const MAX_NAMESPACES: usize = 256;

/// The runtime that runs a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Podman,
    Containerd,
    #[serde(rename = "cri-o")]
    CriO,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
        }
    }
}

/// The Kubernetes pod a container belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
}

/// What the runtime says about one container. JSON:
/// `{id, name, image, image_digest, runtime, labels, pod: {name, namespace}}`,
/// `pod` left out when the container is not in a Kubernetes pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    pub id: Arc<str>,
    /// The runtime's name for it (docker/podman `--name`, the Kubernetes
    /// container name), without docker's leading `/`.
    pub name: Option<String>,
    /// The image reference it was created from, e.g. `docker.io/library/nginx:1.27`.
    pub image: Option<String>,
    /// The image's manifest digest (`sha256:…`), what `@` pins in a reference.
    pub image_digest: Option<String>,
    pub runtime: Runtime,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
}

const POD_NAME: &str = "io.kubernetes.pod.name";
const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const POD_UID: &str = "io.kubernetes.pod.uid";
const K8S_CONTAINER_NAME: &str = "io.kubernetes.container.name";

impl ContainerInfo {
    fn new(id: &str, runtime: Runtime) -> Self {
        ContainerInfo {
            id: Arc::from(id),
            name: None,
            image: None,
            image_digest: None,
            runtime,
            labels: BTreeMap::new(),
            pod: None,
        }
    }

    /// Empty strings become `None`; the pod comes from kubelet's labels when
    /// no source named it.
    fn finish(mut self) -> Self {
        for field in [&mut self.name, &mut self.image, &mut self.image_digest] {
            if field.as_deref().is_some_and(str::is_empty) {
                *field = None;
            }
        }
        if self.pod.is_none() {
            if let (Some(name), Some(namespace)) =
                (self.labels.get(POD_NAME), self.labels.get(POD_NAMESPACE))
            {
                self.pod = Some(Pod {
                    name: name.clone(),
                    namespace: namespace.clone(),
                });
            }
        }
        self
    }
}

/// containerd's two places: the task (bundle) directory and the metadata database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdPaths {
    /// `…/io.containerd.runtime.v2.task`, holding `<namespace>/<id>/config.json`.
    pub tasks: PathBuf,
    /// `…/io.containerd.metadata.v1.bolt/meta.db`.
    pub meta_db: PathBuf,
}

/// A containers/storage store (podman, CRI-O, buildah).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoragePaths {
    /// `graphroot`: `overlay-containers/containers.json`, `libpod/bolt_state.db`, …
    pub graph_root: PathBuf,
    /// `runroot`: the bundles' `config.json` while containers run.
    pub run_root: PathBuf,
}

/// Where to look. Every path is taken under `root`. An empty list turns its
/// source off (tests use one source at a time).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Prefix for every path below: `/` on a host, `/host` when ksight runs in
    /// a container with the host's root mounted there, a fixture tree in tests.
    pub root: PathBuf,
    /// Docker-compatible API sockets, tried in order.
    pub api_sockets: Vec<PathBuf>,
    pub containerd: Vec<ContainerdPaths>,
    pub storage: Vec<StoragePaths>,
    /// Docker data roots (`/var/lib/docker`).
    pub docker_roots: Vec<PathBuf>,
    /// Deadline of one API request, connection to last byte.
    pub timeout: Duration,
    /// How long an id no source knew stays unknown before it is asked again.
    pub retry_after: Duration,
    /// Containers kept; the least recently looked up goes first.
    pub capacity: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let containerd = |state: &str, lib: &str| ContainerdPaths {
            tasks: PathBuf::from(state).join("io.containerd.runtime.v2.task"),
            meta_db: PathBuf::from(lib).join("io.containerd.metadata.v1.bolt/meta.db"),
        };
        RuntimeConfig {
            root: PathBuf::from("/"),
            api_sockets: [
                "/run/docker.sock",
                "/var/run/docker.sock",
                "/run/podman/podman.sock",
                "/var/run/podman/podman.sock",
            ]
            .map(PathBuf::from)
            .to_vec(),
            containerd: vec![
                containerd("/run/containerd", "/var/lib/containerd"),
                // k3s / rke2 run their own containerd
                containerd(
                    "/run/k3s/containerd",
                    "/var/lib/rancher/k3s/agent/containerd",
                ),
            ],
            storage: vec![StoragePaths {
                graph_root: PathBuf::from("/var/lib/containers/storage"),
                run_root: PathBuf::from("/run/containers/storage"),
            }],
            docker_roots: vec![PathBuf::from("/var/lib/docker")],
            timeout: Duration::from_secs(2),
            retry_after: Duration::from_secs(30),
            capacity: 4096,
        }
    }
}

impl RuntimeConfig {
    /// Only the given API sockets, no on-disk source.
    pub fn api_only(sockets: Vec<PathBuf>) -> Self {
        RuntimeConfig {
            api_sockets: sockets,
            containerd: Vec::new(),
            storage: Vec::new(),
            docker_roots: Vec::new(),
            ..RuntimeConfig::default()
        }
    }

    /// Only the on-disk sources, under `root`.
    pub fn files_only(root: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            root: root.into(),
            api_sockets: Vec::new(),
            ..RuntimeConfig::default()
        }
    }

    /// `path` under the root (`path` may be absolute).
    fn path(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }
}

/// Counters for the stop summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ResolverStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that found nothing (resolution pending, queued, or known to fail).
    pub misses: u64,
    /// Resolution requests given to the thread.
    pub queued: u64,
    /// Requests dropped because the queue was full (asked again later).
    pub dropped: u64,
    /// Containers resolved.
    pub resolved: u64,
    /// Ids no source knew.
    pub failed: u64,
    /// Source errors: timeouts, refused or garbled answers, corrupt files.
    pub errors: u64,
    /// Containers evicted from the full cache.
    pub evicted: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    queued: AtomicU64,
    dropped: AtomicU64,
    resolved: AtomicU64,
    failed: AtomicU64,
    errors: AtomicU64,
    evicted: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A bounded map evicting the least recently used entry. `order` maps a
/// use stamp to the key stamped with it, so the oldest is its first entry.
struct Lru {
    map: HashMap<Arc<str>, (Arc<ContainerInfo>, u64)>,
    order: BTreeMap<u64, Arc<str>>,
    stamp: u64,
    capacity: usize,
}

impl Lru {
    fn new(capacity: usize) -> Self {
        Lru {
            map: HashMap::new(),
            order: BTreeMap::new(),
            stamp: 0,
            capacity: capacity.max(1),
        }
    }

    fn get(&mut self, id: &str) -> Option<Arc<ContainerInfo>> {
        let (info, stamp) = self.map.get_mut(id)?;
        if let Some(key) = self.order.remove(stamp) {
            self.stamp += 1;
            *stamp = self.stamp;
            self.order.insert(self.stamp, key);
        }
        Some(Arc::clone(info))
    }

    /// Returns how many entries were evicted to make room.
    fn insert(&mut self, info: Arc<ContainerInfo>) -> u64 {
        let key = Arc::clone(&info.id);
        if let Some((_, old)) = self.map.remove(&key) {
            self.order.remove(&old);
        }
        let mut evicted = 0;
        while self.map.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
            evicted += 1;
        }
        self.stamp += 1;
        self.order.insert(self.stamp, Arc::clone(&key));
        self.map.insert(key, (info, self.stamp));
        evicted
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

struct State {
    cache: Lru,
    /// Queued or being resolved: a second lookup does not ask again.
    pending: HashSet<Arc<str>>,
    /// Ids no source knew, and when that was found.
    failed: HashMap<Arc<str>, Instant>,
    /// Resolved since the last `take_resolved`.
    resolved: Vec<Arc<ContainerInfo>>,
}

struct Shared {
    state: Mutex<State>,
    counters: Counters,
    cfg: RuntimeConfig,
}

impl Shared {
    /// A panic while the lock was held cannot leave the state inconsistent
    /// in a way that matters (every update is a single insert or remove), so
    /// a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Resolves container ids to [`ContainerInfo`] in the background; see the module doc.
pub struct ContainerResolver {
    shared: Arc<Shared>,
    requests: Option<SyncSender<Arc<str>>>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ContainerResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerResolver")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl ContainerResolver {
    /// Starts the resolver's thread. Should the thread fail to start, every
    /// lookup misses (and `queued` stays 0 in the stats).
    pub fn new(cfg: RuntimeConfig) -> ContainerResolver {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                cache: Lru::new(cfg.capacity),
                pending: HashSet::new(),
                failed: HashMap::new(),
                resolved: Vec::new(),
            }),
            counters: Counters::default(),
            cfg,
        });
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let worker_shared = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("ksight-containers".into())
            .spawn(move || work(&worker_shared, &rx))
            .ok();
        ContainerResolver {
            shared,
            requests: worker.is_some().then_some(tx),
            worker,
        }
    }

    /// The container's info if resolved; otherwise `None`, after asking the
    /// thread to resolve it (once: while pending, or for `retry_after` after
    /// no source knew it, the id is not asked for again). Never blocks on I/O.
    pub fn lookup(&self, id: &str) -> Option<Arc<ContainerInfo>> {
        let c = &self.shared.counters;
        let mut st = self.shared.lock();
        if let Some(info) = st.cache.get(id) {
            bump(&c.hits);
            return Some(info);
        }
        bump(&c.misses);
        if !valid_id(id) || st.pending.contains(id) {
            return None;
        }
        if let Some(at) = st.failed.get(id) {
            if at.elapsed() < self.shared.cfg.retry_after {
                return None;
            }
            st.failed.remove(id);
        }
        let tx = self.requests.as_ref()?;
        let id: Arc<str> = Arc::from(id);
        match tx.try_send(Arc::clone(&id)) {
            Ok(()) => {
                bump(&c.queued);
                st.pending.insert(id);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => bump(&c.dropped),
        }
        None
    }

    /// Containers resolved since the last call, each returned once.
    pub fn take_resolved(&self) -> Vec<Arc<ContainerInfo>> {
        std::mem::take(&mut self.shared.lock().resolved)
    }

    pub fn stats(&self) -> ResolverStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ResolverStats {
            hits: get(&c.hits),
            misses: get(&c.misses),
            queued: get(&c.queued),
            dropped: get(&c.dropped),
            resolved: get(&c.resolved),
            failed: get(&c.failed),
            errors: get(&c.errors),
            evicted: get(&c.evicted),
        }
    }

    /// Containers in the cache.
    pub fn cached(&self) -> usize {
        self.shared.lock().cache.len()
    }
}

impl Drop for ContainerResolver {
    /// Closing the queue ends the thread after its current request, which
    /// the request deadline bounds.
    fn drop(&mut self) {
        self.requests = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Ids become path components and URL paths: only what runtimes use
/// (docker, podman, CRI ids are 64 hex digits; containerd's may be names).
fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    (1..=128).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn work(shared: &Shared, requests: &Receiver<Arc<str>>) {
    let c = &shared.counters;
    while let Ok(id) = requests.recv() {
        let found = resolve(&shared.cfg, &id, &c.errors);
        let mut st = shared.lock();
        st.pending.remove(&id);
        match found {
            Some(info) => {
                bump(&c.resolved);
                let info = Arc::new(info);
                let evicted = st.cache.insert(Arc::clone(&info));
                c.evicted.fetch_add(evicted, Ordering::Relaxed);
                // Bounded for a pipeline that never takes them.
                if st.resolved.len() >= shared.cfg.capacity.max(1) {
                    st.resolved.remove(0);
                }
                st.resolved.push(info);
            }
            None => {
                bump(&c.failed);
                if st.failed.len() >= shared.cfg.capacity.max(1) {
                    let retry_after = shared.cfg.retry_after;
                    st.failed.retain(|_, at| at.elapsed() < retry_after);
                    if st.failed.len() >= shared.cfg.capacity.max(1) {
                        st.failed.clear();
                    }
                }
                st.failed.insert(id, Instant::now());
            }
        }
    }
}

/// Why a source could not answer. Counted, never shown per event.
#[derive(Debug, thiserror::Error)]
enum SourceError {
    #[error("http: {0}")]
    Http(#[from] HttpError),
    #[error("api answered {0}")]
    Status(u16),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("io: {0}")]
    Io(#[from] io::Error),
    #[error("bolt: {0}")]
    Bolt(#[from] bolt::Error),
}

/// Every source in order; the first that knows the id wins. A source's
/// error is counted and the next source asked.
fn resolve(cfg: &RuntimeConfig, id: &str, errors: &AtomicU64) -> Option<ContainerInfo> {
    let found = |r: Result<Option<ContainerInfo>, SourceError>| match r {
        Ok(info) => info,
        Err(_) => {
            bump(errors);
            None
        }
    };
    for socket in &cfg.api_sockets {
        if let Some(info) = found(api::resolve(&cfg.path(socket), id, cfg.timeout, errors)) {
            return Some(info.finish());
        }
    }
    // docker's files before containerd's: docker runs its containers in
    // containerd's `moby` namespace, where they have no name.
    for root in &cfg.docker_roots {
        if let Some(info) = found(docker_files::resolve(&cfg.path(root), id)) {
            return Some(info.finish());
        }
    }
    for paths in &cfg.containerd {
        if let Some(info) = found(containerd::resolve(cfg, paths, id, errors)) {
            return Some(info.finish());
        }
    }
    for paths in &cfg.storage {
        if let Some(info) = found(storage::resolve(cfg, paths, id, errors)) {
            return Some(info.finish());
        }
    }
    None
}

/// Reads a whole file of at most `max` bytes; `Ok(None)` if it does not exist.
fn read_file(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "file too large"));
    }
    Ok(Some(buf))
}

fn read_json(path: &Path, max: u64) -> Result<Option<Value>, SourceError> {
    match read_file(path, max)? {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

/// The string at a JSON pointer, if it is a non-empty string.
fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A JSON object's string members; other members are skipped.
fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The repository of an image reference: no `@digest`, no `:tag` (a `:`
/// before the last `/` is a registry port).
fn repository(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(repo, _)| repo);
    match (image.rfind(':'), image.rfind('/')) {
        (Some(colon), slash) if slash.is_none_or(|s| colon > s) => &image[..colon],
        _ => image,
    }
}

/// A repository the way registries name it: docker's short `nginx` is
/// `docker.io/library/nginx`, `me/app` is `docker.io/me/app`.
fn normalized_repository(image: &str) -> String {
    let repo = repository(image);
    match repo.split_once('/') {
        None => format!("docker.io/library/{repo}"),
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => repo.to_owned(),
        Some(_) => format!("docker.io/{repo}"),
    }
}

/// The digest an image reference pins (`repo@sha256:…`), if any.
fn pinned_digest(image: &str) -> Option<&str> {
    image
        .split_once('@')
        .map(|(_, d)| d)
        .filter(|d| d.contains(':'))
}

/// The manifest digest for `image` among `repo@digest` strings: the one of
/// the same repository, else the first.
fn digest_from_repo_digests<'a>(
    repo_digests: impl IntoIterator<Item = &'a str>,
    image: Option<&str>,
) -> Option<String> {
    let want = image.map(normalized_repository);
    let mut first = None;
    for rd in repo_digests {
        let Some((repo, digest)) = rd.split_once('@') else {
            continue;
        };
        if want.as_deref() == Some(normalized_repository(repo).as_str()) {
            return Some(digest.to_owned());
        }
        first.get_or_insert(digest);
    }
    first.map(str::to_owned)
}

/// A minimal HTTP/1.1 client: one GET per connection (`Connection: close`).
mod http {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum HttpError {
        #[error("malformed response: {0}")]
        Malformed(&'static str),
        #[error("connection closed mid-response")]
        Truncated,
        #[error("response over {MAX_BODY} bytes")]
        TooLarge,
        #[error("no complete response before the deadline")]
        Timeout,
        #[error("{0}")]
        Io(io::ErrorKind),
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Response {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    /// Parses a response from the bytes received so far. `Ok(None)`: not
    /// complete yet; `eof`: the peer has closed, so nothing more will come.
    pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, HttpError> {
        let Some(head_len) = find(&buf[..buf.len().min(MAX_HEAD)], b"\r\n\r\n") else {
            return if buf.len() >= MAX_HEAD {
                Err(HttpError::Malformed("head too long"))
            } else if eof {
                Err(HttpError::Truncated)
            } else {
                Ok(None)
            };
        };
        let head = std::str::from_utf8(&buf[..head_len])
            .map_err(|_| HttpError::Malformed("head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
            return Err(HttpError::Malformed("not an HTTP/1 status line"));
        }
        let status: u16 = parts
            .next()
            .filter(|s| s.len() == 3)
            .and_then(|s| s.parse().ok())
            .ok_or(HttpError::Malformed("bad status code"))?;
        let mut headers = Vec::new();
        for line in lines {
            let (k, v) = line
                .split_once(':')
                .ok_or(HttpError::Malformed("header without ':'"))?;
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let rest = &buf[head_len + 4..];

        if (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(Some(response));
        }
        let chunked = response.header("transfer-encoding").is_some_and(|te| {
            te.rsplit(',')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("chunked")
        });
        if chunked {
            // The message ends with CRLF CRLF (last chunk, trailers, blank
            // line); decode only when it might be complete.
            if !eof && !rest.ends_with(b"\r\n\r\n") && !rest.ends_with(b"0\r\n\r\n") {
                return Ok(None);
            }
            return match dechunk(rest)? {
                Some(body) => {
                    response.body = body;
                    Ok(Some(response))
                }
                None if eof => Err(HttpError::Truncated),
                None => Ok(None),
            };
        }
        if let Some(len) = response.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| HttpError::Malformed("bad content-length"))?;
            if len > MAX_BODY {
                return Err(HttpError::TooLarge);
            }
            return match rest.get(..len) {
                Some(body) => {
                    response.body = body.to_vec();
                    Ok(Some(response))
                }
                None if eof => Err(HttpError::Truncated),
                None => Ok(None),
            };
        }
        // Neither: the body runs to the end of the connection.
        if eof {
            response.body = rest.to_vec();
            return Ok(Some(response));
        }
        Ok(None)
    }

    /// Decodes a chunked body. `Ok(None)`: incomplete.
    pub fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, HttpError> {
        let mut body = Vec::new();
        loop {
            let Some(eol) = find(&data[..data.len().min(1024)], b"\r\n") else {
                return if data.len() >= 1024 {
                    Err(HttpError::Malformed("chunk size line too long"))
                } else {
                    Ok(None)
                };
            };
            let line = std::str::from_utf8(&data[..eol])
                .map_err(|_| HttpError::Malformed("chunk size is not text"))?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| HttpError::Malformed("bad chunk size"))?;
            data = &data[eol + 2..];
            if size == 0 {
                // trailers, up to a blank line
                loop {
                    let Some(eol) = find(data, b"\r\n") else {
                        return Ok(None);
                    };
                    if eol == 0 {
                        return Ok(Some(body));
                    }
                    data = &data[eol + 2..];
                }
            }
            if size > MAX_BODY || body.len() + size > MAX_BODY {
                return Err(HttpError::TooLarge);
            }
            let Some(chunk) = data.get(..size + 2) else {
                return Ok(None);
            };
            if &chunk[size..] != b"\r\n" {
                return Err(HttpError::Malformed("chunk not followed by CRLF"));
            }
            body.extend_from_slice(&chunk[..size]);
            data = &data[size + 2..];
        }
    }

    /// `GET path` on the unix socket, all within `timeout`.
    pub fn get(socket: &Path, path: &str, timeout: Duration) -> Result<Response, HttpError> {
        let deadline = Instant::now() + timeout;
        let left = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or(HttpError::Timeout)
        };
        let io_err = |e: io::Error| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HttpError::Timeout,
            kind => HttpError::Io(kind),
        };
        // connect(2) on a unix socket does not wait for the server to
        // accept; it blocks only while the listen backlog is full.
        let mut stream = UnixStream::connect(socket).map_err(io_err)?;
        stream.set_write_timeout(Some(left()?)).map_err(io_err)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: ksight\r\n\
             Accept: application/json\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).map_err(io_err)?;

        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            stream.set_read_timeout(Some(left()?)).map_err(io_err)?;
            match stream.read(&mut chunk) {
                Ok(0) => return parse_response(&buf, true)?.ok_or(HttpError::Truncated),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > MAX_BODY + MAX_HEAD {
                        return Err(HttpError::TooLarge);
                    }
                    if let Some(response) = parse_response(&buf, false)? {
                        return Ok(response);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
    }
}
use http::HttpError;

/// The Docker Engine API, as docker and podman serve it.
mod api {
    use super::*;

    /// `Ok(None)`: no API on that socket, or it does not know the id. A
    /// failed image request is counted in `errors`; the container is
    /// returned without its digest.
    pub fn resolve(
        socket: &Path,
        id: &str,
        timeout: Duration,
        errors: &AtomicU64,
    ) -> Result<Option<ContainerInfo>, SourceError> {
        let response = match http::get(socket, &format!("/containers/{id}/json"), timeout) {
            Ok(r) => r,
            // no daemon there: the usual case for most default sockets
            Err(HttpError::Io(
                io::ErrorKind::NotFound
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::PermissionDenied,
            )) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match response.status {
            200 => {}
            404 => return Ok(None),
            s => return Err(SourceError::Status(s)),
        }
        let runtime = runtime_of(&response, socket);
        let v: Value = serde_json::from_slice(&response.body)?;
        let Some(mut info) = from_inspect(id, &v, runtime) else {
            return Ok(None);
        };
        // The digest needs the image: best effort, the container is known anyway.
        if info.image_digest.is_none() || info.image.is_none() {
            if let Some(image_id) = str_at(&v, "/Image").filter(|i| valid_image_ref(i)) {
                let image = http::get(socket, &format!("/images/{image_id}/json"), timeout);
                match image.map(|r| (r.status, serde_json::from_slice::<Value>(&r.body))) {
                    Ok((200, Ok(img))) => add_image(&mut info, &img),
                    Ok((404, _)) => {} // removed since
                    _ => bump(errors),
                }
            }
        }
        Ok(Some(info))
    }

    fn valid_image_ref(s: &str) -> bool {
        s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b':' | b'.' | b'-' | b'_'))
    }

    /// Podman's compat API says `Server: Libpod/4.3.1 (linux)` and sends
    /// `Libpod-Api-Version`; docker says `Server: Docker/24.0.7 (linux)`.
    pub fn runtime_of(r: &http::Response, socket: &Path) -> Runtime {
        let server = r.header("server").unwrap_or("");
        if server.starts_with("Libpod") || r.header("libpod-api-version").is_some() {
            Runtime::Podman
        } else if server.starts_with("Docker") {
            Runtime::Docker
        } else if socket.to_string_lossy().contains("podman") {
            Runtime::Podman
        } else {
            Runtime::Docker
        }
    }

    /// Maps `GET /containers/{id}/json`. `None` if it names another container.
    pub fn from_inspect(id: &str, v: &Value, runtime: Runtime) -> Option<ContainerInfo> {
        if str_at(v, "/Id").is_some_and(|got| got != id) {
            return None;
        }
        let mut info = ContainerInfo::new(id, runtime);
        info.name = str_at(v, "/Name").map(|n| n.trim_start_matches('/').to_owned());
        // Config.Image is what the user asked for; an image id when run by id.
        info.image = str_at(v, "/Config/Image")
            .filter(|i| !i.starts_with("sha256:"))
            .map(str::to_owned);
        // podman's libpod endpoints have ImageDigest; a pinned reference has it too
        info.image_digest = str_at(v, "/ImageDigest")
            .or_else(|| info.image.as_deref().and_then(pinned_digest))
            .map(str::to_owned);
        info.labels = string_map(v.pointer("/Config/Labels"));
        Some(info)
    }

    /// Fills name and digest from `GET /images/{id}/json`.
    pub fn add_image(info: &mut ContainerInfo, img: &Value) {
        if info.image.is_none() {
            info.image = str_at(img, "/RepoTags/0").map(str::to_owned);
        }
        if info.image_digest.is_none() {
            let digests = img.get("RepoDigests").and_then(Value::as_array);
            let digests = digests.into_iter().flatten().filter_map(Value::as_str);
            info.image_digest = digest_from_repo_digests(digests, info.image.as_deref());
        }
    }
}

/// Keys containerd's CRI plugin writes into a container's OCI spec.
mod cri {
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
}

/// Adds kubelet's labels (which every kubelet-made container carries, see
/// kubelet's `newContainerLabels`) from what CRI annotations say, where the
/// source gave no labels of its own.
fn add_kubelet_labels(info: &mut ContainerInfo, container: Option<&str>, uid: Option<&str>) {
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            info.labels
                .entry(k.to_owned())
                .or_insert_with(|| v.to_owned());
        }
    };
    put(K8S_CONTAINER_NAME, container);
    put(POD_UID, uid);
    if let Some(pod) = info.pod.clone() {
        put(POD_NAME, Some(&pod.name));
        put(POD_NAMESPACE, Some(&pod.namespace));
    }
}

/// containerd: the task bundle's `config.json` and the metadata database.
mod containerd {
    use super::*;

    /// A corrupt meta.db beside a bundle is counted in `errors`, and what
    /// the bundle said is returned.
    pub fn resolve(
        cfg: &RuntimeConfig,
        paths: &ContainerdPaths,
        id: &str,
        errors: &AtomicU64,
    ) -> Result<Option<ContainerInfo>, SourceError> {
        let tasks = cfg.path(&paths.tasks);
        let meta_db = cfg.path(&paths.meta_db);
        let mut namespace = None;
        if let Ok(dir) = std::fs::read_dir(&tasks) {
            for entry in dir.flatten().take(MAX_NAMESPACES) {
                if entry.path().join(id).is_dir() {
                    namespace = Some(entry.file_name().to_string_lossy().into_owned());
                    break;
                }
            }
        }
        let annotations = match &namespace {
            Some(ns) => read_json(
                &tasks.join(ns).join(id).join("config.json"),
                MAX_BODY as u64,
            )?
            .map(|spec| string_map(spec.get("annotations")))
            .unwrap_or_default(),
            None => BTreeMap::new(),
        };
        let db = match bolt::Db::open(&meta_db) {
            Ok(db) => Some(db),
            Err(bolt::Error::Io(e)) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) if namespace.is_none() => return Err(e.into()),
            Err(_) => {
                bump(errors);
                None
            }
        };
        let record = match db.map(|db| meta_record(&db, namespace.as_deref(), id)) {
            Some(Ok(record)) => record,
            Some(Err(e)) if namespace.is_none() => return Err(e.into()),
            Some(Err(_)) => {
                bump(errors);
                None
            }
            None => None,
        };
        let namespace = namespace.or_else(|| record.as_ref().map(|r| r.namespace.clone()));
        let Some(namespace) = namespace else {
            return Ok(None);
        };
        let runtime = if namespace == "moby" {
            Runtime::Docker
        } else {
            Runtime::Containerd
        };
        let mut info = from_annotations(id, runtime, &annotations);
        if let Some(record) = record {
            info.labels = record.labels;
            if record.image.is_some() {
                info.image = record.image;
            }
            info.image_digest = record.image_digest;
        }
        let container = annotations.get(cri::CONTAINER_NAME).map(String::as_str);
        let uid = annotations.get(cri::SANDBOX_UID).map(String::as_str);
        add_kubelet_labels(&mut info, container, uid);
        if info.name.is_none() {
            info.name = info.labels.get(K8S_CONTAINER_NAME).cloned();
        }
        Ok(Some(info))
    }

    /// Maps the CRI annotations of a bundle's `config.json`.
    pub fn from_annotations(
        id: &str,
        runtime: Runtime,
        a: &BTreeMap<String, String>,
    ) -> ContainerInfo {
        let get = |k: &str| a.get(k).filter(|v| !v.is_empty()).cloned();
        let mut info = ContainerInfo::new(id, runtime);
        info.name = get(cri::CONTAINER_NAME);
        info.image = get(cri::IMAGE_NAME);
        if let (Some(name), Some(namespace)) = (get(cri::SANDBOX_NAME), get(cri::SANDBOX_NAMESPACE))
        {
            info.pod = Some(Pod { name, namespace });
        }
        if info.name.is_none() && get(cri::CONTAINER_TYPE).as_deref() == Some("sandbox") {
            info.name = Some("POD".to_owned()); // what kubelet calls a pod's sandbox
        }
        info
    }

    pub struct Record {
        pub namespace: String,
        pub image: Option<String>,
        pub image_digest: Option<String>,
        pub labels: BTreeMap<String, String>,
    }

    /// `v1/<namespace>/containers/<id>` in meta.db (layout: containerd's
    /// `core/metadata/buckets.go`). Without a namespace, every one is searched.
    pub fn meta_record(
        db: &bolt::Db,
        namespace: Option<&str>,
        id: &str,
    ) -> Result<Option<Record>, bolt::Error> {
        let Some(v1) = db.bucket(&db.root(), b"v1")? else {
            return Ok(None);
        };
        let namespaces = match namespace {
            Some(ns) => vec![ns.as_bytes().to_vec()],
            None => db
                .entries(&v1)?
                .into_iter()
                .filter(|(_, v)| matches!(v, bolt::Value::Bucket(_)))
                .map(|(k, _)| k)
                .take(MAX_NAMESPACES)
                .collect(),
        };
        for ns in namespaces {
            let Some(nsb) = db.bucket(&v1, &ns)? else {
                continue;
            };
            let Some(containers) = db.bucket(&nsb, b"containers")? else {
                continue;
            };
            let Some(c) = db.bucket(&containers, id.as_bytes())? else {
                continue;
            };
            let image = db.string(&c, b"image")?;
            let labels = match db.bucket(&c, b"labels")? {
                Some(l) => db.strings(&l)?,
                None => BTreeMap::new(),
            };
            let mut image_digest = None;
            if let Some(image) = &image {
                if let Some(images) = db.bucket(&nsb, b"images")? {
                    if let Some(img) = db.bucket(&images, image.as_bytes())? {
                        if let Some(target) = db.bucket(&img, b"target")? {
                            image_digest = db.string(&target, b"digest")?;
                        }
                    }
                }
                image_digest = image_digest.or_else(|| pinned_digest(image).map(str::to_owned));
            }
            return Ok(Some(Record {
                namespace: String::from_utf8_lossy(&ns).into_owned(),
                image,
                image_digest,
                labels,
            }));
        }
        Ok(None)
    }
}

/// containers/storage, shared by podman and CRI-O.
mod storage {
    use super::*;

    /// The storage drivers whose `<driver>-containers` directories are looked in.
    const DRIVERS: [&str; 4] = ["overlay", "vfs", "btrfs", "zfs"];

    /// A partial failure (a corrupt podman database) is counted in
    /// `errors`, and what the other files said is returned.
    pub fn resolve(
        cfg: &RuntimeConfig,
        paths: &StoragePaths,
        id: &str,
        errors: &AtomicU64,
    ) -> Result<Option<ContainerInfo>, SourceError> {
        let graph = cfg.path(&paths.graph_root);
        let run = cfg.path(&paths.run_root);
        let mut entry = None;
        let mut driver = DRIVERS[0];
        for d in DRIVERS {
            let list = graph.join(format!("{d}-containers/containers.json"));
            if let Some(list) = read_json(&list, MAX_FILE)? {
                if let Some(e) = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| str_at(e, "/id") == Some(id))
                {
                    entry = Some(e.clone());
                    driver = d;
                    break;
                }
            }
        }
        let mut spec = None;
        for dir in [&run, &graph] {
            let path = dir.join(format!("{driver}-containers/{id}/userdata/config.json"));
            if let Some(s) = read_json(&path, MAX_BODY as u64)? {
                spec = Some(s);
                break;
            }
        }
        if entry.is_none() && spec.is_none() {
            return Ok(None);
        }
        let annotations = string_map(spec.as_ref().and_then(|s| s.get("annotations")));
        let is_crio = annotations.get("io.container.manager").map(String::as_str) == Some("cri-o")
            || annotations.contains_key(crio::CONTAINER_TYPE);

        let (mut info, image_id) = if is_crio {
            let info = crio::from_annotations(id, &annotations);
            let image_id = annotations.get(crio::IMAGE_REF).cloned();
            (info, image_id)
        } else {
            let mut info = ContainerInfo::new(id, Runtime::Podman);
            let mut image_id = None;
            if let Some(e) = &entry {
                info.name = str_at(e, "/names/0").map(str::to_owned);
                image_id = str_at(e, "/image").map(str::to_owned);
                // `metadata` is JSON in a string: image-name, name
                if let Some(meta) =
                    str_at(e, "/metadata").and_then(|m| serde_json::from_str::<Value>(m).ok())
                {
                    info.image = str_at(&meta, "/image-name").map(str::to_owned);
                    info.name = info
                        .name
                        .or_else(|| str_at(&meta, "/name").map(str::to_owned));
                }
            }
            match libpod_config(&graph.join("libpod/bolt_state.db"), id) {
                Ok(Some(config)) => {
                    info.labels = string_map(config.get("labels"));
                    info.name = str_at(&config, "/name").map(str::to_owned).or(info.name);
                    info.image = str_at(&config, "/rootfsImageName")
                        .map(str::to_owned)
                        .or(info.image);
                    image_id =
                        image_id.or_else(|| str_at(&config, "/rootfsImageID").map(str::to_owned));
                }
                Ok(None) => {}
                // The container is known; only its labels are missing.
                Err(_) => bump(errors),
            }
            (info, image_id)
        };
        if let Some(image_id) = image_id {
            let image_id = image_id
                .strip_prefix("sha256:")
                .unwrap_or(&image_id)
                .to_owned();
            let images = graph.join(format!("{driver}-images/images.json"));
            if let Some(images) = read_json(&images, MAX_FILE)? {
                if let Some(img) = images
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|i| str_at(i, "/id") == Some(image_id.as_str()))
                {
                    if info.image.is_none() {
                        info.image = str_at(img, "/names/0").map(str::to_owned);
                    }
                    info.image_digest = str_at(img, "/digest").map(str::to_owned);
                }
            }
        }
        Ok(Some(info))
    }

    /// Podman's container config: `ctr/<id>/config` in `bolt_state.db`
    /// (layout: podman's `libpod/boltdb_state_internal.go`), a JSON object
    /// with `name`, `labels`, `rootfsImageName`, `rootfsImageID`.
    pub fn libpod_config(db: &Path, id: &str) -> Result<Option<Value>, SourceError> {
        let db = match bolt::Db::open(db) {
            Ok(db) => db,
            Err(bolt::Error::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(ctrs) = db.bucket(&db.root(), b"ctr")? else {
            return Ok(None);
        };
        let Some(ctr) = db.bucket(&ctrs, id.as_bytes())? else {
            return Ok(None);
        };
        match db.get(&ctr, b"config")? {
            Some(bolt::Value::Bytes(config)) => Ok(Some(serde_json::from_slice(&config)?)),
            _ => Ok(None),
        }
    }
}

/// CRI-O's annotations on a container's OCI spec (CRI-O's `pkg/annotations`).
mod crio {
    use super::*;

    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
    pub const IMAGE_REF: &str = "io.kubernetes.cri-o.ImageRef";
    const IMAGE_NAME: &str = "io.kubernetes.cri-o.ImageName";
    const IMAGE: &str = "io.kubernetes.cri-o.Image";
    const LABELS: &str = "io.kubernetes.cri-o.Labels";
    const METADATA: &str = "io.kubernetes.cri-o.Metadata";
    const KUBE_NAME: &str = "io.kubernetes.cri-o.KubeName";
    const NAMESPACE: &str = "io.kubernetes.cri-o.Namespace";

    pub fn from_annotations(id: &str, a: &BTreeMap<String, String>) -> ContainerInfo {
        let get = |k: &str| a.get(k).filter(|v| !v.is_empty());
        let json = |k: &str| get(k).and_then(|v| serde_json::from_str::<Value>(v).ok());
        let mut info = ContainerInfo::new(id, Runtime::CriO);
        info.labels = string_map(json(LABELS).as_ref());
        info.name = info
            .labels
            .get(K8S_CONTAINER_NAME)
            .cloned()
            .or_else(|| json(METADATA).and_then(|m| str_at(&m, "/name").map(str::to_owned)));
        info.image = get(IMAGE_NAME).or_else(|| get(IMAGE)).cloned();
        // Pod labels first; a sandbox's own spec names its pod by KubeName.
        if let (Some(name), Some(namespace)) = (
            info.labels.get(POD_NAME).or_else(|| get(KUBE_NAME)),
            info.labels.get(POD_NAMESPACE).or_else(|| get(NAMESPACE)),
        ) {
            info.pod = Some(Pod {
                name: name.clone(),
                namespace: namespace.clone(),
            });
        }
        info
    }
}

/// docker's own files, for when its API does not answer.
mod docker_files {
    use super::*;

    pub fn resolve(root: &Path, id: &str) -> Result<Option<ContainerInfo>, SourceError> {
        let config = root.join("containers").join(id).join("config.v2.json");
        let Some(v) = read_json(&config, MAX_BODY as u64)? else {
            return Ok(None);
        };
        let Some(mut info) = api::from_inspect(id, &v, Runtime::Docker) else {
            return Ok(None);
        };
        if info.image_digest.is_none() {
            if let Some(image_id) = str_at(&v, "/Image") {
                info.image_digest = repositories_digest(root, image_id, info.image.as_deref());
            }
        }
        Ok(Some(info))
    }

    /// `image/<driver>/repositories.json`: `{"Repositories": {repo: {ref: image id}}}`,
    /// where the `repo@digest` refs name the digests.
    fn repositories_digest(root: &Path, image_id: &str, image: Option<&str>) -> Option<String> {
        let dir = std::fs::read_dir(root.join("image")).ok()?;
        for entry in dir.flatten().take(16) {
            let Ok(Some(v)) = read_json(&entry.path().join("repositories.json"), MAX_FILE) else {
                continue;
            };
            let refs = v
                .get("Repositories")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|repos| repos.values())
                .filter_map(Value::as_object)
                .flatten()
                .filter(|(r, target)| r.contains('@') && target.as_str() == Some(image_id))
                .map(|(r, _)| r.as_str());
            if let Some(d) = digest_from_repo_digests(refs, image) {
                return Some(d);
            }
        }
        None
    }
}

/// A read-only reader of bbolt files (containerd's meta.db, podman's
/// bolt_state.db), after bbolt's `internal/common/{page,meta}.go`:
///
/// * the file is pages of `page_size` bytes; pages 0 and 1 are meta pages,
///   the valid one (magic, version 2, FNV-1a checksum) with the larger
///   transaction id is current and names the root bucket's page;
/// * a page starts with `id u64, flags u16, count u16, overflow u32`; a page
///   with `overflow` n spans n+1 pages;
/// * branch pages hold `count` elements `pos u32, ksize u32, pgid u64`, leaf
///   pages `flags u32, pos u32, ksize u32, vsize u32`, each `pos` counted from
///   the element itself; keys are sorted;
/// * a leaf element with flag 1 is a bucket: its value is `root u64,
///   sequence u64`, and when `root` is 0 the bucket's one leaf page follows
///   inline in the value.
///
/// Integers are little-endian (bbolt writes native order; every platform
/// ksight runs on is little-endian). Reads go through the file, not a map,
/// and every lookup reads at most `PAGE_BUDGET` pages, so a corrupt file
/// (a page pointing at itself, lengths past the end) ends in an error.
mod bolt {
    use std::cell::Cell;
    use std::collections::BTreeMap;
    use std::fs::File;
    use std::io;
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    const MAGIC: u32 = 0xED0C_DAED;
    const VERSION: u32 = 2;
    const BRANCH: u16 = 0x01;
    const LEAF: u16 = 0x02;
    const BUCKET_LEAF: u32 = 0x01;
    const HEADER: usize = 16;
    const ELEMENT: usize = 16;
    /// Pages read per lookup, at most.
    const PAGE_BUDGET: u32 = 4096;
    /// Largest page (with its overflow) read.
    const MAX_PAGE: u64 = 16 << 20;
    /// Entries listed from one bucket, at most.
    const MAX_ENTRIES: usize = 65_536;

    #[derive(Debug, thiserror::Error)]
    pub enum Error {
        #[error("{0}")]
        Io(#[from] io::Error),
        #[error("corrupt database: {0}")]
        Corrupt(&'static str),
    }

    type Result<T> = std::result::Result<T, Error>;

    /// A bucket: the page its tree starts at, or its inline leaf page.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Bucket {
        Paged(u64),
        Inline(Vec<u8>),
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Value {
        Bytes(Vec<u8>),
        Bucket(Bucket),
    }

    pub struct Db {
        file: File,
        page_size: u64,
        root: u64,
        /// Pages past this were never written by the current transaction.
        high_water: u64,
        budget: Cell<u32>,
    }

    fn u16_at(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }
    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }
    fn u64_at(b: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
    }

    pub fn fnv1a64(data: &[u8]) -> u64 {
        data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// A meta page's (page size, root page, high water mark, txid), if valid.
    fn meta(page: &[u8]) -> Option<(u64, u64, u64, u64)> {
        let m = page.get(HEADER..HEADER + 64)?;
        let (magic, version, page_size) = (u32_at(m, 0)?, u32_at(m, 4)?, u32_at(m, 8)?);
        // root bucket {root, sequence} at 16, freelist 32, pgid 40, txid 48, checksum 56
        if magic != MAGIC || version != VERSION || u64_at(m, 56)? != fnv1a64(&m[..56]) {
            return None;
        }
        if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
            return None;
        }
        Some((
            u64::from(page_size),
            u64_at(m, 16)?,
            u64_at(m, 40)?,
            u64_at(m, 48)?,
        ))
    }

    impl Db {
        pub fn open(path: &Path) -> Result<Db> {
            let file = File::open(path)?;
            let mut first = vec![0u8; 4096];
            let n = read_upto(&file, &mut first, 0)?;
            first.truncate(n);
            let m0 = meta(&first);
            // Page 1 sits one page size in, which only a valid page 0 tells;
            // else try the usual sizes.
            let sizes = match m0 {
                Some((ps, ..)) => vec![ps],
                None => vec![4096, 16384, 65536, 8192, 2048, 1024, 512],
            };
            let mut best = m0;
            for ps in sizes {
                let mut second = vec![0u8; HEADER + 64];
                let n = read_upto(&file, &mut second, ps)?;
                if let Some(m1) = meta(&second[..n]).filter(|m| m.0 == ps) {
                    if best.is_none_or(|b| m1.3 > b.3) {
                        best = Some(m1);
                    }
                    break;
                }
            }
            let (page_size, root, high_water, _) =
                best.ok_or(Error::Corrupt("no valid meta page"))?;
            Ok(Db {
                file,
                page_size,
                root,
                high_water,
                budget: Cell::new(PAGE_BUDGET),
            })
        }

        pub fn root(&self) -> Bucket {
            Bucket::Paged(self.root)
        }

        /// One page with its overflow pages.
        fn page(&self, id: u64) -> Result<Vec<u8>> {
            let left = self.budget.get();
            if left == 0 {
                return Err(Error::Corrupt("too many pages read (a cycle?)"));
            }
            self.budget.set(left - 1);
            if id < 2 || id >= self.high_water {
                return Err(Error::Corrupt("page id out of range"));
            }
            let at = id
                .checked_mul(self.page_size)
                .ok_or(Error::Corrupt("page offset"))?;
            let mut page = vec![0u8; self.page_size as usize];
            if read_upto(&self.file, &mut page, at)? < page.len() {
                return Err(Error::Corrupt("page past the end of the file"));
            }
            if u64_at(&page, 0) != Some(id) {
                return Err(Error::Corrupt("page names another id"));
            }
            let overflow = u64::from(u32_at(&page, 12).unwrap_or(0));
            if overflow > 0 {
                let len = (overflow + 1)
                    .checked_mul(self.page_size)
                    .filter(|l| *l <= MAX_PAGE)
                    .ok_or(Error::Corrupt("page overflow too large"))?;
                page.resize(len as usize, 0);
                if read_upto(&self.file, &mut page, at)? < page.len() {
                    return Err(Error::Corrupt("page past the end of the file"));
                }
            }
            Ok(page)
        }

        /// The value under `key` in `bucket`.
        pub fn get(&self, bucket: &Bucket, key: &[u8]) -> Result<Option<Value>> {
            self.budget.set(PAGE_BUDGET);
            match bucket {
                Bucket::Inline(page) => find_in_leaf(page, key),
                Bucket::Paged(root) => {
                    let mut page = self.page(*root)?;
                    loop {
                        match u16_at(&page, 8) {
                            Some(LEAF) => return find_in_leaf(&page, key),
                            Some(BRANCH) => {
                                let child = branch_child(&page, key)?;
                                page = self.page(child)?;
                            }
                            _ => return Err(Error::Corrupt("not a branch or leaf page")),
                        }
                    }
                }
            }
        }

        pub fn bucket(&self, bucket: &Bucket, key: &[u8]) -> Result<Option<Bucket>> {
            Ok(match self.get(bucket, key)? {
                Some(Value::Bucket(b)) => Some(b),
                _ => None,
            })
        }

        /// A value that is UTF-8 text (invalid bytes replaced).
        pub fn string(&self, bucket: &Bucket, key: &[u8]) -> Result<Option<String>> {
            Ok(match self.get(bucket, key)? {
                Some(Value::Bytes(b)) if !b.is_empty() => {
                    Some(String::from_utf8_lossy(&b).into_owned())
                }
                _ => None,
            })
        }

        /// Every key and value of a bucket, in key order.
        pub fn entries(&self, bucket: &Bucket) -> Result<Vec<(Vec<u8>, Value)>> {
            self.budget.set(PAGE_BUDGET);
            let mut out = Vec::new();
            match bucket {
                Bucket::Inline(page) => leaf_entries(page, &mut out)?,
                Bucket::Paged(root) => self.collect(*root, &mut out, 0)?,
            }
            Ok(out)
        }

        fn collect(&self, id: u64, out: &mut Vec<(Vec<u8>, Value)>, depth: u32) -> Result<()> {
            if depth > 32 {
                return Err(Error::Corrupt("tree too deep"));
            }
            let page = self.page(id)?;
            match u16_at(&page, 8) {
                Some(LEAF) => leaf_entries(&page, out),
                Some(BRANCH) => {
                    for i in 0..count(&page) {
                        let (_, child) = branch_element(&page, i)?;
                        self.collect(child, out, depth + 1)?;
                    }
                    Ok(())
                }
                _ => Err(Error::Corrupt("not a branch or leaf page")),
            }
        }

        /// String keys to string values (a labels bucket).
        pub fn strings(&self, bucket: &Bucket) -> Result<BTreeMap<String, String>> {
            Ok(self
                .entries(bucket)?
                .into_iter()
                .filter_map(|(k, v)| match v {
                    Value::Bytes(v) => Some((
                        String::from_utf8_lossy(&k).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    )),
                    Value::Bucket(_) => None,
                })
                .collect())
        }
    }

    /// Fills `buf` from `at` as far as the file goes; returns the bytes read.
    fn read_upto(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], at + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn count(page: &[u8]) -> usize {
        usize::from(u16_at(page, 10).unwrap_or(0))
    }

    fn slice(page: &[u8], from: usize, len: usize) -> Result<&[u8]> {
        from.checked_add(len)
            .and_then(|end| page.get(from..end))
            .ok_or(Error::Corrupt("element past the end of its page"))
    }

    /// Branch element `i`: (key, child page).
    fn branch_element(page: &[u8], i: usize) -> Result<(&[u8], u64)> {
        let at = HEADER + i * ELEMENT;
        let e = slice(page, at, ELEMENT)?;
        let (pos, ksize) = (u32_at(e, 0).unwrap_or(0), u32_at(e, 4).unwrap_or(0));
        let child = u64_at(e, 8).unwrap_or(0);
        let key = slice(page, at + pos as usize, ksize as usize)?;
        Ok((key, child))
    }

    /// The child to descend into: the last whose first key is <= `key`.
    fn branch_child(page: &[u8], key: &[u8]) -> Result<u64> {
        let n = count(page);
        if n == 0 {
            return Err(Error::Corrupt("empty branch page"));
        }
        let mut child = branch_element(page, 0)?.1;
        for i in 1..n {
            let (k, c) = branch_element(page, i)?;
            if k > key {
                break;
            }
            child = c;
        }
        Ok(child)
    }

    /// Leaf element `i`: (flags, key, value).
    fn leaf_element(page: &[u8], i: usize) -> Result<(u32, &[u8], &[u8])> {
        let at = HEADER + i * ELEMENT;
        let e = slice(page, at, ELEMENT)?;
        let (flags, pos) = (u32_at(e, 0).unwrap_or(0), u32_at(e, 4).unwrap_or(0));
        let (ksize, vsize) = (u32_at(e, 8).unwrap_or(0), u32_at(e, 12).unwrap_or(0));
        let key = slice(page, at + pos as usize, ksize as usize)?;
        let value = slice(page, at + pos as usize + ksize as usize, vsize as usize)?;
        Ok((flags, key, value))
    }

    fn value(flags: u32, v: &[u8]) -> Result<Value> {
        if flags & BUCKET_LEAF == 0 {
            return Ok(Value::Bytes(v.to_vec()));
        }
        let root = u64_at(v, 0).ok_or(Error::Corrupt("short bucket header"))?;
        Ok(Value::Bucket(if root == 0 {
            let page = v
                .get(HEADER..)
                .ok_or(Error::Corrupt("short inline bucket"))?;
            if count(page) > 0 && u16_at(page, 8) != Some(LEAF) {
                return Err(Error::Corrupt("inline bucket is not a leaf"));
            }
            Bucket::Inline(page.to_vec())
        } else {
            Bucket::Paged(root)
        }))
    }

    fn find_in_leaf(page: &[u8], key: &[u8]) -> Result<Option<Value>> {
        for i in 0..count(page) {
            let (flags, k, v) = leaf_element(page, i)?;
            if k == key {
                return value(flags, v).map(Some);
            }
        }
        Ok(None)
    }

    fn leaf_entries(page: &[u8], out: &mut Vec<(Vec<u8>, Value)>) -> Result<()> {
        for i in 0..count(page) {
            if out.len() >= MAX_ENTRIES {
                return Err(Error::Corrupt("bucket too large"));
            }
            let (flags, k, v) = leaf_element(page, i)?;
            out.push((k.to_vec(), value(flags, v)?));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::http::{dechunk, parse_response, Response};
    use super::*;
    use serde_json::json;
    use std::fs;
    use std::os::unix::net::UnixListener;

    const ID: &str = "4d1c0e4f1b3a5e9c8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const ID3: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    const IMAGE_ID: &str = "ce77db7acbb57aa5f5160d01682aaef490ca9091a9fcdadcbe1b2a63223faa47";
    const DIGEST: &str = "sha256:b05da3c8ac7bcb5b328073b8f253448e9ba1f53cba1110d398df0c63522a2131";

    /// Polls `f` until it yields, for up to 5 s.
    fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "timed out waiting"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    // ---- HTTP

    fn complete(raw: &[u8]) -> Response {
        parse_response(raw, false).unwrap().expect("complete")
    }

    #[test]
    fn http_content_length() {
        let raw =
            b"HTTP/1.1 200 OK\r\ncontent-LENGTH: 5\r\nServer: Docker/24.0.7 (linux)\r\n\r\nhello";
        let r = complete(raw);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(r.header("server"), Some("Docker/24.0.7 (linux)"));
        assert_eq!(r.header("Content-Length"), Some("5"));
        // every prefix is incomplete, not an error
        for n in 0..raw.len() {
            assert_eq!(parse_response(&raw[..n], false), Ok(None), "prefix {n}");
        }
        // ...and truncated once the peer has closed
        assert_eq!(
            parse_response(&raw[..raw.len() - 1], true),
            Err(HttpError::Truncated)
        );
        assert_eq!(parse_response(b"", true), Err(HttpError::Truncated));
        // bytes past the length are not the body
        let r = complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhello");
        assert_eq!(r.body, b"he");
    }

    #[test]
    fn http_chunked() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        assert_eq!(complete(raw).body, b"hello, world");
        for n in 0..raw.len() {
            assert_eq!(parse_response(&raw[..n], false), Ok(None), "prefix {n}");
            assert!(
                parse_response(&raw[..n], true).is_err(),
                "prefix {n} at eof"
            );
        }
        // trailers, upper-case hex, a chunk that happens to end in CRLF CRLF
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                    A\r\n0123456789\r\n4\r\n\r\n\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(complete(raw).body, b"0123456789\r\n\r\n");
        assert_eq!(dechunk(b"4\r\n\r\n\r\n\r\n"), Ok(None));
        assert_eq!(dechunk(b"0\r\n\r\n"), Ok(Some(Vec::new())));
    }

    #[test]
    fn http_garbage() {
        let bad = [
            &b"SSH-2.0-OpenSSH_9.2\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\xff\xfe: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n\r\n",
        ];
        for raw in bad {
            assert!(
                matches!(parse_response(raw, true), Err(HttpError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let too_big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(
            parse_response(too_big.as_bytes(), false),
            Err(HttpError::TooLarge)
        );
        let chunk_too_big = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(
            parse_response(chunk_too_big.as_bytes(), true),
            Err(HttpError::TooLarge)
        );
        let endless_head = vec![b'a'; MAX_HEAD + 10];
        assert!(matches!(
            parse_response(&endless_head, false),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn http_body_to_eof_and_bodiless() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\n{\"a\":1}";
        assert_eq!(parse_response(raw, false), Ok(None));
        assert_eq!(
            parse_response(raw, true).unwrap().unwrap().body,
            b"{\"a\":1}"
        );
        let r = complete(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!((r.status, r.body.len()), (204, 0));
        let r = complete(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}");
        assert_eq!(r.status, 404);
    }

    // ---- image references

    #[test]
    fn image_references() {
        assert_eq!(repository("nginx"), "nginx");
        assert_eq!(repository("nginx:1.27"), "nginx");
        assert_eq!(repository("localhost:5000/app:v1"), "localhost:5000/app");
        assert_eq!(repository("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(repository("quay.io/x/y@sha256:abc"), "quay.io/x/y");
        assert_eq!(normalized_repository("nginx:1"), "docker.io/library/nginx");
        assert_eq!(normalized_repository("me/app"), "docker.io/me/app");
        assert_eq!(
            normalized_repository("localhost/ksight:1"),
            "localhost/ksight"
        );
        assert_eq!(normalized_repository("ghcr.io/a/b:c"), "ghcr.io/a/b");
        assert_eq!(pinned_digest("a/b@sha256:12"), Some("sha256:12"));
        assert_eq!(pinned_digest("a/b:1"), None);

        let rds = ["mirror.example.com/nginx@sha256:1111", "nginx@sha256:2222"];
        assert_eq!(
            digest_from_repo_digests(rds, Some("docker.io/library/nginx:1.27")).as_deref(),
            Some("sha256:2222")
        );
        assert_eq!(
            digest_from_repo_digests(rds, Some("other:1")).as_deref(),
            Some("sha256:1111")
        );
        assert_eq!(digest_from_repo_digests(["garbage"], None), None);
    }

    // ---- Docker Engine API mapping

    /// `GET /containers/{id}/json` as docker 24 answers it (abridged from the
    /// Engine API reference's example), for a container of a kubelet pod run by
    /// cri-dockerd.
    fn docker_inspect(id: &str) -> Value {
        json!({
            "Id": id,
            "Created": "2024-05-02T09:12:01.118276455Z",
            "Path": "/docker-entrypoint.sh",
            "Args": ["nginx", "-g", "daemon off;"],
            "State": {"Status": "running", "Running": true, "Pid": 4242, "ExitCode": 0},
            "Image": format!("sha256:{IMAGE_ID}"),
            "Name": "/k8s_web_frontend-7d4b9c_shop_0b8e9c2a_0",
            "RestartCount": 0,
            "Driver": "overlay2",
            "HostConfig": {"NetworkMode": "container:abc", "Privileged": false},
            "Config": {
                "Hostname": "frontend-7d4b9c",
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["nginx", "-g", "daemon off;"],
                "Image": "nginx:1.27",
                "Labels": {
                    "annotation.io.kubernetes.container.hash": "4689db3",
                    "io.kubernetes.container.name": "web",
                    "io.kubernetes.docker.type": "container",
                    "io.kubernetes.pod.name": "frontend-7d4b9c",
                    "io.kubernetes.pod.namespace": "shop",
                    "io.kubernetes.pod.uid": "0b8e9c2a-1f2d-4e5a-9b7c-3d2e1f0a9b8c",
                    "maintainer": "NGINX Docker Maintainers <docker-maint@nginx.com>",
                    "not.a.string": 3
                },
                "StopSignal": "SIGQUIT"
            },
            "NetworkSettings": {"Networks": {}}
        })
    }

    /// `GET /images/{id}/json`, abridged.
    fn docker_image() -> Value {
        json!({
            "Id": format!("sha256:{IMAGE_ID}"),
            "RepoTags": ["nginx:1.27"],
            "RepoDigests": [
                "mirror.example.com/library/nginx@sha256:1111111111111111111111111111111111111111111111111111111111111111",
                format!("nginx@{DIGEST}")
            ],
            "Created": "2024-04-16T21:45:11Z",
            "Architecture": "amd64",
            "Os": "linux",
            "Size": 187694648
        })
    }

    #[test]
    fn docker_inspect_mapping() {
        let mut info = api::from_inspect(ID, &docker_inspect(ID), Runtime::Docker).unwrap();
        assert_eq!(
            info.name.as_deref(),
            Some("k8s_web_frontend-7d4b9c_shop_0b8e9c2a_0")
        );
        assert_eq!(info.image.as_deref(), Some("nginx:1.27"));
        assert_eq!(info.image_digest, None);
        assert_eq!(info.labels.len(), 7, "the non-string label is skipped");
        api::add_image(&mut info, &docker_image());
        assert_eq!(info.image_digest.as_deref(), Some(DIGEST));
        let info = info.finish();
        assert_eq!(
            info.pod,
            Some(Pod {
                name: "frontend-7d4b9c".into(),
                namespace: "shop".into()
            })
        );
        // another container's answer (the API resolves prefixes) is not this one
        assert_eq!(
            api::from_inspect(ID2, &docker_inspect(ID), Runtime::Docker),
            None
        );
        // run by image id: the image's tag names it
        let mut v = docker_inspect(ID);
        v["Config"]["Image"] = json!(format!("sha256:{IMAGE_ID}"));
        v["Config"]["Labels"] = Value::Null;
        let mut info = api::from_inspect(ID, &v, Runtime::Docker).unwrap();
        api::add_image(&mut info, &docker_image());
        assert_eq!(info.image.as_deref(), Some("nginx:1.27"));
        assert_eq!(info.image_digest.as_deref(), Some(DIGEST));
        assert!(info.labels.is_empty());
        // pinned by digest
        v["Config"]["Image"] = json!(format!("nginx@{DIGEST}"));
        let info = api::from_inspect(ID, &v, Runtime::Docker).unwrap();
        assert_eq!(info.image_digest.as_deref(), Some(DIGEST));
        // odd shapes map to nothing rather than fail
        let info =
            api::from_inspect(ID, &json!({"Name": 3, "Config": []}), Runtime::Docker).unwrap();
        assert_eq!((info.name, info.image, info.labels.len()), (None, None, 0));
    }

    /// What podman 4.3.1's compat API answered on this project's test host (abridged).
    fn podman_inspect(id: &str) -> Value {
        json!({
            "Id": id,
            "Created": "2026-12-01T04:53:22.613969174Z",
            "Path": "/bin/sleep",
            "Args": ["100"],
            "State": {"Status": "running", "Running": true, "Pid": 3453},
            "Image": format!("sha256:{IMAGE_ID}"),
            "ResolvConfPath": format!("/run/containers/storage/overlay-containers/{id}/userdata/resolv.conf"),
            "Name": "/probe1",
            "Driver": "overlay",
            "Config": {
                "Hostname": "f576fd423a5e",
                "Env": ["container=podman", "HOSTNAME=f576fd423a5e"],
                "Cmd": ["/bin/sleep", "100"],
                "Image": "localhost/ksight-probe:1",
                "Entrypoint": [],
                "Labels": {"a": "b"},
                "StopSignal": "15"
            }
        })
    }

    #[test]
    fn podman_inspect_mapping() {
        let mut info = api::from_inspect(ID, &podman_inspect(ID), Runtime::Podman).unwrap();
        api::add_image(
            &mut info,
            &json!({"RepoTags": ["localhost/ksight-probe:1"],
                    "RepoDigests": [format!("localhost/ksight-probe@{DIGEST}")]}),
        );
        let info = info.finish();
        assert_eq!(info.name.as_deref(), Some("probe1"));
        assert_eq!(info.image.as_deref(), Some("localhost/ksight-probe:1"));
        assert_eq!(info.image_digest.as_deref(), Some(DIGEST));
        assert_eq!(info.labels, BTreeMap::from([("a".into(), "b".into())]));
        assert_eq!(info.pod, None);
    }

    #[test]
    fn runtime_from_headers() {
        let r = |headers: &[(&str, &str)]| Response {
            status: 200,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        };
        let sock = Path::new("/run/docker.sock");
        let podman_sock = Path::new("/run/podman/podman.sock");
        assert_eq!(
            api::runtime_of(&r(&[("Server", "Libpod/4.3.1 (linux)")]), sock),
            Runtime::Podman
        );
        assert_eq!(
            api::runtime_of(&r(&[("Libpod-Api-Version", "4.3.1")]), sock),
            Runtime::Podman
        );
        assert_eq!(
            api::runtime_of(&r(&[("Server", "Docker/24.0.7 (linux)")]), podman_sock),
            Runtime::Docker
        );
        assert_eq!(api::runtime_of(&r(&[]), podman_sock), Runtime::Podman);
        assert_eq!(api::runtime_of(&r(&[]), sock), Runtime::Docker);
    }

    #[test]
    fn json_shape() {
        let mut info = ContainerInfo::new(ID, Runtime::CriO);
        info.name = Some("web".into());
        info.labels.insert("app".into(), "shop".into());
        assert_eq!(
            serde_json::to_value(&info).unwrap(),
            json!({"id": ID, "name": "web", "image": null, "image_digest": null,
                   "runtime": "cri-o", "labels": {"app": "shop"}})
        );
        info.pod = Some(Pod {
            name: "p".into(),
            namespace: "n".into(),
        });
        info.runtime = Runtime::Containerd;
        let v = serde_json::to_value(&info).unwrap();
        assert_eq!(v["pod"], json!({"name": "p", "namespace": "n"}));
        assert_eq!(v["runtime"], "containerd");
        for r in [
            Runtime::Docker,
            Runtime::Podman,
            Runtime::Containerd,
            Runtime::CriO,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        // empty strings are no value
        let mut info = ContainerInfo::new(ID, Runtime::Docker);
        info.image = Some(String::new());
        assert_eq!(info.finish().image, None);
    }

    // ---- CRI annotations

    /// The annotations containerd's CRI plugin put on a real pod's container
    /// (from a kind cluster's bundle config.json).
    fn containerd_cri_annotations() -> BTreeMap<String, String> {
        [
            ("io.kubernetes.cri.container-name", "bpfman-agent"),
            ("io.kubernetes.cri.container-type", "container"),
            (
                "io.kubernetes.cri.image-name",
                "quay.io/bpfman/bpfman-agent:latest",
            ),
            ("io.kubernetes.cri.sandbox-id", ID2),
            ("io.kubernetes.cri.sandbox-name", "bpfman-daemon-hf5gv"),
            ("io.kubernetes.cri.sandbox-namespace", "bpfman"),
            (
                "io.kubernetes.cri.sandbox-uid",
                "88c00a72-09fa-4f0b-b2e7-185fcaff3b0d",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn containerd_annotation_mapping() {
        let info =
            containerd::from_annotations(ID, Runtime::Containerd, &containerd_cri_annotations());
        assert_eq!(info.name.as_deref(), Some("bpfman-agent"));
        assert_eq!(
            info.image.as_deref(),
            Some("quay.io/bpfman/bpfman-agent:latest")
        );
        assert_eq!(
            info.pod,
            Some(Pod {
                name: "bpfman-daemon-hf5gv".into(),
                namespace: "bpfman".into()
            })
        );
        let sandbox: BTreeMap<String, String> = [
            ("io.kubernetes.cri.container-type", "sandbox"),
            ("io.kubernetes.cri.sandbox-name", "bpfman-daemon-hf5gv"),
            ("io.kubernetes.cri.sandbox-namespace", "bpfman"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let info = containerd::from_annotations(ID, Runtime::Containerd, &sandbox);
        assert_eq!(info.name.as_deref(), Some("POD"));
        assert!(info.pod.is_some());
        let info = containerd::from_annotations(ID, Runtime::Containerd, &BTreeMap::new());
        assert_eq!((info.name, info.image, info.pod), (None, None, None));
    }

    /// A kubelet-made container's annotations as CRI-O writes them (shape from
    /// CRI-O's own and Falco's test data).
    fn crio_annotations() -> BTreeMap<String, String> {
        let labels = json!({
            "io.kubernetes.container.name": "redis",
            "io.kubernetes.pod.name": "podsandbox1",
            "io.kubernetes.pod.namespace": "redhat.test.crio",
            "io.kubernetes.pod.uid": "redhat-test-crio",
            "tier": "backend"
        });
        [
            ("io.container.manager", "cri-o".to_owned()),
            ("io.kubernetes.cri-o.ContainerID", ID.to_owned()),
            ("io.kubernetes.cri-o.ContainerType", "container".to_owned()),
            (
                "io.kubernetes.cri-o.Created",
                "2023-12-12T04:10:25.992573978Z".to_owned(),
            ),
            (
                "io.kubernetes.cri-o.Image",
                "quay.io/crio/redis:alpine".to_owned(),
            ),
            (
                "io.kubernetes.cri-o.ImageName",
                "quay.io/crio/redis:alpine".to_owned(),
            ),
            ("io.kubernetes.cri-o.ImageRef", IMAGE_ID.to_owned()),
            ("io.kubernetes.cri-o.Labels", labels.to_string()),
            (
                "io.kubernetes.cri-o.Metadata",
                "{\"name\":\"redis\",\"attempt\":0}".to_owned(),
            ),
            (
                "io.kubernetes.cri-o.Name",
                "k8s_redis_podsandbox1_redhat.test.crio_redhat-test-crio_0".to_owned(),
            ),
            ("io.kubernetes.cri-o.SandboxID", ID2.to_owned()),
            (
                "io.kubernetes.cri-o.SandboxName",
                "k8s_podsandbox1_redhat.test.crio_redhat-test-crio_1".to_owned(),
            ),
            ("io.kubernetes.cri-o.TTY", "false".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    #[test]
    fn crio_annotation_mapping() {
        let info = crio::from_annotations(ID, &crio_annotations());
        assert_eq!(info.runtime, Runtime::CriO);
        assert_eq!(info.name.as_deref(), Some("redis"));
        assert_eq!(info.image.as_deref(), Some("quay.io/crio/redis:alpine"));
        assert_eq!(info.labels.get("tier").map(String::as_str), Some("backend"));
        assert_eq!(
            info.pod,
            Some(Pod {
                name: "podsandbox1".into(),
                namespace: "redhat.test.crio".into()
            })
        );
        // a sandbox: labels without the pod, which KubeName and Namespace name
        let mut a = crio_annotations();
        a.insert(
            "io.kubernetes.cri-o.Labels".into(),
            "{\"io.kubernetes.container.name\":\"POD\"}".into(),
        );
        a.insert("io.kubernetes.cri-o.KubeName".into(), "podsandbox1".into());
        a.insert("io.kubernetes.cri-o.Namespace".into(), "ns1".into());
        let info = crio::from_annotations(ID, &a);
        assert_eq!(info.name.as_deref(), Some("POD"));
        assert_eq!(
            info.pod.map(|p| (p.name, p.namespace)),
            Some(("podsandbox1".into(), "ns1".into()))
        );
        // garbage JSON in annotations: what is left still maps
        a.insert("io.kubernetes.cri-o.Labels".into(), "{not json".into());
        a.insert("io.kubernetes.cri-o.Metadata".into(), "[1,2".into());
        let info = crio::from_annotations(ID, &a);
        assert!(info.labels.is_empty());
        assert_eq!(info.name, None);
        assert_eq!(info.image.as_deref(), Some("quay.io/crio/redis:alpine"));
    }

    // ---- bbolt

    /// Writes bbolt files, the way bbolt lays them out, for fixtures.
    mod boltw {
        pub const PS: usize = 4096;
        /// (flags, key, value) of a leaf element.
        pub type Elem = (u32, Vec<u8>, Vec<u8>);

        pub fn kv(k: impl AsRef<[u8]>, v: impl AsRef<[u8]>) -> Elem {
            (0, k.as_ref().to_vec(), v.as_ref().to_vec())
        }
        pub fn inline(k: impl AsRef<[u8]>, elems: Vec<Elem>) -> Elem {
            let mut v = vec![0u8; 16];
            v.extend(leaf(0, elems));
            (1, k.as_ref().to_vec(), v)
        }
        pub fn paged(k: impl AsRef<[u8]>, root: u64) -> Elem {
            let mut v = root.to_le_bytes().to_vec();
            v.extend([0u8; 8]);
            (1, k.as_ref().to_vec(), v)
        }
        fn header(id: u64, flags: u16, count: usize) -> Vec<u8> {
            let mut p = id.to_le_bytes().to_vec();
            p.extend(flags.to_le_bytes());
            p.extend((count as u16).to_le_bytes());
            p.extend(0u32.to_le_bytes()); // overflow, set by `file`
            p
        }
        pub fn leaf(id: u64, mut elems: Vec<Elem>) -> Vec<u8> {
            elems.sort_by(|a, b| a.1.cmp(&b.1));
            let mut p = header(id, 0x02, elems.len());
            let base = 16 + elems.len() * 16;
            let mut data: Vec<u8> = Vec::new();
            for (i, (flags, k, v)) in elems.iter().enumerate() {
                let pos = base + data.len() - (16 + i * 16);
                for n in [*flags, pos as u32, k.len() as u32, v.len() as u32] {
                    p.extend(n.to_le_bytes());
                }
                data.extend(k);
                data.extend(v);
            }
            p.extend(data);
            p
        }
        pub fn branch(id: u64, children: &[(&[u8], u64)]) -> Vec<u8> {
            let mut p = header(id, 0x01, children.len());
            let base = 16 + children.len() * 16;
            let mut data: Vec<u8> = Vec::new();
            for (i, (k, child)) in children.iter().enumerate() {
                let pos = base + data.len() - (16 + i * 16);
                p.extend((pos as u32).to_le_bytes());
                p.extend((k.len() as u32).to_le_bytes());
                p.extend(child.to_le_bytes());
                data.extend(*k);
            }
            p.extend(data);
            p
        }
        pub fn meta(id: u64, root: u64, high_water: u64, txid: u64) -> Vec<u8> {
            let mut p = header(id, 0x04, 0);
            let mut m = Vec::new();
            for n in [0xED0C_DAEDu32, 2, PS as u32, 0] {
                m.extend(n.to_le_bytes());
            }
            for n in [root, 0, high_water - 1, high_water, txid] {
                m.extend(n.to_le_bytes());
            }
            m.extend(super::bolt::fnv1a64(&m).to_le_bytes());
            p.extend(m);
            p
        }
        /// Places pages at their ids, setting each one's overflow count.
        pub fn file(pages: Vec<(u64, Vec<u8>)>) -> Vec<u8> {
            let mut out = Vec::new();
            for (id, mut p) in pages {
                let overflow = p.len().div_ceil(PS) - 1;
                p[12..16].copy_from_slice(&(overflow as u32).to_le_bytes());
                let at = id as usize * PS;
                let end = at + (overflow + 1) * PS;
                if out.len() < end {
                    out.resize(end, 0);
                }
                out[at..at + p.len()].copy_from_slice(&p);
            }
            out
        }
    }

    /// A containerd meta.db: v1/k8s.io/{containers/<ID>, images/<name>},
    /// with the containers bucket on its own pages behind a branch page.
    fn containerd_meta_db(image: &str) -> Vec<u8> {
        use boltw::*;
        let container = inline(
            ID,
            vec![
                kv("image", image),
                kv("snapshotter", "overlayfs"),
                inline("runtime", vec![kv("name", "io.containerd.runc.v2")]),
                inline(
                    "labels",
                    vec![
                        kv("io.cri-containerd.kind", "container"),
                        kv("io.kubernetes.container.name", "bpfman-agent"),
                        kv("io.kubernetes.pod.name", "bpfman-daemon-hf5gv"),
                        kv("io.kubernetes.pod.namespace", "bpfman"),
                        kv(
                            "io.kubernetes.pod.uid",
                            "88c00a72-09fa-4f0b-b2e7-185fcaff3b0d",
                        ),
                    ],
                ),
            ],
        );
        // a big spec pushes its leaf into overflow pages
        let other = inline(ID3, vec![kv("spec", vec![7u8; 9000]), kv("image", "x")]);
        let image_b = inline(
            image,
            vec![inline(
                "target",
                vec![
                    kv("digest", DIGEST),
                    kv("mediatype", "application/vnd.oci.image.index.v1+json"),
                ],
            )],
        );
        let ns = inline(
            "k8s.io",
            vec![paged("containers", 5), inline("images", vec![image_b])],
        );
        let ns_moby = inline("moby", vec![inline("containers", vec![])]);
        file(vec![
            (0, meta(0, 3, 10, 4)),
            (1, meta(1, 3, 10, 3)),
            (
                3,
                leaf(
                    3,
                    vec![inline("v1", vec![kv("version", [3u8]), ns, ns_moby])],
                ),
            ),
            (5, branch(5, &[(ID2.as_bytes(), 6), (ID3.as_bytes(), 7)])),
            (6, leaf(6, vec![kv(ID2, "not a bucket"), container])),
            (7, leaf(7, vec![other])),
        ])
    }

    fn write(path: &Path, data: impl AsRef<[u8]>) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    #[test]
    fn bolt_reads_nested_inline_paged_and_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        write(&path, containerd_meta_db("docker.io/library/nginx:1.27"));
        let db = bolt::Db::open(&path).unwrap();
        let rec = containerd::meta_record(&db, Some("k8s.io"), ID)
            .unwrap()
            .unwrap();
        assert_eq!(rec.image.as_deref(), Some("docker.io/library/nginx:1.27"));
        assert_eq!(rec.image_digest.as_deref(), Some(DIGEST));
        assert_eq!(rec.labels.len(), 5);
        assert_eq!(rec.labels["io.kubernetes.pod.namespace"], "bpfman");
        // without a namespace every one is searched
        let rec = containerd::meta_record(&db, None, ID).unwrap().unwrap();
        assert_eq!(rec.namespace, "k8s.io");
        // the overflowing leaf
        let v1 = db.bucket(&db.root(), b"v1").unwrap().unwrap();
        let ns = db.bucket(&v1, b"k8s.io").unwrap().unwrap();
        let containers = db.bucket(&ns, b"containers").unwrap().unwrap();
        let other = db.bucket(&containers, ID3.as_bytes()).unwrap().unwrap();
        assert_eq!(
            db.get(&other, b"spec").unwrap(),
            Some(bolt::Value::Bytes(vec![7u8; 9000]))
        );
        assert_eq!(db.entries(&containers).unwrap().len(), 3);
        // a value is not a bucket, absent keys are absent
        assert_eq!(db.bucket(&containers, ID2.as_bytes()).unwrap(), None);
        assert_eq!(db.get(&containers, b"zzz").unwrap(), None);
        assert_eq!(db.get(&containers, b"").unwrap(), None);
        assert!(containerd::meta_record(&db, Some("moby"), ID)
            .unwrap()
            .is_none());
        assert!(containerd::meta_record(&db, None, ID2).unwrap().is_none());
    }

    #[test]
    fn bolt_meta_pages() {
        use boltw::*;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let old = leaf(2, vec![kv("k", "old")]);
        let new = leaf(3, vec![kv("k", "new")]);
        let get = |bytes: Vec<u8>| -> Option<bolt::Value> {
            write(&path, bytes);
            let db = bolt::Db::open(&path).ok()?;
            db.get(&db.root(), b"k").unwrap()
        };
        let newer = |v: &str| Some(bolt::Value::Bytes(v.into()));
        // the larger txid wins, whichever page holds it
        let pages = |m0: Vec<u8>, m1: Vec<u8>| {
            file(vec![(0, m0), (1, m1), (2, old.clone()), (3, new.clone())])
        };
        assert_eq!(get(pages(meta(0, 2, 4, 7), meta(1, 3, 4, 8))), newer("new"));
        assert_eq!(get(pages(meta(0, 3, 4, 9), meta(1, 2, 4, 8))), newer("new"));
        // a torn (bad checksum) newest meta page: the other one
        let mut torn = meta(1, 3, 4, 8);
        torn[40] ^= 1;
        assert_eq!(get(pages(meta(0, 2, 4, 7), torn.clone())), newer("old"));
        // page 0 torn too: nothing valid
        let mut torn0 = meta(0, 2, 4, 7);
        torn0[20] ^= 1;
        assert_eq!(get(pages(torn0.clone(), torn)), None);
        // page 0 torn, page 1 found at the default page size
        assert_eq!(get(pages(torn0, meta(1, 3, 4, 8))), newer("new"));
        // not a bolt file at all, empty, missing
        assert!(bolt::Db::open(Path::new("/nonexistent/ksight.db")).is_err());
        write(&path, b"");
        assert!(bolt::Db::open(&path).is_err());
        write(&path, vec![b'x'; 20000]);
        assert!(bolt::Db::open(&path).is_err());
    }

    #[test]
    fn bolt_corruption_is_an_error_not_a_hang() {
        use boltw::*;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        // a branch page that points at itself
        write(
            &path,
            file(vec![
                (0, meta(0, 2, 3, 1)),
                (1, meta(1, 2, 3, 0)),
                (2, branch(2, &[(b"a", 2)])),
            ]),
        );
        let db = bolt::Db::open(&path).unwrap();
        assert!(db.get(&db.root(), b"a").is_err());
        assert!(db.entries(&db.root()).is_err());
        // a child beyond the high water mark, a root that is a meta page
        write(
            &path,
            file(vec![
                (0, meta(0, 2, 3, 1)),
                (1, meta(1, 2, 3, 0)),
                (2, branch(2, &[(b"a", 99)])),
            ]),
        );
        let db = bolt::Db::open(&path).unwrap();
        assert!(db.get(&db.root(), b"a").is_err());
        write(
            &path,
            file(vec![(0, meta(0, 1, 3, 1)), (1, meta(1, 1, 3, 0))]),
        );
        let db = bolt::Db::open(&path).unwrap();
        assert!(db.get(&db.root(), b"a").is_err());
        // an element whose key runs off the page
        let mut bad = leaf(2, vec![kv("key", "value")]);
        bad[16 + 8..16 + 12].copy_from_slice(&100_000u32.to_le_bytes());
        write(
            &path,
            file(vec![(0, meta(0, 2, 3, 1)), (1, meta(1, 2, 3, 0)), (2, bad)]),
        );
        let db = bolt::Db::open(&path).unwrap();
        assert!(db.get(&db.root(), b"key").is_err());
        // a page claiming more overflow than the file has
        let mut bad = leaf(2, vec![kv("key", "value")]);
        bad[12..16].copy_from_slice(&5u32.to_le_bytes());
        let mut bytes = file(vec![(0, meta(0, 2, 3, 1)), (1, meta(1, 2, 3, 0))]);
        bytes.extend(&bad);
        bytes.resize(3 * PS, 0);
        write(&path, bytes);
        let db = bolt::Db::open(&path).unwrap();
        assert!(db.get(&db.root(), b"key").is_err());
    }

    /// Random damage to a valid file never panics, and reading ends.
    #[test]
    fn bolt_mutations_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let good = containerd_meta_db("img");
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut readable = 0;
        for _ in 0..1500 {
            let mut bytes = good.clone();
            for _ in 0..1 + rand() % 8 {
                let at = (rand() % bytes.len() as u64) as usize;
                // mostly page headers and element tables, where damage bites
                let at = if rand() % 2 == 0 {
                    at / boltw::PS * boltw::PS + at % 64
                } else {
                    at
                };
                bytes[at] = rand() as u8;
            }
            if rand() % 10 == 0 {
                bytes.truncate((rand() % bytes.len() as u64) as usize);
            }
            write(&path, &bytes);
            if let Ok(db) = bolt::Db::open(&path) {
                if containerd::meta_record(&db, None, ID).is_ok() {
                    readable += 1;
                }
            }
        }
        assert!(readable > 0, "some damage misses what is read");
    }

    // ---- fixture trees, through the resolver

    fn resolve_in(root: &Path, id: &str) -> Option<Arc<ContainerInfo>> {
        let r = ContainerResolver::new(RuntimeConfig::files_only(root));
        assert_eq!(r.lookup(id), None);
        wait_for(|| {
            let s = r.stats();
            (s.resolved + s.failed > 0).then_some(())
        });
        let info = r.lookup(id);
        assert_eq!(r.stats().errors, 0, "{:?}", r.stats());
        info
    }

    #[test]
    fn files_containerd_cri() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let bundle = root
            .join("run/containerd/io.containerd.runtime.v2.task/k8s.io")
            .join(ID);
        let spec = json!({"ociVersion": "1.1.0", "process": {"args": ["/bpfman-agent"]},
                          "annotations": containerd_cri_annotations()});
        write(&bundle.join("config.json"), spec.to_string());
        write(
            &root.join("var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db"),
            containerd_meta_db("quay.io/bpfman/bpfman-agent:latest"),
        );
        let info = resolve_in(root, ID).unwrap();
        assert_eq!(info.runtime, Runtime::Containerd);
        assert_eq!(info.name.as_deref(), Some("bpfman-agent"));
        assert_eq!(
            info.image.as_deref(),
            Some("quay.io/bpfman/bpfman-agent:latest")
        );
        assert_eq!(info.image_digest.as_deref(), Some(DIGEST));
        assert_eq!(info.labels["io.cri-containerd.kind"], "container");
        assert_eq!(
            info.pod
                .as_ref()
                .map(|p| (p.name.as_str(), p.namespace.as_str())),
            Some(("bpfman-daemon-hf5gv", "bpfman"))
        );

        // Without meta.db: the bundle alone, kubelet's labels from its annotations.
        fs::remove_file(root.join("var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db"))
            .unwrap();
        let info = resolve_in(root, ID).unwrap();
        assert_eq!(info.image_digest, None);
        assert_eq!(info.labels[POD_NAME], "bpfman-daemon-hf5gv");
        assert_eq!(info.labels[POD_NAMESPACE], "bpfman");
        assert_eq!(info.labels[K8S_CONTAINER_NAME], "bpfman-agent");
        assert_eq!(info.labels[POD_UID], "88c00a72-09fa-4f0b-b2e7-185fcaff3b0d");

        // docker's containerd namespace
        let moby = root
            .join("run/containerd/io.containerd.runtime.v2.task/moby")
            .join(ID2);
        write(&moby.join("config.json"), r#"{"annotations": {}}"#);
        assert_eq!(resolve_in(root, ID2).unwrap().runtime, Runtime::Docker);
        assert_eq!(resolve_in(root, ID3), None);
    }

    #[test]
    fn files_containerd_corrupt_meta_db_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let bundle = root
            .join("run/containerd/io.containerd.runtime.v2.task/k8s.io")
            .join(ID);
        write(
            &bundle.join("config.json"),
            json!({"annotations": containerd_cri_annotations()}).to_string(),
        );
        write(
            &root.join("var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db"),
            b"garbage",
        );
        let r = ContainerResolver::new(RuntimeConfig::files_only(root));
        r.lookup(ID);
        let info = wait_for(|| r.lookup(ID));
        assert_eq!(info.name.as_deref(), Some("bpfman-agent"));
        assert_eq!(r.stats().errors, 1);
    }

    fn storage_fixture(root: &Path, id: &str, annotations: Value, names: &[&str]) {
        let graph = root.join("var/lib/containers/storage");
        let meta = json!({"image-name": "localhost/ksight-probe:1", "image-id": IMAGE_ID,
                          "name": names.first(), "created-at": 1796100802})
        .to_string();
        write(
            &graph.join("overlay-containers/containers.json"),
            json!([{"id": ID3, "names": ["other"], "image": ID3},
                   {"id": id, "names": names, "image": IMAGE_ID, "layer": "6ac53a60",
                    "metadata": meta, "created": "2026-12-01T04:53:22.616330125Z",
                    "flags": {"MountLabel": "", "ProcessLabel": ""}}])
            .to_string(),
        );
        write(
            &graph.join("overlay-images/images.json"),
            json!([{"id": IMAGE_ID, "digest": DIGEST, "names": ["localhost/ksight-probe:1"],
                    "layer": "e0fa4a6e", "metadata": "{}"}])
            .to_string(),
        );
        let spec = json!({"ociVersion": "1.0.2-dev", "annotations": annotations});
        write(
            &root
                .join("run/containers/storage/overlay-containers")
                .join(id)
                .join("userdata/config.json"),
            spec.to_string(),
        );
    }

    #[test]
    fn files_podman() {
        use boltw::*;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        storage_fixture(
            root,
            ID,
            json!({"io.container.manager": "libpod", "io.kubernetes.cri-o.Created": "x",
                   "io.kubernetes.cri-o.TTY": "false", "org.opencontainers.image.stopSignal": "15"}),
            &["probe1"],
        );
        // without podman's database: names and image, no labels
        let info = resolve_in(root, ID).unwrap();
        assert_eq!(info.runtime, Runtime::Podman);
        assert_eq!(info.name.as_deref(), Some("probe1"));
        assert_eq!(info.image.as_deref(), Some("localhost/ksight-probe:1"));
        assert_eq!(info.image_digest.as_deref(), Some(DIGEST));
        assert!(info.labels.is_empty());

        let config = json!({"id": ID, "name": "probe1", "rootfsImageID": IMAGE_ID,
                            "rootfsImageName": "localhost/ksight-probe:1",
                            "labels": {"a": "b", "io.kubernetes.pod.name": "p",
                                       "io.kubernetes.pod.namespace": "n"}});
        let db = file(vec![
            (0, meta(0, 2, 3, 1)),
            (1, meta(1, 2, 3, 0)),
            (
                2,
                leaf(
                    2,
                    vec![
                        inline(
                            "ctr",
                            vec![inline(
                                ID,
                                vec![kv("config", config.to_string()), kv("state", "{}")],
                            )],
                        ),
                        inline("id-registry", vec![kv(ID, "probe1")]),
                    ],
                ),
            ),
        ]);
        write(
            &root.join("var/lib/containers/storage/libpod/bolt_state.db"),
            db,
        );
        let info = resolve_in(root, ID).unwrap();
        assert_eq!(info.labels.len(), 3);
        assert_eq!(info.labels["a"], "b");
        assert_eq!(info.pod.as_ref().map(|p| p.name.as_str()), Some("p"));
    }

    #[test]
    fn files_crio() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        storage_fixture(
            root,
            ID,
            json!(crio_annotations()),
            &["k8s_redis_podsandbox1"],
        );
        let info = resolve_in(root, ID).unwrap();
        assert_eq!(info.runtime, Runtime::CriO);
        assert_eq!(info.name.as_deref(), Some("redis"));
        assert_eq!(info.image.as_deref(), Some("quay.io/crio/redis:alpine"));
        // the ImageRef annotation is the image id, whose digest images.json has
        assert_eq!(info.image_digest.as_deref(), Some(DIGEST));
        assert_eq!(
            info.pod.as_ref().map(|p| p.namespace.as_str()),
            Some("redhat.test.crio")
        );
    }

    #[test]
    fn files_docker() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let docker = root.join("var/lib/docker");
        write(
            &docker.join("containers").join(ID).join("config.v2.json"),
            docker_inspect(ID).to_string(),
        );
        write(
            &docker.join("image/overlay2/repositories.json"),
            json!({"Repositories": {"nginx": {
                "nginx:1.27": format!("sha256:{IMAGE_ID}"),
                format!("nginx@{DIGEST}"): format!("sha256:{IMAGE_ID}"),
                "nginx@sha256:9999": "sha256:another"}}})
            .to_string(),
        );
        // docker runs it in containerd's moby namespace too, where it has no name
        let moby = root
            .join("run/containerd/io.containerd.runtime.v2.task/moby")
            .join(ID);
        write(&moby.join("config.json"), r#"{"annotations": {}}"#);
        let info = resolve_in(root, ID).unwrap();
        assert_eq!(info.runtime, Runtime::Docker);
        assert_eq!(
            info.name.as_deref(),
            Some("k8s_web_frontend-7d4b9c_shop_0b8e9c2a_0")
        );
        assert_eq!(info.image_digest.as_deref(), Some(DIGEST));
        assert_eq!(
            info.pod.as_ref().map(|p| p.name.as_str()),
            Some("frontend-7d4b9c")
        );
    }

    #[test]
    fn files_malformed_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            &root.join("var/lib/containers/storage/overlay-containers/containers.json"),
            b"[{\"id\": ",
        );
        write(
            &root
                .join("var/lib/docker/containers")
                .join(ID)
                .join("config.v2.json"),
            b"\xff\xfe",
        );
        let r = ContainerResolver::new(RuntimeConfig::files_only(root));
        r.lookup(ID);
        wait_for(|| (r.stats().failed == 1).then_some(()));
        assert_eq!(r.stats().errors, 2);
        assert_eq!(r.lookup(ID), None);
    }

    // ---- the cache

    fn info(id: &str) -> Arc<ContainerInfo> {
        Arc::new(ContainerInfo::new(id, Runtime::Docker))
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut lru = Lru::new(2);
        assert_eq!(lru.insert(info("a")), 0);
        assert_eq!(lru.insert(info("b")), 0);
        assert!(lru.get("a").is_some()); // b is now the oldest
        assert_eq!(lru.insert(info("c")), 1);
        assert!(lru.get("b").is_none());
        assert!(lru.get("a").is_some() && lru.get("c").is_some());
        // replacing an entry evicts nothing
        assert_eq!(lru.insert(info("c")), 0);
        assert_eq!((lru.len(), lru.order.len()), (2, 2));
        assert_eq!(lru.insert(info("d")), 1);
        assert!(lru.get("a").is_none(), "a was used before c");
        assert_eq!(Lru::new(0).insert(info("x")), 0);
    }

    #[test]
    fn resolver_cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for id in [ID, ID2, ID3] {
            write(
                &root
                    .join("var/lib/docker/containers")
                    .join(id)
                    .join("config.v2.json"),
                docker_inspect(id).to_string(),
            );
        }
        let r = ContainerResolver::new(RuntimeConfig {
            capacity: 2,
            ..RuntimeConfig::files_only(root)
        });
        for id in [ID, ID2] {
            r.lookup(id);
            wait_for(|| r.lookup(id));
        }
        r.lookup(ID); // ID2 is the least recently used
        r.lookup(ID3);
        wait_for(|| r.lookup(ID3));
        assert_eq!((r.cached(), r.stats().evicted), (2, 1));
        // not taken, the announcements are bounded too: the oldest went
        let resolved: Vec<_> = r.take_resolved().iter().map(|i| i.id.to_string()).collect();
        assert_eq!(resolved, [ID2, ID3]);
        assert!(r.take_resolved().is_empty(), "announced once");
        assert!(r.lookup(ID).is_some());
        assert!(r.lookup(ID2).is_none(), "evicted, asked again");
        let again = wait_for(|| r.lookup(ID2));
        assert_eq!(r.take_resolved(), [again]);
    }

    #[test]
    fn negative_cache_then_retry() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let r = ContainerResolver::new(RuntimeConfig {
            retry_after: Duration::from_millis(300),
            ..RuntimeConfig::files_only(root)
        });
        assert_eq!(r.lookup(ID), None);
        wait_for(|| (r.stats().failed == 1).then_some(()));
        // the container appears; within retry_after it is not asked for
        write(
            &root
                .join("var/lib/docker/containers")
                .join(ID)
                .join("config.v2.json"),
            docker_inspect(ID).to_string(),
        );
        for _ in 0..100 {
            assert_eq!(r.lookup(ID), None);
        }
        assert_eq!(r.stats().queued, 1);
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(r.lookup(ID), None);
        let info = wait_for(|| r.lookup(ID));
        assert_eq!(info.image.as_deref(), Some("nginx:1.27"));
        let s = r.stats();
        assert_eq!((s.queued, s.failed, s.resolved), (2, 1, 1));
    }

    #[test]
    fn resolver_is_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<ContainerResolver>();
        shareable::<Arc<ContainerInfo>>();
    }

    #[test]
    fn invalid_ids_are_never_asked_for() {
        let r = ContainerResolver::new(RuntimeConfig::files_only("/nonexistent"));
        for id in [
            "",
            "../../etc/passwd",
            "a/b",
            ".hidden",
            "a b",
            &"a".repeat(129),
        ] {
            assert_eq!(r.lookup(id), None, "{id}");
        }
        assert_eq!(r.stats().queued, 0);
        assert!(valid_id(ID) && valid_id("my-container_1.x"));
    }

    // ---- a fake Engine API on a real unix socket

    struct FakeApi {
        socket: PathBuf,
        /// Request lines received, e.g. `GET /containers/x/json HTTP/1.1`.
        requests: Arc<Mutex<Vec<String>>>,
        _dir: tempfile::TempDir,
    }

    /// Serves each connection on its own thread: reads the request head, then
    /// hands the request path and the stream to `answer`.
    fn fake_api(answer: impl Fn(&str, &mut UnixStream) + Send + Sync + 'static) -> FakeApi {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (seen, answer) = (Arc::clone(&seen), Arc::clone(&answer));
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut b).unwrap_or(0) == 1 {
                        head.push(b[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let line = head.lines().next().unwrap_or("").to_owned();
                    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                    seen.lock().unwrap().push(line);
                    answer(&path, &mut stream);
                });
            }
        });
        FakeApi {
            socket,
            requests,
            _dir: dir,
        }
    }

    fn chunked(body: &str) -> String {
        let (a, b) = body.split_at(body.len() / 2);
        format!("{:x}\r\n{a}\r\n{:X}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len())
    }

    /// Answers like docker 24: the container chunked, the image with a length.
    fn docker_daemon(path: &str, s: &mut UnixStream) {
        let head = "HTTP/1.1 200 OK\r\nApi-Version: 1.43\r\nContent-Type: application/json\r\n\
                    Docker-Experimental: false\r\nServer: Docker/24.0.7 (linux)\r\n";
        let reply = if path == format!("/containers/{ID}/json") {
            let body = docker_inspect(ID).to_string();
            format!("{head}Transfer-Encoding: chunked\r\n\r\n{}", chunked(&body))
        } else if path == format!("/images/sha256:{IMAGE_ID}/json") {
            let body = docker_image().to_string();
            format!("{head}Content-Length: {}\r\n\r\n{body}", body.len())
        } else {
            let body = format!("{{\"message\":\"No such container: {path}\"}}\n");
            format!(
                "HTTP/1.1 404 Not Found\r\nServer: Docker/24.0.7 (linux)\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let _ = s.write_all(reply.as_bytes());
    }

    #[test]
    fn api_end_to_end_and_dedup() {
        let api = fake_api(docker_daemon);
        let r = ContainerResolver::new(RuntimeConfig::api_only(vec![
            PathBuf::from("/nonexistent/docker.sock"),
            api.socket.clone(),
        ]));
        for _ in 0..200 {
            assert_eq!(r.lookup(ID), None);
            if r.stats().resolved == 1 {
                break;
            }
        }
        let info = wait_for(|| r.lookup(ID));
        assert_eq!(info.runtime, Runtime::Docker);
        assert_eq!(
            info.name.as_deref(),
            Some("k8s_web_frontend-7d4b9c_shop_0b8e9c2a_0")
        );
        assert_eq!(info.image.as_deref(), Some("nginx:1.27"));
        assert_eq!(info.image_digest.as_deref(), Some(DIGEST));
        assert_eq!(info.labels["io.kubernetes.container.name"], "web");
        assert_eq!(
            info.pod.as_ref().map(|p| p.namespace.as_str()),
            Some("shop")
        );
        // one request per id however many lookups
        let requests = api.requests.lock().unwrap().clone();
        assert_eq!(
            requests,
            [
                format!("GET /containers/{ID}/json HTTP/1.1"),
                format!("GET /images/sha256:{IMAGE_ID}/json HTTP/1.1")
            ]
        );
        let s = r.stats();
        assert_eq!((s.queued, s.resolved, s.failed, s.errors), (1, 1, 0, 0));
        assert!(s.hits >= 1);
        // unknown to the daemon: a 404 is a miss, not an error
        r.lookup(ID2);
        wait_for(|| (r.stats().failed == 1).then_some(()));
        assert_eq!(r.stats().errors, 0);
        assert_eq!(r.take_resolved().len(), 1);
    }

    #[test]
    fn api_never_answering_does_not_block_lookups() {
        let api = fake_api(|_, _| std::thread::sleep(Duration::from_secs(30)));
        let timeout = Duration::from_millis(400);
        let r = ContainerResolver::new(RuntimeConfig {
            timeout,
            ..RuntimeConfig::api_only(vec![api.socket.clone()])
        });
        let start = Instant::now();
        let mut slowest = Duration::ZERO;
        let mut calls = 0;
        while r.stats().failed == 0 {
            let t = Instant::now();
            assert_eq!(r.lookup(ID), None);
            slowest = slowest.max(t.elapsed());
            calls += 1;
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the deadline did not hold"
            );
        }
        let waited = start.elapsed();
        assert!(waited >= timeout, "failed after {waited:?}");
        assert!(
            slowest < Duration::from_millis(50),
            "a lookup took {slowest:?}"
        );
        assert!(calls > 100);
        let s = r.stats();
        assert_eq!((s.queued, s.failed, s.errors), (1, 1, 1));
        assert_eq!(api.requests.lock().unwrap().len(), 1);

        // dropping the resolver mid-request ends within the deadline
        r.lookup(ID2);
        wait_for(|| (api.requests.lock().unwrap().len() == 2).then_some(()));
        let t = Instant::now();
        drop(r);
        assert!(
            t.elapsed() < timeout + Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
    }

    fn get(api: &FakeApi, timeout: Duration) -> Result<Response, HttpError> {
        http::get(&api.socket, "/containers/x/json", timeout)
    }

    #[test]
    fn api_misbehaving_servers() {
        let timeout = Duration::from_millis(500);
        // closes mid-body
        let api = fake_api(|_, s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"Id\":");
        });
        assert_eq!(get(&api, timeout), Err(HttpError::Truncated));
        // closes without a word
        let api = fake_api(|_, _| {});
        assert_eq!(get(&api, timeout), Err(HttpError::Truncated));
        // trickles for 3 s: the deadline is for the whole response
        let api = fake_api(|_, s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            for _ in 0..150 {
                let _ = s.write_all(b"1\r\nx\r\n");
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let t = Instant::now();
        assert_eq!(get(&api, timeout), Err(HttpError::Timeout));
        assert!(t.elapsed() < timeout + Duration::from_millis(200));
        // never stops: capped
        let api = fake_api(|_, s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            let junk = vec![b'x'; 1 << 20];
            while s.write_all(&junk).is_ok() {}
        });
        assert_eq!(get(&api, Duration::from_secs(5)), Err(HttpError::TooLarge));
        // garbage
        let api = fake_api(|_, s| {
            let _ = s.write_all(b"\x00\x01\x02 hello\r\n\r\n");
        });
        assert!(matches!(get(&api, timeout), Err(HttpError::Malformed(_))));
        // nothing listening
        let e = http::get(Path::new("/nonexistent/api.sock"), "/", timeout);
        assert_eq!(e, Err(HttpError::Io(io::ErrorKind::NotFound)));

        // through the resolver: a garbled answer is an error, and a failure
        let api = fake_api(|_, s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"Id\": [}");
        });
        let r = ContainerResolver::new(RuntimeConfig::api_only(vec![api.socket.clone()]));
        r.lookup(ID);
        wait_for(|| (r.stats().failed == 1).then_some(()));
        assert_eq!(r.stats().errors, 1);
        // a 500 too
        let api = fake_api(|_, s| {
            let _ = s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
        });
        let r = ContainerResolver::new(RuntimeConfig::api_only(vec![api.socket.clone()]));
        r.lookup(ID);
        wait_for(|| (r.stats().failed == 1).then_some(()));
        assert_eq!(r.stats().errors, 1);
    }

    #[test]
    fn api_image_failure_keeps_the_container() {
        let api = fake_api(|path, s| {
            if path.starts_with("/containers/") {
                let body = podman_inspect(ID).to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nServer: Libpod/4.3.1 (linux)\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes());
            } else {
                let _ =
                    s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let r = ContainerResolver::new(RuntimeConfig::api_only(vec![api.socket.clone()]));
        r.lookup(ID);
        let info = wait_for(|| r.lookup(ID));
        assert_eq!(info.runtime, Runtime::Podman);
        assert_eq!(info.name.as_deref(), Some("probe1"));
        assert_eq!(info.image_digest, None);
        assert_eq!(r.stats().errors, 1);
    }
}
