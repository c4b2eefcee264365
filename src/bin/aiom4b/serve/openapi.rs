//! `GET /api/v1/openapi.json` (OpenAPI 3.0) and `GET /docs`, a page that lists it.
//!
//! The document is built here, beside the router, by small helpers rather than derived with
//! utoipa: the handlers take and return `serde_json` values and library types that carry no
//! schema derives (the library does not depend on an OpenAPI crate), so a derive would have
//! meant mirror types of every view. schemathesis (`.ci/run`) checks that the server keeps to
//! this document.
use axum::response::{Html, IntoResponse, Response};
use serde_json::{json, Value};

pub async fn document() -> Response {
    axum::Json(build()).into_response()
}

pub async fn docs() -> Html<String> {
    let doc = build();
    let mut rows = String::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, ops) in paths {
            for (method, op) in ops.as_object().into_iter().flatten() {
                rows.push_str(&format!(
                    "<tr><td><code>{}</code></td><td><code>/api/v1{}</code></td><td>{}</td></tr>\n",
                    method.to_uppercase(),
                    html_escape(path),
                    html_escape(op["summary"].as_str().unwrap_or(""))
                ));
            }
        }
    }
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>aiom4b API</title>\
         <style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td{{padding:.2em .6em}}</style>\
         <h1>aiom4b API</h1><p>The machine-readable description: \
         <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>. Errors are \
         <code>{{\"error\":{{\"code\",\"message\",\"remedy\"}}}}</code>.</p>\
         <table>{rows}</table>"
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn err_ref() -> Value {
    json!({ "$ref": "#/components/schemas/Error" })
}

fn json_resp(desc: &str, schema: Value) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": schema } } })
}

fn errors(codes: &[&str]) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for c in codes {
        m.insert((*c).into(), json_resp("error", err_ref()));
    }
    m
}

fn op(summary: &str, params: Value, ok: (&str, Value), errs: &[&str]) -> Value {
    let mut responses = errors(errs);
    // Every route can refuse a request without a valid token, or time out.
    for c in ["401", "503"] {
        responses.insert(c.into(), json_resp("error", err_ref()));
    }
    responses.insert(ok.0.into(), ok.1);
    json!({ "summary": summary, "parameters": params, "responses": responses })
}

fn path_param(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
}

fn any_object() -> Value {
    json!({ "type": "object" })
}

fn build() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "aiom4b",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Convert MP3 audiobook folders under SOURCE_DIR into M4B: jobs, live progress, downloads, backups."
        },
        "servers": [{ "url": "/api/v1" }],
        "components": components(),
        "security": [{ "bearer": [] }, {}],
        "paths": paths(),
    })
}

