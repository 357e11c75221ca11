#![allow(clippy::unwrap_used)]
//! Property: any sequence of membership commands, from any face's policy,
//! keeps every invariant — an iMessage group never drops below 3, nobody is
//! active twice in one chat, history is never rewritten, a refused command
//! changes nothing, and every applied change has exactly one event.

use confab_core::commands::{self, *};
use confab_core::policy::RemovePolicy;
use confab_core::tx::NewUser;
use confab_core::*;
use confab_store::{Store, StoreExt};
use proptest::prelude::*;
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Op {
    LineLeaves,
    RemoveHandle(u8),
    AddHandle(u8),
    UserLeaves(u8),
    Transfer(u8),
    BitrixRemove(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::LineLeaves),
        (0u8..8).prop_map(Op::RemoveHandle),
        (0u8..8).prop_map(Op::AddHandle),
        (1u8..6).prop_map(Op::UserLeaves),
        (1u8..6).prop_map(Op::Transfer),
        (1u8..6).prop_map(Op::BitrixRemove),
    ]
}

struct World {
    store: Arc<dyn Store>,
    tenant: TenantId,
    imessage: ChatId,
    group: ChatId,
    _db: confab_store::testing::TestDb,
}

fn handle(i: u8) -> String {
    format!("+1415555020{i}")
}

async fn world() -> World {
    let db = confab_store::testing::fresh_store().await;
    let store = db.store.clone();
    let (tenant, imessage, group) = store
        .write(|tx| {
            let t = tx.insert_tenant("p", "P")?;
            let lu = tx.insert_user(NewUser {
                tenant_id: t.id,
                id: Some(UserId(50)),
                kind: UserKind::Line,
                name: "line".into(),
                handle: Some("+14155550000".into()),
                active: true,
                app_id: None,
            })?;
            tx.insert_line(t.id, "+14155550000", lu.id)?;
            for u in 1..6 {
                tx.insert_user(confab_store::testing::person(t.id, u))?;
            }
            let (im, _) = commands::create_chat(
                tx.as_tx(),
                &CreateChat {
                    tenant: t.id,
                    id: None,
                    uuid: None,
                    kind: ChatKind::Group,
                    network: Network::Imessage,
                    title: String::new(),
                    creator: Some(Creator::Line("+14155550000".into())),
                    members: (0..4).map(|i| MemberRef::Handle(handle(i))).collect(),
                    chat_key: Some("k".into()),
                    crm: None,
                    trace_id: None,
                },
            )?;
            let (g, _) = commands::create_chat(
                tx.as_tx(),
                &CreateChat {
                    tenant: t.id,
                    id: None,
                    uuid: None,
                    kind: ChatKind::Group,
                    network: Network::Internal,
                    title: String::new(),
                    creator: Some(Creator::User(UserId(1))),
                    members: (2..6).map(|u| MemberRef::Id(UserId(u))).collect(),
                    chat_key: None,
                    crm: None,
                    trace_id: None,
                },
            )?;
            Ok((t.id, im.id, g.id))
        })
        .await
        .unwrap();
    World {
        store,
        tenant,
        imessage,
        group,
        _db: db,
    }
}

/// (history per chat, events, owner of the group) — what a command may change.
type Snapshot = (Vec<Vec<Membership>>, usize, Option<UserId>);

async fn snapshot(w: &World) -> Snapshot {
    let (t, im, g) = (w.tenant, w.imessage, w.group);
    w.store
        .read(move |tx| {
            let h = vec![tx.membership_history(t, im)?, tx.membership_history(t, g)?];
            // The kept count always equals the active rows.
            for c in [im, g] {
                let active = tx.membership_history(t, c)?.iter().filter(|m| m.is_active()).count();
                assert_eq!(tx.active_count(t, c)?, active, "active_count of chat {c}");
            }
            Ok((h, tx.events(t, None)?.len(), tx.chat(t, g)?.and_then(|c| c.owner_id)))
        })
        .await
        .unwrap()
}

