//! Choosing a book's cover before converting it (the web page's book view):
//!
//! - `GET /folders/{path}/images`: the JPEG and PNG files in the book folder, with size, type,
//!   pixel size and which one the plan picked (or that the plan took a picture embedded in an
//!   MP3);
//! - `GET /folders/{path}/images/{name}`: one of them, by file name;
//! - `POST /covers`: an uploaded image (the body is the file), stored content-addressed as
//!   `DATA_DIR/uploads/<BLAKE3 of the bytes>.<jpg|png>`, answered with its id;
//!   `GET /covers/{id}` gives it back;
//! - the `cover` field of a `POST /convert` entry ([`CoverChoice`]): a folder image by name,
//!   an upload by id, or none. It becomes the plan's [`aiom4b::PlanOptions::cover`] (the CLI's
//!   `--cover`) or [`aiom4b::PlanOptions::no_cover`].
//!
//! Every image is recognised by its content (the library's own header sniffing,
//! [`aiom4b::probe::image_facts`]), never by its name. Folder paths go through
//! [`super::confine::SourceRoot`]; an image name is one plain file name in that folder
//! (no `/`, no `..`, no hidden file), a regular file and not a symlink. An upload id is 64
//! lowercase hex digits and nothing else, so it can only name a file in `uploads/`.
use super::api::{blocking, ApiError, AppState, ErrorBody, Shared};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::io::Read as _;
use std::path::{Path as FsPath, PathBuf};

/// Largest upload. Covers are a few hundred KiB; the library itself takes up to
/// [`aiom4b::MAX_COVER_BYTES`].
pub const MAX_UPLOAD_BYTES: usize = 10 << 20;
/// Where uploads are posted (its body limit differs from every other route's).
const UPLOAD_PATH: &str = "/api/v1/covers";
/// Bytes read from a listed image for its type and pixel size.
const HEADER_BYTES: u64 = 64 << 10;

/// The cover a `POST /convert` entry asks for. Absent: the plan's own choice.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CoverChoice {
    /// An image in the book folder (the first one, for a book of several), by file name.
    Folder { name: String },
    /// An image uploaded with `POST /covers`, by the id it answered.
    Upload { id: String },
    /// No cover at all.
    None,
}

/// `GET /folders/{path}/images`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Images {
    images: Vec<ImageView>,
    /// What the plan takes without a choice: `{"kind":"folder","name"}`,
    /// `{"kind":"embedded","file"}`, or null.
    #[schema(value_type = Option<Object>)]
    planned: Option<serde_json::Value>,
}

/// One image of a folder.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ImageView {
    name: String,
    size_bytes: u64,
    /// `image/jpeg` or `image/png`.
    #[schema(rename = "type")]
    kind: String,
    width: Option<u32>,
    height: Option<u32>,
    /// The one the plan takes without a choice.
    picked: bool,
}

/// `POST /covers`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Uploaded {
    /// The id to give as `{"kind":"upload","id"}` in `POST /convert`.
    id: String,
    #[schema(rename = "type")]
    kind: String,
    size_bytes: u64,
    width: Option<u32>,
    height: Option<u32>,
    url: String,
}

/// Whether `req` is a cover upload, whose body limit is [`MAX_UPLOAD_BYTES`]
/// ([`super::layers::body_size_layer`]).
pub fn is_upload(req: &Request) -> bool {
    req.method() == Method::POST && req.uri().path() == UPLOAD_PATH
}

/// An upload above [`MAX_UPLOAD_BYTES`].
pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the image is larger than {} MiB", MAX_UPLOAD_BYTES >> 20),
        "use a smaller JPEG (1400×1400 pixels is plenty for a cover)",
    )
}

fn not_an_image(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "not_an_image",
        format!("{what} is not a JPEG or PNG image"),
        "use a JPEG or PNG file (its content counts, not its name)",
    )
}

/// `(mime, width, height)` of JPEG/PNG bytes, within the library's pixel limits.
fn facts(data: &[u8]) -> Option<(&'static str, Option<u32>, Option<u32>)> {
    let (mime, w, h) = aiom4b::probe::image_facts(data)?;
    let side_ok = |s: Option<u32>| s.is_none_or(|s| (1..=aiom4b::MAX_COVER_SIDE).contains(&s));
    (side_ok(w) && side_ok(h)).then_some((mime, w, h))
}

/// A file name that names a file directly in a folder, and nothing else.
fn plain_name(name: &str) -> Result<&str, ApiError> {
    if name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\', '\0'])
        || name.len() > 255
    {
        return Err(ApiError::forbidden(
            "bad_image_name",
            format!("{name:?} is not the name of a file in the book folder"),
            "use a name from GET /api/v1/folders/{path}/images",
        ));
    }
    Ok(name)
}

fn image_missing(name: &str) -> ApiError {
    ApiError::not_found(
        "image_not_found",
        format!("no image {name:?} in the book folder"),
        "use a name from GET /api/v1/folders/{path}/images",
    )
}