fn components() -> Value {
    json!({
        "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": { "error": {
                    "type": "object",
                    "required": ["code", "message", "remedy"],
                    "properties": {
                        "code": { "type": "string" },
                        "message": { "type": "string" },
                        "remedy": { "type": "string" }
                    }
                } }
            },
            "Job": {
                "type": "object",
                "required": ["id", "status", "created_at", "progress_percent", "source_folders", "attempts"],
                "properties": {
                    "id": { "type": "string", "format": "uuid" },
                    "status": { "type": "string", "enum": ["pending", "processing", "completed", "failed", "cancelled"] },
                    "created_at": { "type": "string" },
                    "started_at": { "type": "string", "nullable": true },
                    "finished_at": { "type": "string", "nullable": true },
                    "progress_percent": { "type": "number" },
                    "source_folders": { "type": "array", "items": { "type": "string" } },
                    "output_name": { "type": "string", "nullable": true },
                    "input_bytes": { "type": "integer", "nullable": true },
                    "output_bytes": { "type": "integer", "nullable": true },
                    "audio_duration_secs": { "type": "number", "nullable": true },
                    "attempts": { "type": "integer" },
                    "error": { "type": "object", "nullable": true },
                    "download_url": { "type": "string", "nullable": true }
                }
            },
            "ConvertRequest": {
                "type": "object",
                "required": ["folders"],
                "additionalProperties": false,
                "properties": { "folders": {
                    "type": "array", "minItems": 1, "maxItems": 100,
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "path": { "type": "string", "description": "folder relative to SOURCE_DIR" },
                            "paths": { "type": "array", "items": { "type": "string" }, "description": "several folders making one book" },
                            "output_name": { "type": "string", "nullable": true },
                            "metadata": { "type": "object" },
                            "order": { "type": "array", "items": { "type": "string" }, "description": "the files in this order (paths relative to the folder, as the plan's rel_path); others follow" },
                            "chapters": { "type": "array", "items": { "type": "string" }, "description": "chapter titles in the final order; an empty string keeps the planned title" },
                            "cover": {
                                "type": "object", "nullable": true, "required": ["kind"],
                                "description": "the cover: a folder image by name, an upload (POST /covers) by id, or none; absent: the plan's choice",
                                "properties": {
                                    "kind": { "type": "string", "enum": ["folder", "upload", "none"] },
                                    "name": { "type": "string" },
                                    "id": { "type": "string" }
                                }
                            },
                            "options": {
                                "type": "object",
                                "additionalProperties": false,
                                "properties": {
                                    "preset": { "type": "string", "enum": ["default", "speech", "source"] },
                                    "bitrate": { "type": "integer", "minimum": 0 },
                                    "sample_rate": { "type": "integer", "minimum": 0 },
                                    "channels": { "type": "integer", "minimum": 0 },
                                    "chapter_titles": { "type": "string", "enum": ["auto", "tags", "filenames"] },
                                    "allow_damaged": { "type": "boolean" }
                                }
                            }
                        }
                    }
                } }
            }
        }
    })
}

