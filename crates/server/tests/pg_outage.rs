#![allow(clippy::unwrap_used)]
//! The PostgreSQL server goes away mid-run and comes back (issue #8). This
//! test stops and starts a PostgreSQL cluster of its own (the suite's shared
//! one stays up for the other tests), so it runs on PostgreSQL runs only.
//!
//! While the database is down every face answers with its own
//! "unavailable" error; when it is back the node recovers by itself (the
//! pool drops dead connections and opens new ones), with no restart.

mod common;

use common::*;
use confab_faces::chert::auth::sign;
use reqwest::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const LINE: &str = "+14155550000";

fn pg_cluster(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-cluster");
    let out = Command::new(script)
        .args(args)
        .output()
        .expect("run scripts/pg-cluster");
    assert!(
        out.status.success(),
        "scripts/pg-cluster {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Cluster {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let parent = tempfile::Builder::new().prefix("confab-outage").tempdir().unwrap();
        std::fs::set_permissions(parent.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let dir = parent.path().join("cluster");
        pg_cluster(&["start", dir.to_str().unwrap()]);
        Cluster { dir, _parent: parent }
    }
    fn path(&self) -> &Path {
        &self.dir
    }
    fn url(&self) -> String {
        let port = std::fs::read_to_string(self.dir.join("port")).unwrap();
        format!("postgres://confab@127.0.0.1:{}/postgres?sslmode=disable", port.trim())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-cluster"))
            .args(["stop", self.dir.to_str().unwrap()])
            .output();
    }
}

fn world() -> confab_faces::admin::world::World {
    Tenant::new("acme")
        .line(LINE)
        .imessage_group(
            1,
            LINE,
            &["+14155550101", "+14155550102", "+14155550103", "+14155550104"],
        )
        .user(1, "Alice")
        .user(2, "Bob")
        .user(3, "Carol")
        .group(10, 1, &[2])
        .credential("chert_signing", "chert-secret", None, None, &[])
        .credential("linq_api_key", "linq-key", None, None, &[])
        .credential("bitrix_webhook", "hook", Some(1), None, &["im", "imbot"])
        .credential("vibecode_personal", "vibe_api_alice", Some(1), None, &["im"])
        .world()
}

/// One request per face; (status, body).
async fn each_face(s: &TestServer) -> Vec<(&'static str, u16, Value)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut out = Vec::new();
    let r = s
        .call(Method::GET, "/v1/chats/10", &[("x-api-key", "vibe_api_alice")], None)
        .await;
    out.push(("vibecode", r.status.as_u16(), r.body));
    let r = s
        .call(
            Method::POST,
            // A method that reads the database (authentication may be
            // answered from the node's credential cache).
            "/rest/1/hook/im.chat.user.list",
            &[],
            Some(json!({"CHAT_ID": 10})),
        )
        .await;
    out.push(("bitrix", r.status.as_u16(), r.body));
    let sig = format!("v1,{now},{}", sign("chert-secret", now, b""));
    let r = s
        .call(
            Method::GET,
            "/api/v1/phone-numbers",
            &[("x-chert-tenant", "acme"), ("x-chert-signature", sig.as_str())],
            None,
        )
        .await;
    out.push(("chert", r.status.as_u16(), r.body));
    let r = s
        .call(
            Method::GET,
            "/api/partner/v3/phone_numbers",
            &[("authorization", "Bearer linq-key")],
            None,
        )
        .await;
    out.push(("linq", r.status.as_u16(), r.body));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_only_database_restart_fails_cleanly_then_recovers() {
    let cluster = Cluster::start();
    let opts = confab_store::PgOptions {
        pool_size: 4,
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let s = TestServer::on_database(&cluster.url(), &opts).await;
    s.apply(world()).await;
    for (face, status, body) in each_face(&s).await {
        assert_eq!(status, 200, "{face} before the outage: {body}");
    }

    pg_cluster(&["stop", cluster.path().to_str().unwrap()]);
    for (face, status, body) in each_face(&s).await {
        match face {
            "vibecode" => {
                assert_eq!(status, 502, "{body}");
                assert_eq!(body["error"]["code"], "BITRIX_UNAVAILABLE", "{body}");
            }
            "bitrix" => {
                assert_eq!(status, 500, "{body}");
                assert_eq!(body["error"], "INTERNAL_SERVER_ERROR", "{body}");
            }
            "chert" => {
                assert_eq!(status, 503, "{body}");
                assert_eq!(body["error"]["code"], 3001, "{body}");
                assert_eq!(body["error"]["retryable"], true, "{body}");
            }
            _ => {
                assert_eq!(status, 500, "{body}");
                assert_eq!(body["error"]["code"], 3006, "{body}");
            }
        }
    }
    let r = s.call(Method::GET, "/readyz", &[], None).await;
    assert_eq!(
        r.status.as_u16(),
        503,
        "not ready while the database is down: {}",
        r.text
    );

    pg_cluster(&["resume", cluster.path().to_str().unwrap()]);
    // Recovery by itself: within a few seconds every face answers again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let results = each_face(&s).await;
        if results.iter().all(|(_, status, _)| *status == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after the database came back: {results:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And it stays recovered: writes go through.
    let r = s
        .call(
            Method::POST,
            "/rest/1/hook/im.chat.user.add",
            &[],
            Some(json!({"CHAT_ID": 10, "USERS": [3]})),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    let r = s.call(Method::GET, "/readyz", &[], None).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
}

/// `sslmode` over a real TLS server: `require` encrypts (pg_stat_ssl says
/// so) without checking the certificate; `verify-full` with the server's
/// certificate as `sslrootcert` connects; `verify-full` with another
/// certificate is refused; `disable` stays plain.
#[tokio::test]
async fn pg_only_sslmode_require_and_verify_full() {
    let parent = tempfile::Builder::new().prefix("confab-ssl").tempdir().unwrap();
    std::fs::set_permissions(parent.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dir = parent.path().join("cluster");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-cluster");
    let out = Command::new(script)
        .args(["start", dir.to_str().unwrap()])
        .env("PG_CLUSTER_SSL", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cluster = Cluster { dir, _parent: parent };
    let base = cluster.url().replace("?sslmode=disable", "");
    let encrypted = |url: String| async move {
        let (config, tls) = confab_store::postgres::parse_url(&url)?;
        let (client, conn) = config.connect(tls).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let row = client
            .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok::<bool, String>(row.get(0))
    };
    assert_eq!(encrypted(format!("{base}?sslmode=require")).await, Ok(true));
    assert_eq!(encrypted(format!("{base}?sslmode=disable")).await, Ok(false));
    let crt = cluster.path().join("server.crt");
    assert_eq!(
        encrypted(format!("{base}?sslmode=verify-full&sslrootcert={}", crt.display())).await,
        Ok(true)
    );
    // Another certificate as the root: the server's is not trusted.
    let other = tempfile::tempdir().unwrap();
    let other_crt = other.path().join("other.pem");
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(&other_crt, generated.cert.pem()).unwrap();
    let refused = encrypted(format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        other_crt.display()
    ))
    .await;
    assert!(refused.is_err(), "{refused:?}");
    // And the store itself runs over TLS.
    let url = format!("{base}?sslmode=require");
    let s = TestServer::on_database(&url, &confab_store::PgOptions::default()).await;
    s.apply(world()).await;
    for (face, status, body) in each_face(&s).await {
        assert_eq!(status, 200, "{face} over TLS: {body}");
    }
}
