//! `GET /metrics` in the Prometheus text format: requests by face, route
//! and status, request latency histograms per face, store transaction
//! latency and group-commit size, webhook attempt latency
//! (`confab_store::stats`), and at scrape time the outbox depth and the
//! queued operations.

use axum::body::Body;
use axum::extract::{MatchedPath, State};
use axum::http::{header, HeaderValue, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use confab_faces::AppState;
use confab_store::stats::Histogram;
use confab_store::StoreExt;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram<12>>>,
}

/// Which face a path belongs to.
pub fn face_of(path: &str) -> &'static str {
    if path.starts_with("/rest/") {
        "bitrix"
    } else if path.starts_with("/v1/") {
        "vibecode"
    } else if path.starts_with("/api/v1/") {
        "chert"
    } else if path.starts_with("/api/partner/") {
        "linq"
    } else if path.starts_with("/admin/") {
        "admin"
    } else {
        "other"
    }
}

impl Metrics {
    pub fn record(&self, face: &str, method: &str, route: &str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((face.to_string(), method.to_string(), route.to_string(), status))
                .or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            l.entry(face.to_string())
                .or_insert_with(|| Histogram::new(BUCKETS))
                .observe(seconds);
        }
    }

    pub fn render(&self, depths: Option<(i64, i64)>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP confab_http_requests_total HTTP requests by face, method, route and status."
        );
        let _ = writeln!(out, "# TYPE confab_http_requests_total counter");
        if let Ok(r) = self.requests.lock() {
            for ((face, method, route, status), n) in r.iter() {
                let _ = writeln!(out, "confab_http_requests_total{{face=\"{face}\",method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP confab_http_request_duration_seconds Request latency by face."
        );
        let _ = writeln!(out, "# TYPE confab_http_request_duration_seconds histogram");
        if let Ok(l) = self.latency.lock() {
            for (face, h) in l.iter() {
                h.render(
                    &mut out,
                    "confab_http_request_duration_seconds",
                    &format!("face=\"{face}\""),
                );
            }
        }
        confab_store::stats::render(&mut out);
        if let Some((deliveries, operations)) = depths {
            let _ = writeln!(
                out,
                "# HELP confab_outbox_pending Webhook deliveries waiting to be sent."
            );
            let _ = writeln!(out, "# TYPE confab_outbox_pending gauge");
            let _ = writeln!(out, "confab_outbox_pending {deliveries}");
            let _ = writeln!(
                out,
                "# HELP confab_operations_queued Asynchronous operations not yet carried out."
            );
            let _ = writeln!(out, "# TYPE confab_operations_queued gauge");
            let _ = writeln!(out, "confab_operations_queued {operations}");
        }
        out
    }
}

/// Middleware: counts and times every request.
pub async fn track(State(m): State<Arc<Metrics>>, req: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let res = next.run(req).await;
    m.record(
        face_of(&path),
        &method,
        &route,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    res
}

pub async fn scrape(State((m, st)): State<(Arc<Metrics>, AppState)>) -> Response {
    let depths = st.store.read(|tx| tx.queue_depths()).await.ok();
    let mut res = m.render(depths).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
}
