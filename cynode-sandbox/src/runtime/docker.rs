//! [`SandboxRuntime`] over the Docker Engine API (bollard): Docker, or Podman's API
//! service.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions,
    KillContainerOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptions,
};
use futures::StreamExt;

use super::attach::{self, Io};
use super::{
    ContainerId, ContainerSpec, ContainerSummary, ExitStatus, ImageInfo, LABEL_OWNER, LABEL_ROLE,
    OutputStream, ProgressFn, PullProgress, ROLE_SANDBOX, SandboxRuntime, Signal,
};
use crate::artifacts;
use crate::config::{ArtifactLimits, DockerConfig};
use crate::error::{Error, Result};
use crate::result::ArtifactSet;

/// The reference runtime: a Docker-API engine reached over a Unix socket or TCP.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    name: String,
    /// Where to open raw connections (see [`DockerRuntime::get_json`]).
    endpoint: Endpoint,
    timeout: Duration,
}

#[derive(Debug, Clone)]
enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl DockerRuntime {
    /// Connects to the engine, negotiates the API version and checks that it answers.
    pub async fn connect(config: &DockerConfig) -> Result<Self> {
        let timeout = config.request_timeout_secs.max(1);
        let host = config.host.as_str();
        let endpoint = if let Some(path) = host.strip_prefix("unix://") {
            Endpoint::Unix(PathBuf::from(path))
        } else {
            let rest = host
                .trim_start_matches("tcp://")
                .trim_start_matches("http://");
            Endpoint::Tcp(rest.trim_end_matches('/').to_string())
        };
        let docker = if let Some(path) = host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, timeout, bollard::API_DEFAULT_VERSION)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Docker::connect_with_http(host, timeout, bollard::API_DEFAULT_VERSION)
        } else {
            return Err(Error::invalid(format!(
                "docker host {host:?}: expected unix://, tcp:// or http://"
            )));
        }
        .map_err(|e| unavailable(format!("connect to {host}"), e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unavailable(format!("connect to {host}"), e))?;
        let version = docker
            .version()
            .await
            .map_err(|e| map_err("query engine version", e))?;
        let is_podman = version
            .components
            .unwrap_or_default()
            .iter()
            .any(|c| c.name.to_ascii_lowercase().contains("podman"));
        let name = if is_podman { "podman" } else { "docker" }.to_string();
        Ok(Self {
            docker,
            name,
            endpoint,
            timeout: Duration::from_secs(timeout),
        })
    }

    /// A GET answered with JSON, decoded loosely. Used where bollard's strict models
    /// reject values that compatible engines send (Podman reports container states such
    /// as `stopped` that the Docker schema does not list).
    /// Opens a new connection to the engine.
    async fn open(&self) -> Result<Box<dyn Io>> {
        let io_err = |e: std::io::Error| Error::Unavailable {
            message: "connect to the container engine".into(),
            source: Some(Box::new(e)),
        };
        let fut = async {
            Ok::<Box<dyn Io>, Error>(match &self.endpoint {
                Endpoint::Unix(path) => Box::new(
                    tokio::net::UnixStream::connect(path)
                        .await
                        .map_err(io_err)?,
                ),
                Endpoint::Tcp(addr) => {
                    Box::new(tokio::net::TcpStream::connect(addr).await.map_err(io_err)?)
                }
            })
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| Error::Unavailable {
                message: "connect to the container engine: timed out".into(),
                source: None,
            })?
    }

    fn versioned(&self, path: &str) -> String {
        let v = self.docker.client_version();
        format!("/v{}.{}{path}", v.major_version, v.minor_version)
    }

    /// A GET answered with JSON, decoded loosely. Used where bollard's strict models
    /// reject values that compatible engines send (Podman reports container states such
    /// as `stopped` that the Docker schema does not list).
    async fn get_json(&self, path_and_query: &str) -> Result<serde_json::Value> {
        use http_body_util::BodyExt;
        use hyper_util::rt::TokioIo;

        let uri = self.versioned(path_and_query);
        let op = "query engine";
        let fut = async {
            let req = hyper::Request::get(&uri)
                .header(hyper::header::HOST, "localhost")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .map_err(|e| Error::internal(format!("build request: {e}")))?;
            let hyper_err = |e: hyper::Error| Error::Unavailable {
                message: format!("{op}: request"),
                source: Some(Box::new(e)),
            };
            let io = self.open().await?;
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .map_err(hyper_err)?;
            tokio::spawn(conn);
            let resp = tx.send_request(req).await.map_err(hyper_err)?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), 64 << 20)
                .collect()
                .await
                .map_err(|e| Error::Unavailable {
                    message: format!("{op}: read answer"),
                    source: Some(e),
                })?
                .to_bytes();
            if !status.is_success() {
                return Err(Error::Runtime {
                    message: format!("{op}: engine answered {}", status.as_u16()),
                    source: Some(String::from_utf8_lossy(&body).into_owned().into()),
                });
            }
            serde_json::from_slice(&body).map_err(|e| Error::Runtime {
                message: format!("{op}: answer is not JSON"),
                source: Some(Box::new(e)),
            })
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| Error::Unavailable {
                message: format!("{op}: no answer within {}s", self.timeout.as_secs()),
                source: None,
            })?
    }

    async fn host_path_of(&self, id: &ContainerId, container_path: &str) -> Result<PathBuf> {
        let info = self
            .docker
            .inspect_container(&id.0, None::<InspectContainerOptions>)
            .await
            .map_err(|e| not_found_or("container", id, "inspect container", e))?;
        host_path_in_mounts(
            info.mounts
                .unwrap_or_default()
                .iter()
                .filter_map(|m| Some((m.source.as_deref()?, m.destination.as_deref()?))),
            container_path,
        )
        .ok_or_else(|| Error::Runtime {
            message: format!("{container_path} is not on a host mount of container {id}"),
            source: None,
        })
    }
}

