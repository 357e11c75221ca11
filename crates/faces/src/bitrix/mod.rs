//! The Bitrix24 REST face (`/rest/...`): incoming webhooks
//! (`/rest/{user_id}/{code}/{method}[.json]`) and OAuth
//! (`/rest/{method}` + `auth`), every parameter encoding, the
//! `result`/`time` envelope, system errors, the portal bucket, the
//! `operating` limit and `batch`. Methods are in `methods.rs` / `v2.rs`.

pub mod auth;
pub mod batch;
pub mod envelope;
pub mod errors;
pub mod events;
pub mod methods;
pub mod openapi;
pub mod operating;
pub mod params;
pub mod v2;

use crate::common::now;
use crate::AppState;
use auth::Presented;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use envelope::{system, Clock};
use errors::BitrixError;
use params::Params;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi/bitrix.json", get(|| async { Json(openapi::document()) }))
        .route("/rest/{*path}", any(handle))
}

/// Method names are case-insensitive; `.json` (and `.xml`) suffixes are
/// dropped — confab always answers JSON.
fn normalize(method: &str) -> String {
    let m = method.trim().to_ascii_lowercase();
    m.strip_suffix(".json")
        .or_else(|| m.strip_suffix(".xml"))
        .unwrap_or(&m)
        .to_string()
}

/// Reads the body by its content type into `p`.
async fn read_body(p: &mut Params, headers: &HeaderMap, body: Bytes) -> Result<(), BitrixError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(());
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(&ct)
            .map_err(|e| BitrixError::new(400, "INVALID_REQUEST", format!("Invalid multipart body: {e}")))?;
        let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
        let mut mp = multer::Multipart::new(stream, boundary);
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| BitrixError::new(400, "INVALID_REQUEST", format!("Invalid multipart body: {e}")))?
        {
            let name = field.name().unwrap_or_default().to_string();
            let text = field
                .text()
                .await
                .map_err(|e| BitrixError::new(400, "INVALID_REQUEST", format!("Invalid multipart body: {e}")))?;
            p.insert(&name, Value::String(text));
        }
        return Ok(());
    }
    let looks_json =
        ct.contains("json") || (!ct.contains("x-www-form-urlencoded") && body.first().is_some_and(|b| *b == b'{'));
    if looks_json {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| BitrixError::new(400, "INVALID_REQUEST", format!("Invalid JSON body: {e}")))?;
        if !p.merge_json(v) {
            return Err(BitrixError::new(
                400,
                "INVALID_REQUEST",
                "The JSON body must be an object of parameters",
            ));
        }
        return Ok(());
    }
    p.merge_form(&String::from_utf8_lossy(&body));
    Ok(())
}

async fn handle(
    State(st): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Path(path): Path<String>,
    body: Bytes,
) -> Response {
    match serve(&st, &uri, &headers, &path, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    st: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    path: &str,
    body: Bytes,
) -> Result<Response, BitrixError> {
    let clock = Clock::start();
    // b24jssdk in OAuth mode asks for `/rest//method`: empty segments drop.
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (webhook, method) = match segs.as_slice() {
        [user, code, m] if user.parse::<i64>().is_ok() => {
            (Some((user.parse::<i64>().unwrap_or(0), code.to_string())), normalize(m))
        }
        [m] => (None, normalize(m)),
        _ => return Err(system::method_not_found()),
    };
    let mut p = Params::default();
    if let Some(q) = uri.query() {
        p.merge_form(q);
    }
    read_body(&mut p, headers, body).await?;
    let presented = match webhook {
        Some((user_id, code)) => Presented::Webhook { user_id, code },
        None => {
            let from_params = p
                .remove("auth")
                .and_then(|v| v.as_str().map(str::to_owned))
                .filter(|t| !t.is_empty());
            let from_header = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(|t| t.trim().to_string());
            match from_params.or(from_header) {
                Some(t) => Presented::Token(t),
                None => Presented::Nothing,
            }
        }
    };
    let ctx = auth::authenticate(st, presented).await?;
    let scope = methods::scope_of(&method).ok_or_else(system::method_not_found)?;
    if !scope.is_empty() && !ctx.scopes.iter().any(|s| s == scope) {
        return Err(system::insufficient_scope(ctx.webhook));
    }
    if st.portal_limiter.hit(ctx.tenant.id).await.is_err() {
        return Err(system::query_limit());
    }
    let now = now();
    // "The outer batch call is not counted; nested calls are" (limits.md):
    // batch::run checks and records each command itself.
    if method == "batch" {
        let result = batch::run(st, &ctx, &p).await;
        return Ok(envelope::success(json!({"result": result, "time": clock.time(0.0, 0)})));
    }
    if st.operating.check(ctx.credential_id, &method, now).is_err() {
        return Err(system::operation_time_limit());
    }
    let o = methods::call(st, &ctx, &method, &p).await?;
    let (result, total, next) = (o.result, o.total, o.next);
    let usage = st.operating.record(ctx.credential_id, &method, now, clock.elapsed());
    let mut body = json!({"result": result, "time": clock.time(usage.operating, usage.reset_at)});
    if let Some(t) = total {
        body["total"] = json!(t);
    }
    if let Some(n) = next {
        body["next"] = json!(n);
    }
    Ok(envelope::success(body))
}
