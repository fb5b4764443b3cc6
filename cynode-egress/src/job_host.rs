//! The worker node's per-job inference host (feature `job-host`): a job whose run request
//! brings the orchestrator's inference grant gets its own inference front
//! ([`JobInference::serve_unix`]) over the node's Ollama (local models) and the API
//! egress service (the grant's external models, with the job's token, never a key). The
//! node points the job's inference socket at the front until the job ends.
//!
//! The front listens on a Unix socket (0600) in a private directory (0700) of the
//! worker, not on a TCP port: it answers without authentication and holds the job's
//! token, so only the worker's user (the job's inference proxy) may reach it.
//!
//! Why here: the host joins `cynode-sandbox`'s [`JobInferenceHost`] trait (the Worker
//! API asks it for a job's upstream) to this crate's inference front. `cynode-sandbox`
//! does not depend on `cynode-egress`, so the implementation lives on this side, behind
//! a feature that only the worker node (and tests that run a node) turn on; without it
//! `cynode-egress` does not depend on `cynode-sandbox`.

use std::path::PathBuf;

use async_trait::async_trait;
use cynode_core::proto::v1::worker::InferenceGrant;
use cynode_sandbox::node::{JobInferenceHost, JobUpstream};

use crate::router::JobInference;

/// Starts the per-job inference fronts of a worker node. Hand it to the Worker API with
/// `WorkerApiState::set_job_inference_host`.
#[derive(Clone, Debug)]
pub struct EgressJobInference {
    ollama_url: Option<String>,
    socket_dir: PathBuf,
}

impl EgressJobInference {
    /// A host whose fronts serve the node's model server at `ollama_url` next to the
    /// grant's external models (`None` on a node without one: external models only).
    /// Each front's socket gets a private directory under `socket_dir` (created 0700
    /// if missing; keep the path short: a socket path has at most 107 bytes), e.g.
    /// `<state dir>/job-inference`.
    pub fn new(ollama_url: Option<String>, socket_dir: impl Into<PathBuf>) -> Self {
        Self {
            ollama_url,
            socket_dir: socket_dir.into(),
        }
    }
}