/// Host path of `container_path` given `(source, destination)` bind mounts: the mount
/// with the longest destination that contains the path wins.
fn host_path_in_mounts<'a>(
    mounts: impl Iterator<Item = (&'a str, &'a str)>,
    container_path: &str,
) -> Option<PathBuf> {
    let mut best: Option<(usize, PathBuf)> = None;
    for (source, dest) in mounts {
        let dest = dest.trim_end_matches('/');
        let rest = if container_path == dest {
            Some("")
        } else {
            container_path
                .strip_prefix(dest)
                .and_then(|r| r.strip_prefix('/'))
        };
        if let Some(rest) = rest
            && best.as_ref().is_none_or(|(len, _)| dest.len() > *len)
        {
            let mut p = PathBuf::from(source);
            if !rest.is_empty() {
                p.push(rest);
            }
            best = Some((dest.len(), p));
        }
    }
    best.map(|(_, p)| p)
}

fn is_connection_error(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::RequestTimeoutError
            | BollardError::HyperResponseError { .. }
            | BollardError::HyperLegacyError { .. }
            | BollardError::IOError { .. }
            | BollardError::SocketNotFoundError(_)
            | BollardError::HttpClientError { .. }
    )
}

fn unavailable(message: String, e: BollardError) -> Error {
    Error::Unavailable {
        message,
        source: Some(Box::new(e)),
    }
}

/// Maps a bollard error: connection problems are retryable, the rest are runtime errors
/// whose message names the operation and status code (the engine's text stays in
/// `source`).
fn map_err(op: &str, e: BollardError) -> Error {
    if is_connection_error(&e) {
        return unavailable(op.to_string(), e);
    }
    let message = match &e {
        BollardError::DockerResponseServerError { status_code, .. } => {
            format!("{op}: engine answered {status_code}")
        }
        _ => format!("{op} failed"),
    };
    Error::Runtime {
        message,
        source: Some(Box::new(e)),
    }
}

fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn not_found_or(what: &'static str, id: &ContainerId, op: &str, e: BollardError) -> Error {
    if status_of(&e) == Some(404) {
        Error::NotFound {
            what,
            id: id.0.clone(),
        }
    } else {
        map_err(op, e)
    }
}

