//! Snapshot routes: Qdrant's collection snapshots (`/collections/{name}/snapshots…`) and
//! full-storage snapshots (`/snapshots…`), adapters over
//! [`Database::create_snapshot`](crate::service::Database::create_snapshot) and its siblings.
//! Downloads stream the file; uploads stream the multipart body to disk, bounded by
//! `--max-snapshot-bytes` (not by the request body limit), and wait at most
//! `--body-read-timeout-secs` for each piece (not for the whole body). The routes that take or
//! recover a snapshot are outside the request timeout ([`super::gate`]).

use super::response::Path;
use super::response::{Answer, ApiError, Body, Params, Started};
use super::AppState;
use crate::error::Error;
use crate::service::models::WaitParams;
use crate::service::snapshots::{SnapshotDescription, SnapshotPriority, SnapshotRecover};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

type Answered = Result<Response, ApiError>;

/// The answer to an operation that may not be waited for: its result, or Qdrant's
/// `{"result": null, "status": "accepted"}`.
fn maybe<T: Serialize>(t: Started, result: Option<T>) -> Response {
    match result {
        Some(r) => Answer(t, r).into_response(),
        None => axum::Json(serde_json::json!({
            "result": null,
            "status": "accepted",
            "time": t.0.elapsed().as_secs_f64(),
        }))
        .into_response(),
    }
}

/// Whether a snapshot route's answer waits for the snapshot: the client's `wait`, else yes, as
/// in Qdrant (a client that takes a snapshot usually wants its name; point and index writes do
/// not wait by default: [`WaitParams::wait`]).
fn waits(wait: Option<bool>) -> bool {
    wait.unwrap_or(true)
}

/// A snapshot file as a download.
async fn download(path: PathBuf, name: &str) -> Answered {
    let file = tokio::fs::File::open(&path).await.map_err(Error::from)?;
    let len = file.metadata().await.map_err(Error::from)?.len();
    let disposition = format!("attachment; filename=\"{}\"", name.replace('"', ""));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        crate::cluster::snapshot::file_body(file),
    )
        .into_response())
}

#[utoipa::path(
    post,
    path = "/collections/{name}/snapshots",
    tag = "snapshots",
    summary = "Create a snapshot of a collection (every shard)",
    params(("name" = String, Path, description = "Collection name"), WaitParams),
    responses((status = 200, description = "Success", body = super::response::Envelope<Option<SnapshotDescription>>), super::openapi::ApiErrors)
)]
pub async fn create(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
) -> Answered {
    Ok(maybe(t, db.create_snapshot(&name, waits(p.wait)).await?))
}

#[utoipa::path(
    get,
    path = "/collections/{name}/snapshots",
    tag = "snapshots",
    summary = "List a collection's snapshots on this node",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "Success", body = super::response::Envelope<Vec<SnapshotDescription>>), super::openapi::ApiErrors)
)]
pub async fn list(State(db): State<AppState>, t: Started, Path(name): Path<String>) -> Answered {
    Ok(Answer(t, db.list_snapshots(&name)?).into_response())
}

#[utoipa::path(
    get,
    path = "/collections/{name}/snapshots/{snapshot_name}",
    tag = "snapshots",
    summary = "Download a collection snapshot",
    params(("name" = String, Path, description = "Collection name"), ("snapshot_name" = String, Path, description = "Snapshot name")),
    responses((status = 200, description = "The snapshot file", content_type = "application/octet-stream"), super::openapi::ApiErrors)
)]
pub async fn get(
    State(db): State<AppState>,
    Path((name, snapshot)): Path<(String, String)>,
) -> Answered {
    download(db.snapshot_file(&name, &snapshot)?, &snapshot).await
}

#[utoipa::path(
    delete,
    path = "/collections/{name}/snapshots/{snapshot_name}",
    tag = "snapshots",
    summary = "Delete a collection snapshot",
    params(("name" = String, Path, description = "Collection name"), ("snapshot_name" = String, Path, description = "Snapshot name"), WaitParams),
    responses((status = 200, description = "Success", body = super::response::Envelope<bool>), super::openapi::ApiErrors)
)]
pub async fn delete(
    State(db): State<AppState>,
    t: Started,
    Path((name, snapshot)): Path<(String, String)>,
    Params(_wait): Params<WaitParams>,
) -> Answered {
    Ok(Answer(t, db.delete_snapshot(&name, &snapshot)?).into_response())
}