/// `folder/name` when it is a regular file (not a symlink) directly in `folder` (canonical).
fn image_path(folder: &FsPath, name: &str) -> Result<PathBuf, ApiError> {
    let name = plain_name(name)?;
    let p = folder.join(name);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.file_type().is_file() => Ok(p),
        _ => Err(image_missing(name)),
    }
}

/// Reads at most `limit` bytes of a regular file, refusing symlinks at open time too.
fn read_at_most(p: &FsPath, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut data = Vec::new();
    f.take(limit).read_to_end(&mut data)?;
    Ok(data)
}

/// `GET /folders/{path}/images`.
#[utoipa::path(get, path = "/folders/{path}/images", tag = "folders", summary = "the folder's JPEG and PNG images, and which one the plan picked",
    params(("path" = String, Path, description = "the folder relative to SOURCE_DIR, URL-encoded as one segment")),
    responses((status = 200, description = "images", body = Images), (status = 400, description = "error", body = ErrorBody), (status = 403, description = "error", body = ErrorBody), (status = 404, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn list_images(
    State(s): State<Shared>,
    Path(path): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let folder = s.root.resolve(&path)?;
    blocking(move || {
        let mut images = Vec::new();
        let rd = std::fs::read_dir(&folder).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unreadable_folder",
                format!("{path:?}: {e}"),
                "check the folder's permissions",
            )
        })?;
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(p) = image_path(&folder, &name) else {
                continue;
            };
            let Ok(head) = read_at_most(&p, HEADER_BYTES) else {
                continue;
            };
            let Some((mime, w, h)) = aiom4b::probe::image_facts(&head) else {
                continue;
            };
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            images.push((name, size, mime, w, h));
        }
        images.sort_by(|a, b| a.0.cmp(&b.0));
        // What the plan takes without a choice: a file here, or a picture in an MP3.
        let plan = super::api::plan_folder(&s, folder.clone()).ok();
        let source = plan
            .as_ref()
            .and_then(|b| b.cover.as_ref())
            .map(|c| &c.source);
        let (planned, picked) = match source {
            Some(aiom4b::CoverSource::File { path }) => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let here = path.parent() == Some(folder.as_path());
                (
                    json!({ "kind": "folder", "name": name }),
                    here.then_some(name),
                )
            }
            Some(aiom4b::CoverSource::Embedded { path }) => (
                json!({ "kind": "embedded", "file": path.strip_prefix(&folder).unwrap_or(path) }),
                None,
            ),
            None => (serde_json::Value::Null, None),
        };
        let images: Vec<_> = images
            .into_iter()
            .map(|(name, size, mime, w, h)| {
                json!({
                    "picked": picked.as_deref() == Some(name.as_str()),
                    "name": name,
                    "size_bytes": size,
                    "type": mime,
                    "width": w,
                    "height": h,
                })
            })
            .collect();
        Ok(Json(json!({ "images": images, "planned": planned })))
    })
    .await
}

