#![allow(clippy::unwrap_used)]
//! Races that matter, each with its invariant, repeated enough to catch an
//! interleaving (not timed).

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

const LINE: &str = "+14155550000";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linq_async_leave_racing_a_direct_removal_never_goes_below_three() {
    for round in 0..10 {
        let s = TestServer::with_world(
            Tenant::new("p")
                .line(LINE)
                .imessage_group(1, LINE, &["+14155550101", "+14155550102", "+14155550103"])
                .credential("linq_api_key", "k", None, None, &[])
                .credential("chert_signing", "c", None, None, &[])
                .world(),
        )
        .await;
        let uuid = s.chat("p", 1).await.uuid;
        let ch = s.chat("p", 1).await.chert_id();
        let (leave_path, remove_path) = (
            format!("/api/partner/v3/chats/{uuid}/leave"),
            format!("/api/v1/chats/{ch}/participants/%2B14155550101"),
        );
        let (leave, remove) = tokio::join!(
            s.call(Method::POST, &leave_path, &[("authorization", "Bearer k")], None),
            s.call(Method::DELETE, &remove_path, &[("authorization", "Bearer c")], None),
        );
        // Wait for the queued leave (if accepted) to settle.
        let mut leave_done = false;
        if leave.status == StatusCode::ACCEPTED {
            let trace = leave.body["trace_id"].as_str().unwrap();
            for _ in 0..200 {
                let op = s
                    .call(
                        Method::GET,
                        &format!("/api/partner/v3/operations/{trace}"),
                        &[("authorization", "Bearer k")],
                        None,
                    )
                    .await;
                if op.body["status"] != "queued" {
                    leave_done = op.body["status"] == "done";
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let removed = remove.status == StatusCode::OK;
        let members = s.members("p", 1).await.len();
        assert_eq!(members, 3, "round {round}: the size floor holds");
        assert!(
            leave_done ^ removed,
            "round {round}: exactly one change applied (leave {leave_done}, remove {removed})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owner_transfer_racing_owner_leave() {
    for round in 0..20 {
        let s = TestServer::with_world(
            Tenant::new("t")
                .user(1, "Owner")
                .user(2, "Bob")
                .user(3, "Carol")
                .group(10, 1, &[2, 3])
                .credential("vibecode_personal", "vibe_api_owner", Some(1), None, &["im"])
                .world(),
        )
        .await;
        let h = [("x-api-key", "vibe_api_owner")];
        let (a, b) = tokio::join!(
            s.call(Method::POST, "/v1/chats/10/leave", &h, None),
            s.call(Method::POST, "/v1/chats/10/owner", &h, Some(json!({"userId": 2}))),
        );
        // Either order is legal: the owner who left stays owner and may
        // still hand over (seed 000).
        assert_eq!(
            (a.status, b.status),
            (StatusCode::OK, StatusCode::OK),
            "round {round}: {} / {}",
            a.text,
            b.text
        );
        assert_eq!(
            s.chat("t", 10).await.owner_id,
            Some(confab_core::UserId(2)),
            "round {round}"
        );
        assert_eq!(s.members("t", 10).await, vec![2, 3], "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_add_and_remove_of_the_same_user() {
    for round in 0..20 {
        let s = TestServer::with_world(
            Tenant::new("t")
                .user(1, "Owner")
                .user(2, "Bob")
                .group(10, 1, &[2])
                .world(),
        )
        .await;
        let (add, remove) = tokio::join!(
            s.admin(
                Method::POST,
                "/admin/v1/tenants/t/chats/10/members",
                Some(json!({"member": 2}))
            ),
            s.admin(Method::DELETE, "/admin/v1/tenants/t/chats/10/members/2", None),
        );
        let r = s.admin(Method::GET, "/admin/v1/tenants/t/chats/10", None).await;
        let history = r.body["history"].as_array().unwrap();
        let active: Vec<_> = history
            .iter()
            .filter(|m| m["user_id"] == 2 && m["left_at"].is_null())
            .collect();
        assert!(active.len() <= 1, "round {round}: never two active rows for one user");
        let is_member = s.members("t", 10).await.contains(&2);
        // add-then-remove leaves Bob out; remove-then-add brings him back.
        let added_after = add.body["added"] == true;
        assert_eq!(remove.status, StatusCode::OK, "round {round}: {}", remove.text);
        assert_eq!(
            is_member, added_after,
            "round {round}: membership matches the order the store applied"
        );
    }
}
