//! The CLI side of the control socket.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::ErrorBody;

/// Client failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket (no daemon).
    #[error("cannot connect to {}: {source}", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The exchange broke.
    #[error("control socket {}: {message}", path.display())]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What broke.
        message: String,
    },
    /// The daemon answered with an error.
    #[error("{}", body.error)]
    Remote {
        /// Its answer.
        body: ErrorBody,
    },
}

/// Connects to the daemon's socket; `Err(Connect)` means no daemon is listening.
pub async fn connect(path: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(path)
        .await
        .map_err(|source| ClientError::Connect {
            path: path.into(),
            source,
        })
}

/// Sends one request on `stream` and decodes the JSON answer.
pub async fn call<T: DeserializeOwned>(
    stream: UnixStream,
    socket: &Path,
    method: Method,
    uri: &str,
    body: Option<&impl Serialize>,
) -> Result<T, ClientError> {
    let proto = |message: String| ClientError::Protocol {
        path: socket.into(),
        message,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| proto(e.to_string()))?;
    tokio::spawn(conn);
    let bytes = match body {
        Some(b) => serde_json::to_vec(b).map_err(|e| proto(e.to_string()))?,
        None => Vec::new(),
    };
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "mediaretain")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|e| proto(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| proto(e.to_string()))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| proto(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        let err: ErrorBody = serde_json::from_slice(&body).unwrap_or_else(|_| ErrorBody {
            error: format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
            exit: crate::exit::SOFTWARE,
        });
        return Err(ClientError::Remote { body: err });
    }
    serde_json::from_slice(&body).map_err(|e| proto(format!("bad answer: {e}")))
}
