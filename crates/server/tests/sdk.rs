#![allow(clippy::unwrap_used)]
//! The official SDKs, unchanged, against the real `confab` binary over
//! HTTPS (self-signed certificate, trusted through the SDKs' usual
//! environment variables). `scripts/test` installs the SDKs; without them
//! these tests fail and say how to install them.

mod common;

use common::process::{start, stop};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn need(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} is not installed ({} missing). Run scripts/test, which installs it, or by hand: \
         npm ci --prefix tests/sdk/node && python3 -m venv .sdk/venv && .sdk/venv/bin/pip install -r tests/sdk/requirements.txt \
         (Debian: apt-get install nodejs npm python3-venv)",
        path.display()
    );
}

/// Runs a scenario script against a fresh HTTPS confab with the SDK world.
fn scenario(program: &Path, script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let world = repo().join("tests/sdk/bitrix_world.toml");
    // A small portal bucket so the scenario's burst really is refused
    // (503 QUERY_LIMIT_EXCEEDED) and the SDK has to ride it out.
    let (child, listen) = start(
        dir.path(),
        &[
            "--tls-self-signed",
            "--world",
            world.to_str().unwrap(),
            "--bitrix-rate-limit",
            "4/8",
            "--admin-token",
            "t",
        ],
    );
    let cert = dir.path().join("confab-data/tls/cert.pem");
    let out = Command::new(program)
        .arg(repo().join("tests/sdk").join(script))
        .current_dir(repo().join("tests/sdk/node"))
        .env("B24_WEBHOOK", format!("https://{listen}/rest/1/sdkhook/"))
        .env("NODE_EXTRA_CA_CERTS", &cert)
        .env("NODE_PATH", repo().join("tests/sdk/node/node_modules"))
        .env("REQUESTS_CA_BUNDLE", &cert)
        .env("SSL_CERT_FILE", &cert)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let (_, _) = stop(child);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("scenario ok"),
        "{script} failed:\n{stdout}\n{stderr}"
    );
}

fn node() -> PathBuf {
    need(
        &repo().join("tests/sdk/node/node_modules/@bitrix24/b24jssdk"),
        "@bitrix24/b24jssdk",
    );
    PathBuf::from("node")
}

fn python() -> PathBuf {
    let py = repo().join(".sdk/venv/bin/python");
    need(&py, "the Python SDK venv");
    py
}

#[test]
fn b24jssdk_scenario() {
    scenario(&node(), "bitrix_b24jssdk.cjs");
}

#[test]
fn b24pysdk_scenario() {
    scenario(&python(), "bitrix_b24pysdk.py");
}

#[test]
fn fast_bitrix24_scenario() {
    scenario(&python(), "bitrix_fast_bitrix24.py");
}

#[test]
fn linq_sdk_scenario() {
    let node = {
        need(&repo().join("tests/sdk/node/node_modules/@linqapp/sdk"), "@linqapp/sdk");
        PathBuf::from("node")
    };
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world.toml");
    std::fs::write(
        &world,
        "[[tenants]]\nslug = \"partner\"\nlines = [{ number = \"+14155550000\" }]\ncredentials = [{ kind = \"linq_api_key\", secret = \"sdk-linq-key\" }]\n",
    )
    .unwrap();
    let (child, listen) = start(dir.path(), &["--world", world.to_str().unwrap(), "--admin-token", "t"]);
    let out = Command::new(&node)
        .arg(repo().join("tests/sdk/linq_sdk.cjs"))
        .env("NODE_PATH", repo().join("tests/sdk/node/node_modules"))
        .env("LINQ_API_V3_BASE_URL", format!("http://{listen}/api/partner"))
        .env("LINQ_API_V3_API_KEY", "sdk-linq-key")
        .env("LINQ_LINE", "+14155550000")
        .output()
        .unwrap_or_else(|e| panic!("cannot run node (apt-get install nodejs npm): {e}"));
    stop(child);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("scenario ok"),
        "linq_sdk.cjs failed:\n{stdout}\n{stderr}"
    );
}