/// The engine's own words, shortened, for messages where they are the useful part
/// (image pulls).
fn reason_of(e: &BollardError) -> String {
    let text = match e {
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        BollardError::DockerStreamError { error } => error.clone(),
        BollardError::RequestTimeoutError => "the engine did not answer in time".into(),
        other => other.to_string(),
    };
    let mut text: String = text.chars().filter(|c| !c.is_control()).collect();
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

fn build_create_body(spec: &ContainerSpec) -> Result<ContainerCreateBody> {
    let mut binds = Vec::with_capacity(spec.mounts.len());
    for m in &spec.mounts {
        let host = m.host_path.to_str().filter(|h| !h.contains([':', ',']));
        let Some(host) = host else {
            return Err(Error::invalid(format!(
                "mount source {} must be UTF-8 without ':' or ','",
                m.host_path.display()
            )));
        };
        let mut opts = if m.read_only {
            "ro".to_string()
        } else {
            "rw".to_string()
        };
        if spec.selinux_relabel {
            opts.push_str(",Z");
        }
        binds.push(format!("{host}:{}:{opts}", m.container_path));
    }
    let tmpfs: HashMap<String, String> = spec
        .tmpfs
        .iter()
        .map(|(path, size)| (path.clone(), format!("rw,nosuid,nodev,size={size}")))
        .collect();
    let host_config = HostConfig {
        network_mode: Some("none".into()),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        privileged: Some(false),
        publish_all_ports: Some(false),
        readonly_rootfs: Some(spec.read_only_rootfs),
        init: Some(true),
        ipc_mode: Some("private".into()),
        memory: Some(spec.limits.memory_bytes),
        memory_swap: Some(spec.limits.memory_bytes),
        nano_cpus: Some(spec.limits.nano_cpus),
        pids_limit: Some(spec.limits.pids),
        // Both limits are explicit: when a request names any ulimit, Podman drops its
        // configured defaults and would otherwise try to raise nproc to the maximum.
        ulimits: Some(vec![
            ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(spec.limits.nofile),
                hard: Some(spec.limits.nofile),
            },
            ResourcesUlimits {
                name: Some("nproc".into()),
                soft: Some(spec.limits.nproc),
                hard: Some(spec.limits.nproc),
            },
        ]),
        binds: Some(binds),
        tmpfs: Some(tmpfs),
        // Output is streamed to the driver through attach; nothing is written to disk.
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        userns_mode: spec.userns_keep_id.then(|| "keep-id".to_string()),
        ..Default::default()
    };
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: Some(spec.working_dir.clone()),
        user: Some(format!("{}:{}", spec.user.uid, spec.user.gid)),
        labels: Some(spec.labels.clone().into_iter().collect()),
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(false),
        tty: Some(false),
        hostname: Some("sandbox".into()),
        host_config: Some(host_config),
        ..Default::default()
    })
}

#[async_trait]
impl SandboxRuntime for DockerRuntime {
    fn name(&self) -> &str {
        &self.name
    }