fn paths() -> Value {
    let job = json!({ "$ref": "#/components/schemas/Job" });
    let jobs_page = json!({
        "type": "object",
        "required": ["jobs", "total", "page", "per_page"],
        "properties": {
            "jobs": { "type": "array", "items": job },
            "total": { "type": "integer" },
            "page": { "type": "integer" },
            "per_page": { "type": "integer" }
        }
    });
    let sse = json!({ "description": "Server-Sent Events", "content": { "text/event-stream": { "schema": { "type": "string" } } } });
    let id = path_param("id");
    let name = path_param("name");
    let folder = path_param("path");
    let q = |n: &str, schema: Value| json!({ "name": n, "in": "query", "required": false, "schema": schema });
    let mut p = serde_json::Map::new();
    p.insert(
        "/health".into(),
        json!({ "get": op("liveness", json!([]), ("200", json_resp("alive", any_object())), &[]) }),
    );
    p.insert("/ready".into(), json!({ "get": op("readiness: store writable, disk space, encoder", json!([]), ("200", json_resp("ready", any_object())), &[]) }));
    p.insert("/stats".into(), json!({ "get": op("success rate, times, sizes, realtime factor", json!([]), ("200", json_resp("stats", any_object())), &["500"]) }));
    p.insert("/metrics".into(), json!({ "get": op("Prometheus metrics", json!([]), ("200", json!({ "description": "text", "content": { "text/plain": { "schema": { "type": "string" } } } })), &[]) }));
    p.insert("/folders".into(), json!({ "get": op("book folders under SOURCE_DIR", json!([]), ("200", json_resp("folders", any_object())), &["500"]) }));
    p.insert("/folders/{path}/plan".into(), json!({ "get": op("the conversion plan of a folder (path URL-encoded as one segment)", json!([folder]), ("200", json_resp("plan", any_object())), &["400", "403", "404", "422", "500"]) }));
    p.insert("/folders/{path}/cover".into(), json!({ "get": op("the folder's cover image", json!([folder]), ("200", json!({ "description": "image", "content": { "image/jpeg": { "schema": { "type": "string", "format": "binary" } }, "image/png": { "schema": { "type": "string", "format": "binary" } } } })), &["400", "403", "404", "422", "500"]) }));
    let image = json!({ "description": "the image", "content": {
        "image/jpeg": { "schema": { "type": "string", "format": "binary" } },
        "image/png": { "schema": { "type": "string", "format": "binary" } } } });
    let image_body = json!({ "type": "string", "format": "binary" });
    p.insert("/folders/{path}/images".into(), json!({ "get": op("the folder's JPEG and PNG images, and which one the plan picked", json!([folder.clone()]), ("200", json_resp("images", json!({
        "type": "object", "required": ["images", "planned"],
        "properties": {
            "images": { "type": "array", "items": { "type": "object",
                "required": ["name", "size_bytes", "type", "picked"],
                "properties": {
                    "name": { "type": "string" }, "size_bytes": { "type": "integer" },
                    "type": { "type": "string", "enum": ["image/jpeg", "image/png"] },
                    "width": { "type": "integer", "nullable": true },
                    "height": { "type": "integer", "nullable": true },
                    "picked": { "type": "boolean" }
                } } },
            "planned": { "type": "object", "nullable": true }
        } }))), &["400", "403", "404", "500"]) }));
    p.insert("/folders/{path}/images/{name}".into(), json!({ "get": op("one image of the folder, by file name", json!([folder, name.clone()]), ("200", image.clone()), &["400", "403", "404", "415", "500"]) }));
    p.insert("/covers".into(), json!({ "post": {
                "summary": "upload a cover image (JPEG or PNG, by content; at most 10 MiB); stored by content, answered with its id",
                "parameters": [],
                "requestBody": { "required": true, "content": {
                    "image/jpeg": { "schema": image_body.clone() },
                    "image/png": { "schema": image_body.clone() },
                    "application/octet-stream": { "schema": image_body } } },
                "responses": {
                    "201": json_resp("stored", json!({ "type": "object", "required": ["id", "type", "size_bytes", "url"],
                        "properties": { "id": { "type": "string" }, "type": { "type": "string" }, "size_bytes": { "type": "integer" },
                            "width": { "type": "integer", "nullable": true }, "height": { "type": "integer", "nullable": true },
                            "url": { "type": "string" } } })),
                    "400": json_resp("error", err_ref()), "401": json_resp("error", err_ref()),
                    "403": json_resp("error", err_ref()),
                    "413": json_resp("error", err_ref()), "415": json_resp("error", err_ref()),
                    "500": json_resp("error", err_ref()), "503": json_resp("error", err_ref())
                }
            } }));
    p.insert("/covers/{id}".into(), json!({ "get": op("an uploaded cover image", json!([id.clone()]), ("200", image), &["404", "500"]) }));
    p.insert("/convert".into(), json!({ "post": {
                "summary": "create one pending job per entry",
                "parameters": [{ "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string" } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ConvertRequest" } } } },
                "responses": {
                    "201": json_resp("created", json!({ "type": "object", "required": ["jobs"], "properties": { "jobs": { "type": "array", "items": job } } })),
                    "200": json_resp("the jobs of an earlier request with the same Idempotency-Key", any_object()),
                    "400": json_resp("error", err_ref()), "401": json_resp("error", err_ref()),
                    "403": json_resp("error", err_ref()), "404": json_resp("error", err_ref()),
                    "413": { "description": "body too large" },
                    "415": json_resp("error", err_ref()),
                    "422": json_resp("error", err_ref()), "429": json_resp("error", err_ref()),
                    "500": json_resp("error", err_ref()), "503": json_resp("error", err_ref())
                }
            } }));
    p.insert("/jobs".into(), json!({ "get": op("jobs, newest first", json!([
                q("status", json!({ "type": "string", "enum": ["pending", "processing", "completed", "failed", "cancelled"] })),
                q("text", json!({ "type": "string" })),
                q("created_after", json!({ "type": "string", "format": "date-time" })),
                q("created_before", json!({ "type": "string", "format": "date-time" })),
                q("page", json!({ "type": "integer", "minimum": 1 })),
                q("per_page", json!({ "type": "integer", "minimum": 1, "maximum": 500 }))
            ]), ("200", json_resp("a page of jobs", jobs_page)), &["400", "500"]) }));
    p.insert("/jobs/clear".into(), json!({ "post": op("archive finished jobs older than an age", json!([q("older_than", json!({ "type": "string", "example": "7d" }))]), ("200", json_resp("archived", any_object())), &["400", "500"]) }));
    p.insert("/jobs/{id}".into(), json!({
                "get": op("one job", json!([id]), ("200", json_resp("the job", job.clone())), &["404", "500"]),
                "delete": op("delete a finished job's record (and with delete_output=true its file)", json!([id, q("delete_output", json!({ "type": "boolean" }))]), ("204", json!({ "description": "deleted" })), &["400", "404", "409", "500"])
            }));
    p.insert("/jobs/{id}/cancel".into(), json!({ "post": op("cancel a pending or running job", json!([id]), ("200", json_resp("cancelled", job.clone())), &["404", "409", "500"]) }));
    p.insert("/jobs/{id}/retry".into(), json!({ "post": op("run a failed or cancelled job again, as a new job", json!([id]), ("201", json_resp("the new job", any_object())), &["403", "404", "409", "429", "500"]) }));
    p.insert("/jobs/{id}/events".into(), json!({ "get": op("the job's events (SSE); Last-Event-ID resumes", json!([id]), ("200", sse.clone()), &["404", "500"]) }));
    p.insert("/jobs/{id}/verify".into(), json!({ "get": op("the independent check of the job's output", json!([id]), ("200", json_resp("report", any_object())), &["404", "409", "422", "500"]) }));
    let log_params = json!([id,
        { "name": "after", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 0 } },
        { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }]);
    let log_line = json!({ "type": "object", "required": ["seq", "job_id", "time", "level", "target", "message", "fields"], "properties": {
        "seq": { "type": "integer" }, "job_id": { "type": "string", "format": "uuid" },
        "time": { "type": "string", "format": "date-time" }, "level": { "type": "string" },
        "target": { "type": "string" }, "message": { "type": "string" }, "fields": { "type": "object" } } });
    let log_page = json!({ "type": "object", "required": ["lines", "next"], "properties": {
        "lines": { "type": "array", "items": log_line }, "next": { "type": "integer" } } });
    p.insert("/jobs/{id}/log".into(), json!({ "get": op("the job's log lines, oldest first (?after=SEQ continues)", log_params, ("200", json_resp("lines", log_page)), &["400", "404", "500"]) }));
    p.insert(
        "/events".into(),
        json!({ "get": op("all jobs' events (SSE)", json!([]), ("200", sse), &[]) }),
    );
    p.insert("/download/{id}".into(), json!({ "get": op("the M4B of a completed job (Range, ETag)", json!([id]), ("200", json!({ "description": "the book", "content": { "audio/mp4": { "schema": { "type": "string", "format": "binary" } } } })), &["304", "404", "416", "500"]) }));
    p.insert("/backups".into(), json!({ "get": op("backups", json!([]), ("200", json_resp("backups", any_object())), &["500"]) }));
    p.insert("/backups/{name}/verify".into(), json!({ "post": op("check a backup's checksums", json!([name]), ("200", json_resp("report", any_object())), &["400", "403", "404", "422", "500"]) }));
    p.insert(
        "/backups/{name}/restore".into(),
        json!({ "post": {
                "summary": "restore a backup into a new folder under SOURCE_DIR",
                "parameters": [name],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["to"], "additionalProperties": false,
                    "properties": { "to": { "type": "string" } }
                } } } },
                "responses": {
                    "201": json_resp("restored", any_object()),
                    "400": json_resp("error", err_ref()), "401": json_resp("error", err_ref()),
                    "403": json_resp("error", err_ref()), "404": json_resp("error", err_ref()),
                    "409": json_resp("error", err_ref()), "415": json_resp("error", err_ref()),
                    "422": json_resp("error", err_ref()), "500": json_resp("error", err_ref()),
                    "503": json_resp("error", err_ref())
                }
            } }),
    );
    Value::Object(p)
}