fn image_response(data: Vec<u8>, mime: &'static str) -> Response {
    let mut r = data.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// `GET /folders/{path}/images/{name}`.
#[utoipa::path(get, path = "/folders/{path}/images/{name}", tag = "folders", summary = "one image of the folder, by file name",
    params(("path" = String, Path, description = "the folder relative to SOURCE_DIR, URL-encoded as one segment"),
           ("name" = String, Path, description = "a file name in that folder")),
    responses((status = 200, description = "the image", content((super::openapi::Binary = "image/jpeg"), (super::openapi::Binary = "image/png"))), (status = 400, description = "error", body = ErrorBody), (status = 403, description = "error", body = ErrorBody), (status = 404, description = "error", body = ErrorBody), (status = 415, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn image(
    State(s): State<Shared>,
    Path((path, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let folder = s.root.resolve(&path)?;
    plain_name(&name)?;
    blocking(move || {
        let p = image_path(&folder, &name)?;
        let limit = aiom4b::MAX_COVER_BYTES as u64;
        let data = read_at_most(&p, limit + 1).map_err(|_| image_missing(&name))?;
        if data.len() as u64 > limit {
            return Err(not_an_image(&format!("{name:?} (too large for a cover)")));
        }
        let (mime, _, _) =
            aiom4b::probe::image_facts(&data).ok_or_else(|| not_an_image(&format!("{name:?}")))?;
        Ok(image_response(data, mime))
    })
    .await
}

fn uploads_dir(s: &AppState) -> PathBuf {
    s.wf.config().data_dir.join("uploads")
}

fn bad_upload_id(id: &str) -> ApiError {
    ApiError::not_found(
        "upload_not_found",
        format!("no uploaded cover {id:?}"),
        "upload the image with POST /api/v1/covers and use the id it answers",
    )
}

/// The stored file of an upload id, when there is one.
fn upload_path(s: &AppState, id: &str) -> Result<PathBuf, ApiError> {
    let hex = id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !hex {
        return Err(bad_upload_id(id));
    }
    let dir = uploads_dir(s);
    ["jpg", "png"]
        .iter()
        .map(|ext| dir.join(format!("{id}.{ext}")))
        .find(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file()))
        .ok_or_else(|| bad_upload_id(id))
}

/// `POST /covers`: the body is the image.
#[utoipa::path(post, path = "/covers", tag = "folders", summary = "upload a cover image (JPEG or PNG, by content; at most 10 MiB); stored by content, answered with its id",
    request_body(description = "the image file", content((super::openapi::Binary = "image/jpeg"), (super::openapi::Binary = "image/png"), (super::openapi::Binary = "application/octet-stream"))),
    responses((status = 201, description = "stored", body = Uploaded), (status = 400, description = "error", body = ErrorBody), (status = 403, description = "error", body = ErrorBody), (status = 413, description = "error", body = ErrorBody), (status = 415, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn upload(State(s): State<Shared>, body: Body) -> Result<Response, ApiError> {
    let data = axum::body::to_bytes(body, MAX_UPLOAD_BYTES)
        .await
        .map_err(|_| too_large())?;
    let (mime, w, h) = facts(&data).ok_or_else(|| not_an_image("the uploaded file"))?;
    let ext = if mime == "image/png" { "png" } else { "jpg" };
    let id = blake3::hash(&data).to_hex().to_string();
    blocking(move || {
        let dir = uploads_dir(&s);
        let target = dir.join(format!("{id}.{ext}"));
        let fail = |e: std::io::Error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "upload_failed",
                format!("storing the image in {}: {e}", dir.display()),
                "check DATA_DIR's free space and permissions",
            )
        };
        if !target.is_file() {
            std::fs::create_dir_all(&dir).map_err(fail)?;
            // Written beside, then renamed: a reader never sees half an image, and two equal
            // uploads at once both end with the same complete file.
            let tmp = dir.join(format!(".{id}.{}.part", std::process::id()));
            std::fs::write(&tmp, &data).map_err(fail)?;
            std::fs::rename(&tmp, &target).map_err(fail)?;
        }
        tracing::info!(target: "aiom4b::audit", action = "cover.upload", id = %id, bytes = data.len(), "cover uploaded");
        Ok((
            StatusCode::CREATED,
            Json(json!({
                "id": id,
                "type": mime,
                "size_bytes": data.len(),
                "width": w,
                "height": h,
                "url": format!("/api/v1/covers/{id}"),
            })),
        )
            .into_response())
    })
    .await
}

/// `GET /covers/{id}`: an uploaded image.
#[utoipa::path(get, path = "/covers/{id}", tag = "folders", summary = "an uploaded cover image",
    params(("id" = String, Path, description = "the id `POST /covers` answered")),
    responses((status = 200, description = "the image", content((super::openapi::Binary = "image/jpeg"), (super::openapi::Binary = "image/png"))), (status = 404, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn uploaded(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let p = upload_path(&s, &id)?;
        let data = read_at_most(&p, MAX_UPLOAD_BYTES as u64).map_err(|_| bad_upload_id(&id))?;
        let (mime, _, _) = aiom4b::probe::image_facts(&data).ok_or_else(|| bad_upload_id(&id))?;
        Ok(image_response(data, mime))
    })
    .await
}

/// Puts a convert entry's cover choice into its plan options; `folder` is the book's first
/// (canonical) folder. Checked now, so a bad choice refuses the request before any job exists.
pub fn apply(
    s: &AppState,
    folder: &FsPath,
    choice: &CoverChoice,
    plan: &mut aiom4b::PlanOptions,
) -> Result<(), ApiError> {
    match choice {
        CoverChoice::Folder { name } => {
            let p = image_path(folder, name)?;
            let head = read_at_most(&p, HEADER_BYTES).map_err(|_| image_missing(name))?;
            facts(&head).ok_or_else(|| not_an_image(&format!("{name:?}")))?;
            plan.cover = Some(p);
            plan.no_cover = false;
        }
        CoverChoice::Upload { id } => {
            plan.cover = Some(upload_path(s, id)?);
            plan.no_cover = false;
        }
        CoverChoice::None => {
            plan.cover = None;
            plan.no_cover = true;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_are_plain_file_names() {
        for bad in [
            "",
            "..",
            ".",
            "../x.jpg",
            "a/b.jpg",
            ".hidden.jpg",
            "a\\b",
            "a\0b",
        ] {
            assert!(plain_name(bad).is_err(), "{bad:?}");
        }
        assert!(plain_name("back cover.jpg").is_ok());
    }

    #[test]
    fn cover_choices_parse() {
        let c: CoverChoice = serde_json::from_str(r#"{"kind":"folder","name":"b.jpg"}"#).unwrap();
        assert!(matches!(c, CoverChoice::Folder { name } if name == "b.jpg"));
        let c: CoverChoice = serde_json::from_str(r#"{"kind":"none"}"#).unwrap();
        assert!(matches!(c, CoverChoice::None));
        assert!(serde_json::from_str::<CoverChoice>(r#"{"kind":"url","u":"x"}"#).is_err());
    }
}
