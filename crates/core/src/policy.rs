//! The rules of the seeds, each written once as a named, pure policy over
//! already-loaded state. `commands` loads the state inside the transaction,
//! asks the policy, and applies what it decided.
//!
//! | policy | seed |
//! |---|---|
//! | [`LeavePolicy::Bitrix`] | 000 (Vibecode leave), `im.chat.leave` |
//! | [`LeavePolicy::Bot`] | 001 `imbot.chat.leave` |
//! | [`LeavePolicy::IMessage`] | 003 (Chert leave), 004 (Linq leave) |
//! | [`RemovePolicy::OpenLine`] | 002 `imopenlines.crm.chat.user.delete` |
//! | [`RemovePolicy::IMessage`] | Chert `DELETE …/participants/{address}`, Linq remove |
//! | [`RemovePolicy::Bitrix`] | `im.chat.user.delete`, `imbot.chat.user.delete` |

use crate::error::CoreError;
use crate::model::*;

/// Apple's minimum group size: an iMessage group keeps at least 3 members,
/// so a leave needs 4 before it (seed 003 "at least 4 participants before
/// leaving so 3 remain"; seed 004 "4 or more active participants").
pub const IMESSAGE_MIN_GROUP: usize = 3;
/// Chert: a group is created with 2–31 recipients (more → 1006/422).
pub const IMESSAGE_MAX_RECIPIENTS: usize = 31;

/// Which rules a leave follows; chosen by the face that received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeavePolicy {
    /// A Bitrix user leaves (seed 000, `im.chat.leave`): the owner may leave
    /// and **stays owner**; ownership moves only by an explicit transfer.
    Bitrix,
    /// A bot leaves through the app that registered it (seed 001).
    Bot,
    /// The tenant's pinned line leaves an iMessage group (seeds 003, 004).
    IMessage,
}

/// Which rules a removal follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovePolicy {
    /// Removing a user from a CRM entity's open-line chat (seed 002).
    OpenLine,
    /// Removing a participant from an iMessage group (Chert, Linq).
    IMessage,
    /// The owner removes a member of a Bitrix chat (`im.chat.user.delete`).
    Bitrix,
    /// An operator of confab removes a member through the admin API: only
    /// "must be a member" applies.
    Admin,
}

/// What a leave decided: whether the owner mark moves away with the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaveDecision {
    /// Seed 000: a Bitrix owner who leaves remains the chat's owner.
    pub keep_owner: bool,
}

/// What the rules know of a chat's members: how many are active, and the
/// active memberships of the users the command is about. Stores fill it with
/// a count and point lookups, so a rule's cost does not grow with the group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    count: usize,
    known: Vec<Membership>,
}

impl Roster {
    /// `count` active members; `known` the latest membership of each user
    /// looked up (active or not).
    pub fn new(count: usize, known: Vec<Membership>) -> Roster {
        Roster { count, known }
    }

