#![allow(clippy::unwrap_used)]
//! schemathesis (PyPI) generates requests from every face's OpenAPI
//! document against the real binary: none may answer with a 5xx other than
//! those the document lists, and every response must have a documented
//! status, content type and a body matching the documented schema (the
//! success envelope and each face's error envelope). Path parameters carry
//! examples naming the demo world's chats, so the success bodies are
//! checked too, not only the errors.
//! `scripts/test` installs schemathesis into `.sdk/venv`.

mod common;

use common::process::{start, stop};
use std::path::Path;
use std::process::Command;

#[test]
fn generated_requests_get_documented_statuses_and_bodies_on_every_face() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let st = repo.join(".sdk/venv/bin/schemathesis");
    assert!(
        st.exists(),
        "schemathesis is not installed ({} missing). Run scripts/test, which installs it, or: \
         python3 -m venv .sdk/venv && .sdk/venv/bin/pip install -r tests/sdk/requirements.txt",
        st.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let (child, listen) = start(
        dir.path(),
        &[
            "--demo",
            "--admin-token",
            "adm",
            "--bitrix-rate-limit",
            "off",
            "--linq-rate-limit",
            "off",
        ],
    );
    let base = format!("http://{listen}");
    let mut failures = Vec::new();
    for (doc, header, examples) in [
        ("vibecode.json", "X-Api-Key: vibe_api_demo_owner_key", "15"),
        (
            "chert.json",
            "Authorization: Bearer demo-chert-signing-secret-0123456789",
            "15",
        ),
        ("linq.json", "Authorization: Bearer demo-linq-api-key", "15"),
        ("bitrix.json", "Authorization: Bearer demo-oauth-access-token", "3"),
        // Last: its generated PATCHes deactivate the demo line and users,
        // after which the faces' documented 502 (delivery failed) answers.
        ("admin.json", "Authorization: Bearer adm", "15"),
    ] {
        let out = Command::new(&st)
            .args([
                "run",
                &format!("{base}/openapi/{doc}"),
                "-u",
                &base,
                "-H",
                header,
                "-c",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "-n",
                examples,
            ])
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{doc}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    stop(child);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