    async fn ping(&self) -> Result<()> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| map_err("ping engine", e))
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        match self.docker.inspect_image(reference).await {
            Ok(img) => Ok(Some(ImageInfo {
                id: img.id.unwrap_or_default(),
                labels: img
                    .config
                    .and_then(|c| c.labels)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            })),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(map_err("inspect image", e)),
        }
    }

    async fn pull(&self, reference: &str, progress: ProgressFn<'_>) -> Result<()> {
        let options = CreateImageOptionsBuilder::default()
            .from_image(reference)
            .build();
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => progress(PullProgress {
                    status: info.status.unwrap_or_default(),
                    layer: info.id,
                    current: info
                        .progress_detail
                        .as_ref()
                        .and_then(|p| p.current)
                        .and_then(|v| u64::try_from(v).ok()),
                    total: info
                        .progress_detail
                        .as_ref()
                        .and_then(|p| p.total)
                        .and_then(|v| u64::try_from(v).ok()),
                }),
                Err(e) => {
                    return Err(Error::ImageUnavailable {
                        image: reference.to_string(),
                        reason: format!("image pull failed: {}", reason_of(&e)),
                        source: Some(Box::new(e)),
                    });
                }
            }
        }
        Ok(())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId> {
        let body = build_create_body(spec)?;
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| map_err("create container", e))?;
        Ok(ContainerId(created.id))
    }

    async fn logs(&self, id: &ContainerId) -> Result<OutputStream> {
        // Attached directly rather than through bollard, to read the output in large
        // pieces (see the attach module).
        let path = self.versioned(&format!(
            "/containers/{}/attach?stream=true&stdout=true&stderr=true&stdin=false&logs=false",
            percent_encode(&id.0)
        ));
        let mut io = self.open().await?;
        let leftover = tokio::time::timeout(self.timeout, attach::handshake(io.as_mut(), &path))
            .await
            .map_err(|_| Error::Unavailable {
                message: "attach to container: timed out".into(),
                source: None,
            })?
            .map_err(|e| match e {
                Error::NotFound { .. } => Error::NotFound {
                    what: "container",
                    id: id.0.clone(),
                },
                other => other,
            })?;
        Ok(Box::pin(attach::output_stream(io, leftover)))
    }

    async fn start(&self, id: &ContainerId) -> Result<()> {
        self.docker
            .start_container(
                &id.0,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| not_found_or("container", id, "start container", e))
    }

    async fn wait(&self, id: &ContainerId) -> Result<ExitStatus> {
        let code = loop {
            let mut stream = self
                .docker
                .wait_container(&id.0, None::<WaitContainerOptions>);
            match stream.next().await {
                Some(Ok(resp)) => break resp.status_code,
                Some(Err(BollardError::DockerContainerWaitError { code, .. })) => break code,
                // The engine answers when the container exits; a long job outlives the
                // per-request timeout, so ask again.
                Some(Err(BollardError::RequestTimeoutError)) => continue,
                Some(Err(e)) => return Err(not_found_or("container", id, "wait for container", e)),
                None => {
                    return Err(Error::Runtime {
                        message: format!("wait for container {id}: no answer"),
                        source: None,
                    });
                }
            }
        };
        let info = self
            .docker
            .inspect_container(&id.0, None::<InspectContainerOptions>)
            .await
            .map_err(|e| not_found_or("container", id, "inspect container", e))?;
        let state = info.state.unwrap_or_default();
        Ok(ExitStatus {
            code: state.exit_code.unwrap_or(code),
            oom_killed: state.oom_killed.unwrap_or(false),
        })
    }

    async fn signal(&self, id: &ContainerId, signal: Signal) -> Result<()> {
        let name = match signal {
            Signal::Terminate => "SIGTERM",
            Signal::Kill => "SIGKILL",
        };
        let options = KillContainerOptionsBuilder::default().signal(name).build();
        match self.docker.kill_container(&id.0, Some(options)).await {
            Ok(()) => Ok(()),
            // Gone, or no longer running: nothing to signal.
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            Err(e) => {
                // Podman answers 500 when the container has just exited.
                let still_running = self
                    .docker
                    .inspect_container(&id.0, None::<InspectContainerOptions>)
                    .await
                    .ok()
                    .and_then(|i| i.state)
                    .and_then(|s| s.running)
                    .unwrap_or(false);
                if still_running {
                    Err(map_err("signal container", e))
                } else {
                    Ok(())
                }
            }
        }
    }

    async fn collect_artifacts(
        &self,
        id: &ContainerId,
        container_dir: &str,
        limits: &ArtifactLimits,
    ) -> Result<ArtifactSet> {
        let host = self.host_path_of(id, container_dir).await?;
        let prefix = Path::new(container_dir)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("artifacts")
            .to_string();
        let limits = *limits;
        tokio::task::spawn_blocking(move || artifacts::collect(&host, &prefix, &limits))
            .await
            .map_err(|e| Error::Internal {
                message: "artifact collection task failed".into(),
                source: Some(Box::new(e)),
            })?
    }

    async fn read_file(
        &self,
        id: &ContainerId,
        container_path: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>> {
        let host = self.host_path_of(id, container_path).await?;
        tokio::task::spawn_blocking(move || artifacts::read_file(&host, max_bytes))
            .await
            .map_err(|e| Error::Internal {
                message: "file read task failed".into(),
                source: Some(Box::new(e)),
            })?
    }

    async fn remove(&self, id: &ContainerId) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let mut attempt = 0;
        loop {
            match self
                .docker
                .remove_container(&id.0, Some(options.clone()))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if status_of(&e) == Some(404) => return Ok(()),
                // A removal already in progress, or a container still stopping.
                Err(e) if status_of(&e) == Some(409) && attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = e;
                }
                Err(e) => return Err(map_err("remove container", e)),
            }
        }
    }

    async fn list_owned(&self, owner: &str) -> Result<Vec<ContainerSummary>> {
        let filters = serde_json::json!({
            "label": [format!("{LABEL_ROLE}={ROLE_SANDBOX}"), format!("{LABEL_OWNER}={owner}")]
        });
        let path = format!(
            "/containers/json?all=true&filters={}",
            percent_encode(&filters.to_string())
        );
        let list = self.get_json(&path).await?;
        Ok(parse_container_list(&list)
            .into_iter()
            // The engine filtered already; double-check so a reaper never touches a
            // container that is not ours.
            .filter(|c| {
                c.labels.get(LABEL_OWNER).map(String::as_str) == Some(owner)
                    && c.labels.get(LABEL_ROLE).map(String::as_str) == Some(ROLE_SANDBOX)
            })
            .collect())
    }
}

