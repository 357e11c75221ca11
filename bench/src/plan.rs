//! What `load` asks of the server, request by request, for each operation:
//! leaves, adds, message sends, or a mix of the three.
//!
//! The world (see `provision`): C chats whose members are users 1..=M, user
//! 1 the owner; adds bring in *outsiders*, users M+1.. who are in no chat.
//! Every plan is fixed in advance (the same on every run) and can be run
//! in any order by concurrent workers without one request failing because
//! of another: no membership is closed or opened twice, and nobody sends to
//! a chat they leave in the same run.

use crate::Workload;
use clap::ValueEnum;

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq)]
pub(crate) enum Op {
    /// A member leaves the chat.
    Leave,
    /// The owner removes a member from the chat.
    Remove,
    /// The owner adds an outsider to the chat.
    Add,
    /// A member sends a message to the chat.
    Send,
    /// Of every ten requests, eight sends, one add and one leave.
    Mixed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Req {
    Leave { chat: usize, user: usize },
    Remove { chat: usize, user: usize },
    Add { chat: usize, user: usize },
    Send { chat: usize, user: usize },
}

/// The plan of `n` requests, and how many outsiders it adds.
pub(crate) fn plan(
    op: Op,
    workload: Workload,
    chats: usize,
    members: usize,
    n: usize,
) -> anyhow::Result<(Vec<Req>, usize)> {
    if chats == 0 || members < 2 {
        anyhow::bail!("a world needs at least one chat of two members");
    }
    let (leaves, adds) = match op {
        Op::Leave | Op::Remove => (n, 0),
        Op::Add => (0, n),
        Op::Send => (0, 0),
        // Request i is a leave when i % 10 is 0, an add when it is 1.
        Op::Mixed => (
            (0..n).filter(|i| i % 10 == 0).count(),
            (0..n).filter(|i| i % 10 == 1).count(),
        ),
    };
    let capacity = chats * (members - 1);
    if leaves > capacity {
        anyhow::bail!(
            "{leaves} leaves need more memberships than {chats} chats x {} leavers = {capacity}",
            members - 1
        );
    }
    // Leavers: in a mixed plan from the top (M, M-1, ...), so the members
    // at the bottom, who send, never leave; otherwise from member 2 up.
    let leaver = |rank: usize| if op == Op::Mixed { members - rank } else { rank + 2 };
    let leave_ranks = pairs(workload, chats, members - 1, leaves);
    // Senders: in each chat, the members below its leavers.
    let mut senders = vec![members; chats + 1];
    for &(chat, rank) in &leave_ranks {
        senders[chat] = senders[chat].min(members - rank - 1);
    }
    let exit = |chat, user| match op {
        Op::Remove => Req::Remove { chat, user },
        _ => Req::Leave { chat, user },
    };
    let exits: Vec<Req> = leave_ranks
        .into_iter()
        .map(|(chat, rank)| exit(chat, leaver(rank)))
        .collect();
    let outsiders = adds.div_ceil(chats);
    let adds: Vec<Req> = pairs(workload, chats, outsiders.max(1), adds)
        .into_iter()
        .map(|(chat, rank)| Req::Add {
            chat,
            user: members + 1 + rank,
        })
        .collect();
    let sends: Vec<Req> = pairs(workload, chats, members, n - leaves - adds.len())
        .into_iter()
        .map(|(chat, rank)| Req::Send {
            chat,
            user: rank % senders[chat] + 1,
        })
        .collect();
    let requests = match op {
        Op::Leave | Op::Remove => exits,
        Op::Add => adds,
        Op::Send => sends,
        Op::Mixed => {
            let (mut l, mut a, mut s) = (exits.into_iter(), adds.into_iter(), sends.into_iter());
            (0..n)
                .map(|i| match i % 10 {
                    0 => l.next(),
                    1 => a.next(),
                    _ => s.next(),
                })
                .map(|r| r.ok_or_else(|| anyhow::anyhow!("a mixed plan ran out of requests of one kind")))
                .collect::<anyhow::Result<Vec<_>>>()?
        }
    };
    Ok((requests, outsiders))
}

/// `n` (chat, rank) pairs with ranks `0..ranks` in every chat, each pair
/// once (ranks repeat once every pair is used, which only sends do).
/// Scattered: one rank from every chat, the chats in a shuffled order
/// (fixed), before the next rank, so neighbouring requests land in
/// unrelated chats. Concentrated: every rank of one chat, then the next.
fn pairs(workload: Workload, chats: usize, ranks: usize, n: usize) -> Vec<(usize, usize)> {
    match workload {
        Workload::Scattered => {
            let order = crate::shuffled_chats(chats);
            (0..n).map(|a| (order[a % chats], a / chats % ranks)).collect()
        }
        Workload::Concentrated => (0..n).map(|a| (a / ranks % chats + 1, a % ranks)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn check(op: Op, workload: Workload, chats: usize, members: usize, n: usize) {
        let (reqs, outsiders) = plan(op, workload, chats, members, n).unwrap();
        assert_eq!(reqs.len(), n);
        let mut left = HashSet::new();
        let mut added = HashSet::new();
        for r in &reqs {
            match *r {
                Req::Leave { chat, user } | Req::Remove { chat, user } => {
                    assert!((1..=chats).contains(&chat));
                    assert!((2..=members).contains(&user), "the owner or a non-member leaves: {r:?}");
                    assert!(left.insert((chat, user)), "a membership closed twice: {r:?}");
                }
                Req::Add { chat, user } => {
                    assert!((1..=chats).contains(&chat));
                    assert!(user > members && user <= members + outsiders, "not an outsider: {r:?}");
                    assert!(added.insert((chat, user)), "an outsider added twice: {r:?}");
                }
                Req::Send { chat, user } => {
                    assert!((1..=chats).contains(&chat));
                    assert!((1..=members).contains(&user), "a non-member sends: {r:?}");
                }
            }
        }
        for r in &reqs {
            if let Req::Send { chat, user } = *r {
                assert!(!left.contains(&(chat, user)), "sends to a chat it leaves: {r:?}");
            }
        }
    }

    #[test]
    fn every_plan_keeps_out_of_its_own_way() {
        for workload in [Workload::Scattered, Workload::Concentrated] {
            for op in [Op::Leave, Op::Remove, Op::Add, Op::Send, Op::Mixed] {
                check(op, workload, 100, 20, 1_900);
                check(op, workload, 4, 2_000, 7_000);
                check(op, workload, 3, 2, 3);
            }
        }
    }

    #[test]
    fn a_mixed_plan_is_one_leave_one_add_and_eight_sends_in_ten() {
        let (reqs, outsiders) = plan(Op::Mixed, Workload::Scattered, 1_000, 20, 20_000).unwrap();
        let count = |f: fn(&Req) -> bool| reqs.iter().filter(|r| f(r)).count();
        assert_eq!(count(|r| matches!(r, Req::Leave { .. })), 2_000);
        assert_eq!(count(|r| matches!(r, Req::Add { .. })), 2_000);
        assert_eq!(count(|r| matches!(r, Req::Send { .. })), 16_000);
        assert_eq!(outsiders, 2);
        assert!(matches!(reqs[0], Req::Leave { .. }) && matches!(reqs[1], Req::Add { .. }));
    }

    #[test]
    fn scattered_leaves_are_the_storage_baselines_pairs() {
        let (reqs, _) = plan(Op::Leave, Workload::Scattered, 500, 20, 5_000).unwrap();
        let pairs: Vec<Req> = crate::scattered_pairs(500, 20, 5_000)
            .into_iter()
            .map(|(chat, user)| Req::Leave { chat, user })
            .collect();
        assert_eq!(reqs, pairs);
    }

    #[test]
    fn a_concentrated_mix_sends_from_many_members() {
        // Its leaves all fall in the first chat: the others keep every member.
        let (reqs, _) = plan(Op::Mixed, Workload::Concentrated, 4, 2_000, 20_000).unwrap();
        let senders: HashSet<(usize, usize)> = reqs
            .iter()
            .filter_map(|r| match *r {
                Req::Send { chat, user } => Some((chat, user)),
                _ => None,
            })
            .collect();
        assert!(senders.len() > 1_000, "{} senders", senders.len());
    }

    #[test]
    fn too_many_leaves_are_refused() {
        assert!(plan(Op::Leave, Workload::Scattered, 10, 3, 21).is_err());
        assert!(plan(Op::Leave, Workload::Scattered, 10, 3, 20).is_ok());
    }
}