#[utoipa::path(
    put,
    path = "/collections/{name}/snapshots/recover",
    tag = "snapshots",
    summary = "Recover a collection from a snapshot at a URL",
    params(("name" = String, Path, description = "Collection name"), WaitParams),
    request_body = SnapshotRecover,
    responses((status = 200, description = "Success", body = super::response::Envelope<Option<bool>>), super::openapi::ApiErrors)
)]
pub async fn recover(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<WaitParams>,
    Body(req): Body<SnapshotRecover>,
) -> Answered {
    Ok(maybe(
        t,
        db.recover_snapshot(&name, req, waits(p.wait)).await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    pub wait: Option<bool>,
    /// Accepted as Qdrant does; every priority gives the snapshot's data (docs/snapshots.md).
    #[param(value_type = Option<String>)]
    pub priority: Option<SnapshotPriority>,
    /// sha256 the file must have (hex).
    pub checksum: Option<String>,
}

#[utoipa::path(
    post,
    path = "/collections/{name}/snapshots/upload",
    tag = "snapshots",
    summary = "Recover a collection from an uploaded snapshot (multipart field `snapshot`)",
    params(("name" = String, Path, description = "Collection name"), UploadParams),
    request_body(content = Vec<u8>, content_type = "multipart/form-data"),
    responses((status = 200, description = "Success", body = super::response::Envelope<Option<bool>>), super::openapi::ApiErrors)
)]
pub async fn upload(
    State(db): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    Params(p): Params<UploadParams>,
    req: Request,
) -> Answered {
    crate::collection::catalog::validate_name(&name)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let boundary = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| {
            bad("an upload is a multipart/form-data body with a `snapshot` file field".into())
        })?;
    let max = db.config().max_snapshot_bytes;
    let idle = crate::config::seconds(db.config().body_read_timeout_secs);
    let limits = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(max).per_field(max));
    let stream = req.into_body().into_data_stream();
    let mut form = multer::Multipart::with_constraints(stream, boundary, limits);
    let target = db.upload_target()?;
    let mut received = false;
    while let Some(mut field) = form.next_field().await.map_err(|e| upload_error(e, max))? {
        if received || (field.name() != Some("snapshot") && field.file_name().is_none()) {
            continue;
        }
        let mut file = tokio::fs::File::create(&target.path)
            .await
            .map_err(Error::from)?;
        while let Some(chunk) = next_piece(&mut field, idle, max).await? {
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                .await
                .map_err(Error::from)?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(Error::from)?;
        received = true;
    }
    if !received {
        return Err(bad("the upload has no `snapshot` file field".into()));
    }
    let wait = waits(p.wait);
    Ok(maybe(
        t,
        db.recover_uploaded(&name, target, p.checksum, wait).await?,
    ))
}

/// The next piece of an upload, waiting at most `idle` for it (`--body-read-timeout-secs`: the
/// whole-body deadline of other requests does not apply to uploads, so a slow client is cut off
/// when it stalls, not when a large snapshot takes long).
async fn next_piece(
    field: &mut multer::Field<'_>,
    idle: Option<std::time::Duration>,
    max: u64,
) -> Result<Option<axum::body::Bytes>, ApiError> {
    let piece = match idle {
        None => field.chunk().await,
        Some(limit) => tokio::time::timeout(limit, field.chunk())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the upload stalled for more than {limit:?}"),
                )
            })?,
    };
    piece.map_err(|e| upload_error(e, max))
}

fn upload_error(e: multer::Error, max: u64) -> ApiError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the snapshot is larger than --max-snapshot-bytes ({max})"),
            )
        }
        other => ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read the upload: {other}"),
        ),
    }
}

#[utoipa::path(
    post,
    path = "/snapshots",
    tag = "snapshots",
    summary = "Create a full-storage snapshot (every collection)",
    params(WaitParams),
    responses((status = 200, description = "Success", body = super::response::Envelope<Option<SnapshotDescription>>), super::openapi::ApiErrors)
)]
pub async fn create_full(
    State(db): State<AppState>,
    t: Started,
    Params(p): Params<WaitParams>,
) -> Answered {
    Ok(maybe(t, db.create_full_snapshot(waits(p.wait)).await?))
}

#[utoipa::path(
    get,
    path = "/snapshots",
    tag = "snapshots",
    summary = "List full-storage snapshots on this node",
    responses((status = 200, description = "Success", body = super::response::Envelope<Vec<SnapshotDescription>>), super::openapi::ApiErrors)
)]
pub async fn list_full(State(db): State<AppState>, t: Started) -> Answered {
    Ok(Answer(t, db.list_full_snapshots()?).into_response())
}

#[utoipa::path(
    get,
    path = "/snapshots/{snapshot_name}",
    tag = "snapshots",
    summary = "Download a full-storage snapshot",
    params(("snapshot_name" = String, Path, description = "Snapshot name")),
    responses((status = 200, description = "The snapshot file", content_type = "application/octet-stream"), super::openapi::ApiErrors)
)]
pub async fn get_full(State(db): State<AppState>, Path(snapshot): Path<String>) -> Answered {
    download(db.full_snapshot_file(&snapshot)?, &snapshot).await
}

#[utoipa::path(
    delete,
    path = "/snapshots/{snapshot_name}",
    tag = "snapshots",
    summary = "Delete a full-storage snapshot",
    params(("snapshot_name" = String, Path, description = "Snapshot name"), WaitParams),
    responses((status = 200, description = "Success", body = super::response::Envelope<bool>), super::openapi::ApiErrors)
)]
pub async fn delete_full(
    State(db): State<AppState>,
    t: Started,
    Path(snapshot): Path<String>,
    Params(_wait): Params<WaitParams>,
) -> Answered {
    Ok(Answer(t, db.delete_full_snapshot(&snapshot)?).into_response())
}
