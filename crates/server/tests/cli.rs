#![allow(clippy::unwrap_used)]
//! The `confab` binary as a user runs it: demo start (twice), bad data
//! directories, newer schemas, world files, graceful shutdown.

mod common;

use common::process::{confab, start as start_at, stop};
use std::io::{BufRead, BufReader};

/// Starts `confab serve` and returns it with its base URL.
fn start(dir: &std::path::Path, args: &[&str]) -> (std::process::Child, String) {
    let (child, listen) = start_at(dir, args);
    (child, format!("http://{listen}"))
}

fn get(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::get(url).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

fn get_auth(url: &str, token: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

#[test]
fn demo_starts_prints_credentials_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = start(dir.path(), &["--demo"]);
    assert_eq!(get(&format!("{base}/readyz")).0, 200);
    let (status, out) = stop(child);
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    for needle in [
        "demowebhookcode1",
        "vibe_api_demo_personal_key",
        "demo-chert-signing-secret",
        "demo-linq-api-key",
        "admin token (shown once, now):",
        "curl -X POST",
    ] {
        assert!(out.contains(needle), "demo output lacks {needle}:\n{out}");
    }
    let token = out
        .lines()
        .find_map(|l| l.split("admin token (shown once, now):").nth(1))
        .unwrap()
        .trim()
        .to_string();
    if common::process::run_database(dir.path()).is_none() {
        assert!(
            dir.path().join("confab-data/confab.db").exists(),
            "default database under ./confab-data/"
        );
    }

    // Second start: nothing duplicated, the admin token is not printed again.
    let (child, base) = start(dir.path(), &["--demo"]);
    let (code, body) = get_auth(&format!("{base}/admin/v1/tenants/demo"), &token);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["chats"].as_array().unwrap().len(), 7);
    assert_eq!(
        v["users"].as_array().unwrap().len(),
        5 + 2 + 1 + 9,
        "5 people, 2 bots, 1 line, 9 iMessage contacts"
    );
    assert_eq!(v["credentials"].as_array().unwrap().len(), 8);
    let (_, out) = stop(child);
    assert!(!out.contains("shown once, now"), "token printed again:\n{out}");
}

#[test]
fn unwritable_data_directory_fails_clearly() {
    let out = confab()
        .args(["serve", "--database-url", "sqlite:///proc/confab-nope/x.db"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot create the data directory /proc/confab-nope"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let url = format!("sqlite://{}", db.display());
    let out = confab()
        .args(["--database-url", &url, "tenant", "create", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c = set_user_version(&db, 42);
    assert!(c, "could not bump the schema version");
    let out = confab().args(["--database-url", &url, "serve"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("schema version 42, newer than this confab"), "{err}");
}

/// Sets `PRAGMA user_version` by patching the header bytes (offset 60,
/// big-endian u32) directly. The write-ahead log goes too: a page 1 still
/// in it would shadow the patched header (the CLI process that wrote it
/// exits without a final checkpoint).
fn set_user_version(db: &std::path::Path, v: u32) -> bool {
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", db.display()));
    }
    let mut bytes = std::fs::read(db).unwrap();
    if bytes.len() < 100 {
        return false;
    }
    bytes[60..64].copy_from_slice(&v.to_be_bytes());
    std::fs::write(db, bytes).is_ok()
}

#[test]
fn world_apply_twice_changes_nothing_and_cli_builds_a_world() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    let file = dir.path().join("world.toml");
    std::fs::write(&file, confab_server::demo::DEMO_WORLD).unwrap();
    let run = |args: &[&str]| {
        let out = confab().arg("--database-url").arg(&url).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = run(&["world", "apply", file.to_str().unwrap()]);
    assert!(first["created"].as_u64().unwrap() > 0);
    let second = run(&["world", "apply", file.to_str().unwrap()]);
    assert_eq!(second["created"], 0);

    run(&["tenant", "create", "acme"]);
    let u = run(&["user", "add", "--tenant", "acme", "--name", "Alice", "--id", "7"]);
    assert_eq!(u["id"], 7);
    let c = run(&[
        "credential",
        "create",
        "--tenant",
        "acme",
        "--kind",
        "bitrix_webhook",
        "--user",
        "7",
        "--scopes",
        "im,imbot",
    ]);
    assert_eq!(c["scopes"], serde_json::json!(["im", "imbot"]));
    assert_eq!(c["secret"].as_str().unwrap().len(), 16);
    run(&["user", "add", "--tenant", "acme", "--name", "Bob", "--id", "8"]);
    let chat = run(&[
        "chat",
        "create",
        "--tenant",
        "acme",
        "--id",
        "3",
        "--owner",
        "7",
        "--members",
        "8",
    ]);
    assert_eq!(chat["owner_id"], 7);
    let list = run(&["tenant", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);

    let out = confab()
        .arg("--database-url")
        .arg(&url)
        .args(["user", "add", "--tenant", "nope", "--name", "X"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant \"nope\" not found"));
}

#[test]
fn generated_admin_token_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let (child, _) = start(dir.path(), &[]);
    let (_, out) = stop(child);
    let line = BufReader::new(out.as_bytes())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("Generated admin token"));
    assert!(line.is_some(), "{out}");
    let (child, _) = start(dir.path(), &[]);
    let (_, out) = stop(child);
    assert!(!out.contains("Generated admin token"), "{out}");
}

/// The demo banner's curl lines, run in order by a shell as a user pastes
/// them, all succeed (needs curl and openssl: apt-get install curl openssl).
#[test]
fn every_demo_curl_works_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = start(dir.path(), &["--demo"]);
    // The same banner the server printed (its stdout is read only at exit).
    let banner = confab_server::demo::banner(&base, None);
    let cmds: Vec<&str> = banner
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("curl ") || l.starts_with("TS="))
        .collect();
    assert!(cmds.len() >= 8, "{banner}");
    let script = cmds
        .iter()
        .map(|c| {
            if c.starts_with("curl ") {
                format!("{} -s -w '\\n%{{http_code}}\\n'", c)
            } else {
                c.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("bash is needed (apt-get install bash curl openssl): {e}"));
    stop(child);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let codes: Vec<&str> = text
        .lines()
        .filter(|l| l.len() == 3 && l.chars().all(|c| c.is_ascii_digit()))
        .collect();
    let curls = cmds.iter().filter(|c| c.starts_with("curl ")).count();
    assert_eq!(
        codes.len(),
        curls,
        "curl (and openssl) must be installed: apt-get install curl openssl\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (code, body) in codes.iter().zip(text.lines().filter(|l| l.starts_with('{'))) {
        assert!(code.starts_with('2'), "a demo curl failed with {code}: {body}\n{text}");
        assert!(!body.contains("\"error\""), "{body}");
    }
}