    /// From a full member list (tests, callers that have it anyway).
    pub fn from_members(members: &[Membership]) -> Roster {
        let known: Vec<Membership> = members.iter().filter(|m| m.is_active()).cloned().collect();
        Roster {
            count: known.len(),
            known,
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn active(&self, user: UserId) -> Option<&Membership> {
        self.latest(user).filter(|m| m.is_active())
    }

    /// The latest membership row of `user`, if it was looked up.
    pub fn latest(&self, user: UserId) -> Option<&Membership> {
        self.known.iter().find(|m| m.user_id == user)
    }
}

fn active(members: &Roster, user: UserId) -> Option<&Membership> {
    members.active(user)
}

/// "Not a member" vs "no longer a member": the latest row tells which.
fn absent(latest: Option<&Membership>) -> CoreError {
    match latest {
        Some(m) if !m.is_active() => CoreError::NoLongerMember,
        _ => CoreError::NotAMember,
    }
}

/// `LeavePolicy::Bitrix` — seed 000 and `im.chat.leave`.
pub fn bitrix_leave(
    chat: &Chat,
    members: &Roster,
    user: &User,
    latest: Option<&Membership>,
) -> Result<LeaveDecision, CoreError> {
    match chat.kind {
        ChatKind::Dm => return Err(CoreError::DirectChat),
        // im.chat.leave: "It is forbidden to delete users of this chat" —
        // open-line chats are left through the open line, not the messenger.
        ChatKind::OpenLine => return Err(CoreError::RemovalForbidden),
        ChatKind::Group => {}
    }
    if active(members, user.id).is_none() {
        return Err(absent(latest));
    }
    // Seed 000 "Known specifics": the creator remains the owner even after
    // leaving; only POST /v1/chats/:id/owner (im.chat.setOwner) moves it.
    Ok(LeaveDecision { keep_owner: true })
}

/// `LeavePolicy::Bot`, step 1 — which bot leaves (seed 001). `requested` is
/// the user named by `BOT_ID` (None if absent or unknown); `app_bots` are
/// the app's bots in registration order, consulted only when `BOT_ID` is
/// absent.
pub fn resolve_bot<'a>(
    app: AppId,
    bot_id: Option<UserId>,
    requested: Option<&'a User>,
    app_bots: &'a [User],
) -> Result<&'a User, CoreError> {
    match bot_id {
        Some(_) => {
            let bot = requested
                .filter(|u| u.kind == UserKind::Bot)
                .ok_or(CoreError::BotNotFound)?;
            if bot.app_id != Some(app) {
                return Err(CoreError::ForeignBot);
            }
            Ok(bot)
        }
        // "If the parameter is not passed, the method looks for the first
        // bot registered by the current application."
        None => app_bots.first().ok_or(CoreError::BotNotFound),
    }
}

/// `LeavePolicy::Bot`, step 2 — may this bot leave this chat (seed 001).
pub fn bot_leave(
    chat: &Chat,
    members: &Roster,
    bot: UserId,
    latest: Option<&Membership>,
) -> Result<LeaveDecision, CoreError> {
    match chat.kind {
        // ACCESS_ERROR "Action unavailable": no leaving a private dialog.
        ChatKind::Dm => return Err(CoreError::DirectChat),
        // ACCESS_ERROR "It is forbidden to delete users of this chat":
        // open-line chats are run by the open line, bots do not leave them.
        ChatKind::OpenLine => return Err(CoreError::RemovalForbidden),
        ChatKind::Group => {}
    }
    if active(members, bot).is_none() {
        return Err(absent(latest));
    }
    // ACCESS_ERROR LEAVE_OWNER_FORBIDDEN: a bot owner must hand over first.
    if chat.owner_id == Some(bot) {
        return Err(CoreError::OwnerCannotLeave);
    }
    Ok(LeaveDecision { keep_owner: false })
}

/// Checks shared by every iMessage group operation executed by the pinned
/// line (seed 003): a group, with a pinned line and a chat key, on which
/// the line is still present and able to deliver.
fn imessage_group_ready(chat: &Chat, members: &Roster, line: Option<&Line>) -> Result<(), CoreError> {
    if chat.kind == ChatKind::Dm {
        return Err(CoreError::DirectChat);
    }
    let line = match (line, &chat.chat_key) {
        (Some(line), Some(_)) if chat.network == Network::Imessage => line,
        _ => return Err(CoreError::NotSupported),
    };
    if active(members, line.user_id).is_none() {
        // Seed 003: "leaving twice yields 1006 once the chat is no longer a
        // group from your line's perspective"; seed 004: 409 after leaving.
        return Err(CoreError::LeftChat);
    }
    line_can_deliver(line)
}

/// `LeavePolicy::IMessage` — seeds 003 and 004: the pinned line leaves.
pub fn imessage_leave(chat: &Chat, members: &Roster, line: Option<&Line>) -> Result<LeaveDecision, CoreError> {
    imessage_group_ready(chat, members, line)?;
    let count = members.count();
    if count <= IMESSAGE_MIN_GROUP {
        return Err(CoreError::GroupTooSmall {
            min_remaining: IMESSAGE_MIN_GROUP,
        });
    }
    Ok(LeaveDecision { keep_owner: false })
}

