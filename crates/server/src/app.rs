//! The router with its cross-cutting layers: request id, one tracing span
//! per request, timeout, body limit (413 as JSON), panic catcher (500 as
//! JSON), health and readiness.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use confab_faces::AppState;
use serde_json::json;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub request_timeout: Duration,
    pub body_limit: usize,
    /// Time to receive a request's line and headers (see `startup::serve_http`).
    pub header_read_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            request_timeout: Duration::from_secs(30),
            body_limit: 1024 * 1024,
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

fn error_body(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// Layers that answer before a face sees the request (body too large,
/// timeout) produce empty bodies; give them a JSON one.
async fn json_for_bare_errors<B>(res: Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return res.into_response();
    }
    match res.status() {
        StatusCode::PAYLOAD_TOO_LARGE => error_body(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body exceeds the size limit",
        ),
        StatusCode::REQUEST_TIMEOUT => error_body(StatusCode::REQUEST_TIMEOUT, "timeout", "the request took too long"),
        _ => res.into_response(),
    }
}

fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = %detail, "request handler panicked");
    error_body(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(st): State<AppState>) -> Response {
    match st.store.ping().await {
        Ok(()) => Json(json!({"status": "ready", "store": st.store.backend()})).into_response(),
        Err(e) => error_body(StatusCode::SERVICE_UNAVAILABLE, "not_ready", &e.to_string()),
    }
}

async fn fallback(req: Request<Body>) -> Response {
    error_body(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

pub fn build(state: AppState, limits: &HttpLimits) -> Router {
    let health = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state.clone());
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    let scrape = Router::new()
        .route("/metrics", get(crate::metrics::scrape))
        .with_state((metrics.clone(), state.clone()));
    let routed = confab_faces::router(state)
        .merge(health)
        .merge(scrape)
        .layer(axum::middleware::from_fn_with_state(metrics, crate::metrics::track))
        .fallback(fallback);
    with_layers(routed, limits)
}

/// The request path as it may be logged: a Bitrix incoming webhook carries
/// its secret code in the path (`/rest/{user}/{code}/{method}`), which is
/// masked. (Query strings, which may carry `auth=`, are never logged.)
pub fn loggable_path(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').collect();
    match segs.as_slice() {
        ["", "rest", user, _code, rest @ ..] if user.parse::<i64>().is_ok() && !rest.is_empty() => {
            format!("/rest/{user}/***/{}", rest.join("/"))
        }
        _ => path.to_string(),
    }
}

/// Wraps any router in confab's cross-cutting layers.
///
/// The layers wrap the router once, as one service, instead of through
/// `Router::layer`, which wraps every route in each of them: a route's
/// service is cloned for every request, and with seven layers each a boxed
/// route of its own, that was some forty allocations per request (callgrind,
/// BENCHMARKS.md, session 8). Nothing here needs the matched route; the
/// metrics layer, which does, stays on the routes (see `build`).
pub fn with_layers(router: Router, limits: &HttpLimits) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info_span!("request", method = %req.method(), path = %loggable_path(req.uri().path()), request_id = %id)
    });
    // Outermost first.
    let service = tower::ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(trace)
        // Outside the limit and timeout layers, which answer on their own.
        .layer(axum::middleware::map_response(json_for_bare_errors))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(RequestBodyLimitLayer::new(limits.body_limit))
        .service(router);
    Router::new().fallback_service(service)
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn webhook_codes_are_masked_in_logs() {
        assert_eq!(
            loggable_path("/rest/1/secretcode/im.chat.leave.json"),
            "/rest/1/***/im.chat.leave.json"
        );
        assert_eq!(loggable_path("/rest/im.chat.leave"), "/rest/im.chat.leave");
        assert_eq!(loggable_path("/v1/chats/1/leave"), "/v1/chats/1/leave");
    }
}
