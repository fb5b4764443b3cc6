//! A raw Docker-API attach: one connection, the HTTP upgrade done by hand, then the
//! multiplexed output read with large buffers.
//!
//! Reading in large pieces matters: output is copied engine → socket → worker, and on a
//! busy host every wakeup of the worker is expensive. Frames (8-byte header: stream type,
//! 3 zero bytes, big-endian length) are parsed incrementally, so a frame of any size is
//! never buffered whole, and consecutive pieces of the same stream are coalesced.

use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::output::StreamKind;

/// Bytes read per syscall at most (about the size of a Unix socket's buffer).
const READ_CHUNK: usize = 256 * 1024;
/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A bidirectional byte stream to the engine.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Sends the attach request on `io` and reads the response head. Returns the bytes that
/// followed the head (the start of the output).
pub(crate) async fn handshake(io: &mut dyn Io, path: &str) -> Result<BytesMut> {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    );
    let io_err = |e: std::io::Error| Error::Unavailable {
        message: "attach to container".into(),
        source: Some(Box::new(e)),
    };
    io.write_all(req.as_bytes()).await.map_err(io_err)?;
    let mut buf = BytesMut::with_capacity(4096);
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(Error::Runtime {
                message: "attach: response head too large".into(),
                source: None,
            });
        }
        if io.read_buf(&mut buf).await.map_err(io_err)? == 0 {
            return Err(Error::Unavailable {
                message: "attach to container: connection closed".into(),
                source: None,
            });
        }
    };
    let head = buf.split_to(end);
    let status = std::str::from_utf8(&head)
        .ok()
        .and_then(|h| h.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(0);
    match status {
        101 | 200 => Ok(buf),
        404 => Err(Error::NotFound {
            what: "container",
            id: path.to_string(),
        }),
        other => Err(Error::Runtime {
            message: format!("attach to container: engine answered {other}"),
            source: None,
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Payload {
        kind: Option<StreamKind>,
        remaining: usize,
    },
    /// No multiplexing (a TTY container): everything is stdout.
    Raw,
}

/// Incremental parser of the multiplexed stream.
#[derive(Debug)]
pub(crate) struct Demux {
    state: State,
}

impl Demux {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Header,
        }
    }

    /// Takes the next run of same-stream bytes out of `buf`, if any is complete enough.
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Option<(StreamKind, Bytes)> {
        let mut out = BytesMut::new();
        let mut out_kind: Option<StreamKind> = None;
        loop {
            match self.state {
                State::Header => {
                    if buf.is_empty() {
                        break;
                    }
                    if buf[0] > 2 {
                        self.state = State::Raw;
                        continue;
                    }
                    if buf.len() < 8 {
                        break;
                    }
                    let kind = match buf[0] {
                        1 => Some(StreamKind::Stdout),
                        2 => Some(StreamKind::Stderr),
                        _ => None, // stdin echo: dropped
                    };
                    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
                    buf.advance(8);
                    if len > 0 {
                        self.state = State::Payload {
                            kind,
                            remaining: len,
                        };
                    }
                }
                State::Payload { kind, remaining } => {
                    if buf.is_empty() {
                        break;
                    }
                    if kind.is_some() && out_kind.is_some() && kind != out_kind {
                        break;
                    }
                    let n = remaining.min(buf.len());
                    let piece = buf.split_to(n);
                    if kind.is_some() {
                        out.extend_from_slice(&piece);
                        out_kind = kind;
                    }
                    self.state = if n == remaining {
                        State::Header
                    } else {
                        State::Payload {
                            kind,
                            remaining: remaining - n,
                        }
                    };
                    if out.len() >= READ_CHUNK {
                        break;
                    }
                }
                State::Raw => {
                    if buf.is_empty() || out_kind == Some(StreamKind::Stderr) {
                        break;
                    }
                    out.extend_from_slice(&buf.split());
                    out_kind = Some(StreamKind::Stdout);
                    break;
                }
            }
        }
        match out_kind {
            Some(kind) if !out.is_empty() => Some((kind, out.freeze())),
            _ => None,
        }
    }
}

/// The output of an attached connection as a stream of `(stream, bytes)` pieces.
pub(crate) fn output_stream(
    io: Box<dyn Io>,
    leftover: BytesMut,
) -> impl Stream<Item = Result<(StreamKind, Bytes)>> + Send {
    struct St {
        io: Box<dyn Io>,
        buf: BytesMut,
        demux: Demux,
        eof: bool,
    }
    let st = St {
        io,
        buf: leftover,
        demux: Demux::new(),
        eof: false,
    };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(item) = st.demux.next(&mut st.buf) {
                return Some((Ok(item), st));
            }
            if st.eof {
                return None;
            }
            if st.buf.capacity() - st.buf.len() < READ_CHUNK / 4 {
                st.buf.reserve(READ_CHUNK);
            }
            match st.io.read_buf(&mut st.buf).await {
                Ok(0) => st.eof = true,
                Ok(_) => {}
                Err(e) => {
                    st.eof = true;
                    st.buf.clear();
                    let err = Error::Unavailable {
                        message: "read container output".into(),
                        source: Some(Box::new(e)),
                    };
                    return Some((Err(err), st));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 0, 0, 0];
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn coalesces_same_stream_frames_and_splits_on_stream_change() {
        let mut bytes = Vec::new();
        bytes.extend(frame(1, b"ab"));
        bytes.extend(frame(1, b"cd"));
        bytes.extend(frame(2, b"err"));
        bytes.extend(frame(0, b"in"));
        bytes.extend(frame(1, b"ef"));
        let mut buf = BytesMut::from(&bytes[..]);
        let mut d = Demux::new();
        assert_eq!(
            d.next(&mut buf),
            Some((StreamKind::Stdout, Bytes::from_static(b"abcd")))
        );
        assert_eq!(
            d.next(&mut buf),
            Some((StreamKind::Stderr, Bytes::from_static(b"err")))
        );
        assert_eq!(
            d.next(&mut buf),
            Some((StreamKind::Stdout, Bytes::from_static(b"ef")))
        );
        assert_eq!(d.next(&mut buf), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_headers_and_payloads_are_resumed() {
        let all = frame(1, b"hello world");
        let mut d = Demux::new();
        let mut buf = BytesMut::from(&all[..5]);
        assert_eq!(d.next(&mut buf), None, "header incomplete");
        buf.extend_from_slice(&all[5..12]);
        assert_eq!(
            d.next(&mut buf),
            Some((StreamKind::Stdout, Bytes::from_static(b"hell")))
        );
        buf.extend_from_slice(&all[12..]);
        assert_eq!(
            d.next(&mut buf),
            Some((StreamKind::Stdout, Bytes::from_static(b"o world")))
        );
        assert_eq!(d.next(&mut buf), None);
    }

    #[test]
    fn unframed_output_is_stdout() {
        let mut d = Demux::new();
        let mut buf = BytesMut::from(&b"plain text"[..]);
        assert_eq!(
            d.next(&mut buf),
            Some((StreamKind::Stdout, Bytes::from_static(b"plain text")))
        );
    }

    #[tokio::test]
    async fn handshake_reads_head_and_keeps_the_rest() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let srv = tokio::spawn(async move {
            let mut req = vec![0u8; 512];
            let n = server.read(&mut req).await.unwrap();
            let req = String::from_utf8_lossy(&req[..n]).to_string();
            let mut resp = b"HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\n\r\n".to_vec();
            resp.extend(frame(1, b"x"));
            server.write_all(&resp).await.unwrap();
            req
        });
        let rest = handshake(&mut client, "/v1.41/containers/c/attach")
            .await
            .unwrap();
        assert_eq!(&rest[..], &frame(1, b"x")[..]);
        let req = srv.await.unwrap();
        assert!(req.starts_with("POST /v1.41/containers/c/attach HTTP/1.1\r\n"));
        assert!(req.contains("Upgrade: tcp"));
    }
}