/// `RemovePolicy::OpenLine`, step 1 — which chat (seed 002): `CHAT_ID`
/// absent → the entity's last chat; present → it must be one of the
/// entity's chats.
pub fn resolve_crm_chat(entity_chats: &[ChatId], chat_id: Option<ChatId>) -> Result<ChatId, CoreError> {
    match chat_id {
        None => entity_chats.last().copied().ok_or(CoreError::NoCrmChat),
        Some(id) if entity_chats.contains(&id) => Ok(id),
        Some(_) => Err(CoreError::ChatNotOfEntity),
    }
}

/// `RemovePolicy::OpenLine`, step 2 (seed 002). The actor needs access to
/// the chat: its owner or one of its active members (the operators).
pub fn crm_remove(
    chat: &Chat,
    members: &Roster,
    actor: &User,
    target: &User,
    target_latest: Option<&Membership>,
) -> Result<(), CoreError> {
    if chat.kind == ChatKind::Dm {
        return Err(CoreError::DirectChat);
    }
    let actor_has_access = actor.active && (chat.owner_id == Some(actor.id) || active(members, actor.id).is_some());
    if !actor_has_access {
        return Err(CoreError::PermissionDenied);
    }
    if !target.active {
        return Err(CoreError::UserInactive);
    }
    if active(members, target.id).is_none() {
        return Err(absent(target_latest));
    }
    Ok(())
}

/// `RemovePolicy::IMessage` — remove a participant from an iMessage group:
/// not below Apple's minimum of 3 (Chert: "at minimum size 3 → 1002").
pub fn imessage_remove(
    chat: &Chat,
    members: &Roster,
    line: Option<&Line>,
    target: UserId,
    target_latest: Option<&Membership>,
) -> Result<(), CoreError> {
    imessage_group_ready(chat, members, line)?;
    if active(members, target).is_none() {
        return Err(absent(target_latest));
    }
    let count = members.count();
    if count <= IMESSAGE_MIN_GROUP {
        return Err(CoreError::GroupTooSmall {
            min_remaining: IMESSAGE_MIN_GROUP,
        });
    }
    Ok(())
}

/// `RemovePolicy::Bitrix` — `im.chat.user.delete`: only the owner removes
/// others; nobody removes the owner (they must transfer first).
pub fn bitrix_remove(
    chat: &Chat,
    members: &Roster,
    actor: &User,
    target: UserId,
    target_latest: Option<&Membership>,
) -> Result<(), CoreError> {
    match chat.kind {
        ChatKind::Dm => return Err(CoreError::DirectChat),
        ChatKind::OpenLine => return Err(CoreError::RemovalForbidden),
        ChatKind::Group => {}
    }
    if chat.owner_id != Some(actor.id) || !actor.active {
        return Err(CoreError::PermissionDenied);
    }
    if active(members, target).is_none() {
        return Err(absent(target_latest));
    }
    if chat.owner_id == Some(target) {
        return Err(CoreError::OwnerCannotLeave);
    }
    Ok(())
}

/// `RemovePolicy::Admin` — the target must be an active member.
pub fn admin_remove(members: &Roster, target: UserId, target_latest: Option<&Membership>) -> Result<(), CoreError> {
    match active(members, target) {
        Some(_) => Ok(()),
        None => Err(absent(target_latest)),
    }
}

/// Adding a member. `actor` None = an administrator. Returns false when the
/// user is already an active member (adding is idempotent everywhere).
pub fn add_member(
    chat: &Chat,
    members: &Roster,
    line: Option<&Line>,
    actor: Option<&User>,
    target: &User,
) -> Result<bool, CoreError> {
    if chat.kind == ChatKind::Dm {
        return Err(CoreError::DirectChat);
    }
    if chat.network == Network::Imessage {
        imessage_group_ready(chat, members, line)?;
    } else if let Some(actor) = actor {
        if !actor.active || (active(members, actor.id).is_none() && chat.owner_id != Some(actor.id)) {
            return Err(CoreError::PermissionDenied);
        }
    }
    if !target.active {
        return Err(CoreError::UserInactive);
    }
    if active(members, target.id).is_some() {
        return Ok(false);
    }
    if chat.network == Network::Imessage {
        let count = members.count();
        // 31 recipients plus the line itself.
        if count + 1 > IMESSAGE_MAX_RECIPIENTS + 1 {
            return Err(CoreError::TooManyParticipants {
                max: IMESSAGE_MAX_RECIPIENTS,
            });
        }
    }
    Ok(true)
}