#[async_trait]
impl JobInferenceHost for EgressJobInference {
    async fn start(
        &self,
        _task_id: &str,
        _job_id: &str,
        grant: &InferenceGrant,
    ) -> Result<JobUpstream, String> {
        let front = JobInference::from_grant(self.ollama_url.clone(), grant)
            .serve_unix(&self.socket_dir)
            .await
            .map_err(|e| e.to_string())?;
        Ok(JobUpstream::new(front.url().to_string(), front))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::BTreeSet;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::Path;

    use bytes::Bytes;
    use cynode_core::proto::v1::worker::ExternalModelGrant;
    use cynode_sandbox::{InferenceConfig, InferenceProxy, ModelPolicy};
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;

    fn grant(external: Vec<ExternalModelGrant>) -> InferenceGrant {
        InferenceGrant {
            token: "cnj1.job.token".into(),
            api_egress_url: "http://127.0.0.1:9".into(),
            external,
        }
    }

    fn openai(models: &str) -> ExternalModelGrant {
        ExternalModelGrant {
            provider: "openai".into(),
            models: vec![models.into()],
        }
    }

    /// `GET path` over the Unix socket at `sock`: status and body, or the connect error.
    async fn get(sock: &Path, path: &str) -> std::io::Result<(u16, String)> {
        let stream = tokio::net::UnixStream::connect(sock).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .map_err(std::io::Error::other)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(std::io::Error::other)?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Inodes of the TCP sockets this process listens on (`/proc/self/fd` joined with
    /// `/proc/net/tcp` and `tcp6`, state `0A` = LISTEN).
    fn tcp_listeners() -> BTreeSet<u64> {
        let mine: BTreeSet<u64> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|l| {
                let l = l.to_string_lossy().into_owned();
                l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
            })
            .collect();
        let mut listening = BTreeSet::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(table) else {
                continue;
            };
            for row in text.lines().skip(1) {
                let cols: Vec<&str> = row.split_whitespace().collect();
                if cols.len() > 9
                    && cols[3] == "0A"
                    && let Ok(inode) = cols[9].parse::<u64>()
                    && mine.contains(&inode)
                {
                    listening.insert(inode);
                }
            }
        }
        listening
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_job_front_serves_on_a_private_unix_socket_and_no_tcp_port() {
        let base = tempfile::tempdir().unwrap();
        let parent = base.path().join("job-inference");
        let host = EgressJobInference::new(Some("http://127.0.0.1:9".into()), &parent);
        let before = tcp_listeners();
        let upstream = host
            .start("t1", "j1", &grant(vec![openai("gpt-4o-mini")]))
            .await
            .unwrap();
        // No TCP listener appeared: the front is reachable only through its socket.
        // (The probe sees one when there is one.)
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            tcp_listeners().len(),
            before.len() + 1,
            "the probe is blind"
        );
        drop(probe);
        assert_eq!(
            tcp_listeners(),
            before,
            "starting a job front opened a TCP port"
        );
        let url = upstream.url().to_string();
        let sock = Path::new(url.strip_prefix("unix://").expect("a unix:// upstream"));
        assert!(sock.starts_with(&parent), "{url}");
        assert!(
            std::fs::metadata(sock).unwrap().file_type().is_socket(),
            "{url}"
        );
        let dir = sock.parent().unwrap();
        assert_eq!(mode(sock), 0o600, "socket mode");
        assert_eq!(mode(dir), 0o700, "socket directory mode");
        assert_eq!(mode(&parent), 0o700, "created parent mode");
        // Owned by this process's user (the worker), like the directory it was given.
        let me = std::fs::metadata(base.path()).unwrap().uid();
        assert_eq!(std::fs::metadata(dir).unwrap().uid(), me);
        assert_eq!(std::fs::metadata(sock).unwrap().uid(), me);

        let (status, body) = get(sock, "/healthz").await.unwrap();
        assert_eq!((status, body.as_str()), (200, "ok"));
        // The grant's external model is listed; the token is nowhere in the answer.
        let (_, models) = get(sock, "/v1/models").await.unwrap();
        assert!(models.contains("gpt-4o-mini"), "{models}");
        assert!(!models.contains("cnj1.job.token"), "{models}");

        // The job's inference proxy (what the sandbox's socket is) forwards to it.
        let proxy_sock = base.path().join("proxy.sock");
        let proxy = InferenceProxy::bind(
            &proxy_sock,
            &InferenceConfig {
                upstream_url: url.clone(),
                ..Default::default()
            },
            ModelPolicy::Only(vec!["gpt-4o-mini".into()]),
            None,
        )
        .await
        .unwrap();
        let (status, through) = get(&proxy_sock, "/v1/models").await.unwrap();
        assert_eq!(status, 200, "{through}");
        assert!(through.contains("gpt-4o-mini"), "{through}");
        drop(proxy);

        // Dropping the upstream stops the front and removes its socket and directory.
        drop(upstream);
        assert!(!sock.exists(), "the socket is removed");
        assert!(!dir.exists(), "the private directory is removed");
        assert!(get(sock, "/healthz").await.is_err());
    }

    #[tokio::test]
    async fn a_grant_the_front_cannot_serve_is_refused_without_the_token() {
        // Two entries for one provider make two targets of one name: refused.
        let base = tempfile::tempdir().unwrap();
        let host = EgressJobInference::new(None, base.path());
        let e = host
            .start("t", "j", &grant(vec![openai("a"), openai("b")]))
            .await
            .unwrap_err();
        assert!(e.contains("duplicate target name 'openai'"), "{e}");
        assert!(!e.contains("cnj1.job.token"), "{e}");
        // Nothing was left behind.
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);
    }
}
