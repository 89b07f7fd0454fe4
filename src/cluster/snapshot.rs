//! Shard dumps for snapshots: each shard of a collection is written by one replica, wherever it
//! lives, into a file on the node taking the snapshot.
//!
//! A local replica writes its dump straight into the file
//! ([`dump_shard`](crate::collection::snapshot::dump_shard), under the shard's write lock: a
//! point-in-time view of the shard). A remote one is asked over the peer port
//! (`GET /peer/v1/shards/{c}/{s}/dump`): the peer writes its dump into a scratch file under its
//! own data dir the same way, then streams the file back ([`file_body`]), and the taking node
//! streams it to disk ([`download`]). Neither side holds more than a buffer of it in memory.
//! A replica still copying its data from its peers is not asked; the next one is.

use super::protocol::{PROTOCOL_HEADER, TOKEN_HEADER};
use super::{Cluster, PeerError};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The header of a dump answer giving how many points it holds.
pub const POINTS_HEADER: &str = "x-shoal-points";
/// How long a peer may take to dump and send one shard.
const DUMP_TIMEOUT: Duration = Duration::from_secs(3600);

/// A file as a response body, read a buffer at a time.
pub fn file_body(file: tokio::fs::File) -> axum::body::Body {
    use tokio::io::AsyncReadExt;
    let chunks = futures::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 256 * 1024];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((axum::body::Bytes::from(buf), file)))
    });
    axum::body::Body::from_stream(chunks)
}

/// Streams a peer's answer to `path` (a dump) into `dest`; answers the point count it announced.
pub async fn download(
    cluster: &Cluster,
    ordinal: u32,
    path: &str,
    dest: &Path,
) -> Result<u64, PeerError> {
    let unreachable = |message: String, timed_out| PeerError::Unreachable {
        ordinal,
        message,
        timed_out,
    };
    let Some(discovery) = cluster.discovery.as_ref() else {
        return Err(unreachable("single-node mode has no peers".into(), false));
    };
    let addr = discovery
        .resolve(ordinal)
        .await
        .map_err(|e| unreachable(e, false))?;
    let mut request = cluster
        .http
        .get(format!("http://{addr}{path}"))
        .timeout(DUMP_TIMEOUT)
        .header(PROTOCOL_HEADER, cluster.speaks_with(ordinal).to_string());
    if let Some(token) = &cluster.token {
        request = request.header(TOKEN_HEADER, token.sent());
    }
    let failed = |e: reqwest::Error| unreachable(e.to_string(), e.is_timeout());
    let mut response = request.send().await.map_err(failed)?;
    let status = response.status();
    if !status.is_success() {
        let message = response.text().await.unwrap_or_default();
        return Err(PeerError::Refused {
            ordinal,
            status: status.as_u16(),
            message,
        });
    }
    let points = response
        .headers()
        .get(POINTS_HEADER)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .ok_or_else(|| PeerError::BadAnswer {
            ordinal,
            message: format!("a dump without {POINTS_HEADER}"),
        })?;
    let local = |e: std::io::Error| PeerError::Internal {
        ordinal: cluster.ordinal,
        message: format!("writing {}: {e}", dest.display()),
    };
    let mut file = tokio::fs::File::create(dest).await.map_err(local)?;
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        file.write_all(&chunk).await.map_err(local)?;
    }
    file.flush().await.map_err(local)?;
    Ok(points)
}