/// Transferring ownership (`im.chat.setOwner`, Vibecode `POST …/owner`):
/// only the current owner may — even one who has already left (seed 000:
/// they stay owner) — and only to an active member.
pub fn transfer_owner(chat: &Chat, members: &Roster, actor: Option<&User>, new_owner: UserId) -> Result<(), CoreError> {
    if chat.kind == ChatKind::Dm {
        return Err(CoreError::DirectChat);
    }
    if let Some(actor) = actor {
        if chat.owner_id != Some(actor.id) || !actor.active {
            return Err(CoreError::PermissionDenied);
        }
    }
    if active(members, new_owner).is_none() {
        return Err(CoreError::NotAMember);
    }
    Ok(())
}

/// Sending a message: the author must be in the chat. One who left gets
/// `LeftChat` (Linq: 409/2013 "This chat is unavailable").
pub fn send_message(members: &Roster, author: &User, latest: Option<&Membership>) -> Result<(), CoreError> {
    if !author.active {
        return Err(CoreError::PermissionDenied);
    }
    if active(members, author.id).is_some() {
        return Ok(());
    }
    match latest {
        Some(_) => Err(CoreError::LeftChat),
        None => Err(CoreError::NotAMember),
    }
}

/// A line sends through its transport; an inactive line cannot deliver
/// (Chert 4001), and nothing is recorded.
pub fn line_can_deliver(line: &Line) -> Result<(), CoreError> {
    if line.active {
        Ok(())
    } else {
        Err(CoreError::DeliveryFailed)
    }
}

/// Linq: every interaction with a chat (send, typing, read, update,
/// participants, leave) needs the pinned line still in it (seed 004: "all
/// interaction endpoints ... will return 409" after leaving).
pub fn line_present(chat: &Chat, members: &Roster, line: Option<&Line>) -> Result<(), CoreError> {
    let line = line.ok_or(CoreError::NotSupported)?;
    if chat.network != Network::Imessage {
        return Err(CoreError::NotSupported);
    }
    if active(members, line.user_id).is_none() {
        return Err(CoreError::LeftChat);
    }
    Ok(())
}

/// Who may see a chat and its roster: an active member, or its owner (who
/// stays owner after leaving, seed 000).
pub fn can_view(chat: &Chat, members: &Roster, viewer: UserId) -> Result<(), CoreError> {
    if chat.owner_id == Some(viewer) || active(members, viewer).is_some() {
        Ok(())
    } else {
        Err(CoreError::NotAMember)
    }
}

/// Renaming: groups only (Linq 1006 "Cannot update direct message chats").
pub fn can_rename(chat: &Chat) -> Result<(), CoreError> {
    if chat.kind == ChatKind::Dm {
        return Err(CoreError::DirectChat);
    }
    Ok(())
}

/// Bitrix: "max 5 bots per app".
pub const MAX_BOTS_PER_APP: usize = 5;

pub fn can_register_bot(existing: usize) -> Result<(), CoreError> {
    if existing >= MAX_BOTS_PER_APP {
        Err(CoreError::BotLimit { max: MAX_BOTS_PER_APP })
    } else {
        Ok(())
    }
}

/// Creating a chat: a DM has exactly one other participant; an iMessage
/// group has 2–31 recipients besides the line (Chert create).
pub fn create_chat(kind: ChatKind, network: Network, others: usize) -> Result<(), CoreError> {
    match kind {
        ChatKind::Dm if others != 1 => Err(CoreError::Invalid(
            "a direct chat has exactly one other participant".into(),
        )),
        ChatKind::Group if network == Network::Imessage && others > IMESSAGE_MAX_RECIPIENTS => {
            Err(CoreError::TooManyParticipants {
                max: IMESSAGE_MAX_RECIPIENTS,
            })
        }
        ChatKind::Group if network == Network::Imessage && others < 2 => Err(CoreError::Invalid(
            "an iMessage group needs at least 2 recipients".into(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