async fn apply(w: &World, op: &Op) -> Result<(), CoreError> {
    let (t, im, g) = (w.tenant, w.imessage, w.group);
    let op = op.clone();
    w.store
        .write(move |tx| {
            let tx = tx.as_tx();
            match op {
                Op::LineLeaves => commands::leave(
                    tx,
                    &Leave {
                        tenant: t,
                        chat: im,
                        leaver: Leaver::Line,
                        trace_id: None,
                    },
                )
                .map(|_| ()),
                Op::RemoveHandle(i) => commands::remove(
                    tx,
                    &Remove {
                        tenant: t,
                        chat: ChatSelector::Id(im),
                        actor: None,
                        member: MemberRef::Handle(handle(i)),
                        policy: RemovePolicy::IMessage,
                        trace_id: None,
                    },
                )
                .map(|_| ()),
                Op::AddHandle(i) => commands::add(
                    tx,
                    &Add {
                        tenant: t,
                        chat: im,
                        actor: None,
                        member: MemberRef::Handle(handle(i)),
                        trace_id: None,
                    },
                )
                .map(|_| ()),
                Op::UserLeaves(u) => commands::leave(
                    tx,
                    &Leave {
                        tenant: t,
                        chat: g,
                        leaver: Leaver::User(UserId(u.into())),
                        trace_id: None,
                    },
                )
                .map(|_| ()),
                Op::Transfer(u) => {
                    let owner = tx.chat(t, g)?.and_then(|c| c.owner_id);
                    commands::transfer_owner(
                        tx,
                        &TransferOwner {
                            tenant: t,
                            chat: g,
                            actor: owner,
                            new_owner: UserId(u.into()),
                            trace_id: None,
                        },
                    )
                    .map(|_| ())
                }
                Op::BitrixRemove(u) => {
                    let owner = tx.chat(t, g)?.and_then(|c| c.owner_id);
                    commands::remove(
                        tx,
                        &Remove {
                            tenant: t,
                            chat: ChatSelector::Id(g),
                            actor: owner,
                            member: MemberRef::Id(UserId(u.into())),
                            policy: RemovePolicy::Bitrix,
                            trace_id: None,
                        },
                    )
                    .map(|_| ())
                }
            }
        })
        .await
}

fn check(before: &Snapshot, after: &Snapshot, ok: bool, im: ChatId) {
    let (bh, be, bo) = before;
    let (ah, ae, ao) = after;
    for (bc, ac) in bh.iter().zip(ah.iter()) {
        // History is only ever appended to or closed, never rewritten.
        assert!(ac.len() >= bc.len());
        for (b, a) in bc.iter().zip(ac.iter()) {
            assert_eq!((b.chat_id, b.user_id, b.joined_at), (a.chat_id, a.user_id, a.joined_at));
            if b.left_at.is_some() {
                assert_eq!(b.left_at, a.left_at, "a closed stay stays closed");
            }
        }
        // Nobody is active twice in one chat.
        let mut seen = std::collections::HashSet::new();
        for m in ac.iter().filter(|m| m.is_active()) {
            assert!(seen.insert(m.user_id), "{:?} active twice", m.user_id);
        }
    }
    // The iMessage group keeps at least 3.
    assert!(ah[0].iter().filter(|m| m.chat_id == im && m.is_active()).count() >= 3);
    if ok {
        // Exactly one event for a change, none for a no-op (an idempotent add,
        // a transfer to the current owner).
        let changed = bh != ah || bo != ao;
        assert_eq!(*ae, be + usize::from(changed), "one event per applied change");
    } else {
        assert_eq!((bh, be, bo), (ah, ae, ao), "a refused command changes nothing");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn any_sequence_keeps_the_invariants(ops in proptest::collection::vec(op(), 1..25)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let w = world().await;
            for op in &ops {
                let before = snapshot(&w).await;
                let r = apply(&w, op).await;
                let after = snapshot(&w).await;
                check(&before, &after, r.is_ok(), w.imessage);
                if let Err(e) = &r {
                    assert!(!matches!(e, CoreError::Internal(_) | CoreError::Unavailable(_)), "{op:?}: {e:?}");
                }
            }
        });
    }
}