/// Reads `GET /containers/json` loosely (any state string).
fn parse_container_list(v: &serde_json::Value) -> Vec<ContainerSummary> {
    let str_of = |v: &serde_json::Value| v.as_str().map(str::to_string);
    v.as_array()
        .map(|arr| {
            arr.iter()
                .filter_map(|c| {
                    Some(ContainerSummary {
                        id: ContainerId(str_of(c.get("Id")?)?),
                        names: c
                            .get("Names")
                            .and_then(|n| n.as_array())
                            .map(|n| n.iter().filter_map(str_of).collect())
                            .unwrap_or_default(),
                        labels: c
                            .get("Labels")
                            .and_then(|l| l.as_object())
                            .map(|l| {
                                l.iter()
                                    .filter_map(|(k, v)| Some((k.clone(), str_of(v)?)))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        state: c.get("State").and_then(str_of).unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunAs;
    use crate::runtime::{BindMount, ContainerLimits};

    #[test]
    fn container_list_is_read_loosely() {
        let v = serde_json::json!([
            {"Id": "abc", "Names": ["/n1"], "Labels": {"a": "b"}, "State": "stopped"},
            {"Names": ["/no-id"]},
            {"Id": "def", "State": "running", "Labels": null}
        ]);
        let list = parse_container_list(&v);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id.0, "abc");
        assert_eq!(list[0].state, "stopped");
        assert_eq!(list[0].names, ["/n1"]);
        assert_eq!(list[0].labels.get("a").map(String::as_str), Some("b"));
        assert!(list[1].labels.is_empty());
        assert_eq!(
            percent_encode("{\"label\":[\"a=b\"]}"),
            "%7B%22label%22%3A%5B%22a%3Db%22%5D%7D"
        );
    }

    #[test]
    fn mount_resolution_prefers_the_longest_destination() {
        let mounts = [
            ("/h/job", "/job"),
            ("/h/ws", "/workspace"),
            ("/h/run", "/job/run"),
        ];
        let find = |p: &str| host_path_in_mounts(mounts.iter().copied(), p);
        assert_eq!(
            find("/job/artifacts"),
            Some(PathBuf::from("/h/job/artifacts"))
        );
        assert_eq!(find("/job"), Some(PathBuf::from("/h/job")));
        assert_eq!(find("/job/run/x"), Some(PathBuf::from("/h/run/x")));
        assert_eq!(find("/jobs/x"), None);
        assert_eq!(find("/etc"), None);
    }

    #[test]
    fn create_body_carries_the_hardening() {
        let spec = ContainerSpec {
            name: "n".into(),
            image: "img".into(),
            command: vec!["true".into()],
            env: vec![("A".into(), "1".into())],
            working_dir: "/workspace".into(),
            user: RunAs {
                uid: 10001,
                gid: 10001,
            },
            labels: Default::default(),
            mounts: vec![BindMount {
                host_path: "/h/ws".into(),
                container_path: "/workspace".into(),
                read_only: false,
            }],
            tmpfs: vec![("/tmp".into(), 1024)],
            limits: ContainerLimits {
                nano_cpus: 1,
                memory_bytes: 2,
                pids: 3,
                nofile: 4,
                nproc: 5,
            },
            read_only_rootfs: true,
            selinux_relabel: true,
            userns_keep_id: false,
        };
        let body = build_create_body(&spec).unwrap();
        let hc = body.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.memory_swap, hc.memory);
        assert_eq!(hc.binds, Some(vec!["/h/ws:/workspace:rw,Z".to_string()]));
        assert_eq!(body.user.as_deref(), Some("10001:10001"));
        assert_eq!(body.open_stdin, Some(false));

        let mut bad = spec.clone();
        bad.mounts[0].host_path = "/h/a:b".into();
        assert!(build_create_body(&bad).is_err());
    }
}
