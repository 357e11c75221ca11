#![allow(clippy::type_complexity)]
//! One table per policy: each row is a rule or an error of the seeds.

use super::*;
use uuid::Uuid;

const T: TenantId = TenantId(1);
const OWNER: UserId = UserId(1);
const ALICE: UserId = UserId(2);
const BOB: UserId = UserId(3);
const CAROL: UserId = UserId(4);
const STRANGER: UserId = UserId(9);
const BOT_A: UserId = UserId(100);
const BOT_B: UserId = UserId(101);
const BOT_FOREIGN: UserId = UserId(200);
const LINE_USER: UserId = UserId(50);
const APP: AppId = AppId(1);
const OTHER_APP: AppId = AppId(2);

fn chat(kind: ChatKind, network: Network) -> Chat {
    Chat {
        tenant_id: T,
        id: ChatId(10),
        uuid: Uuid::nil(),
        kind,
        network,
        title: "t".into(),
        owner_id: Some(OWNER),
        line_id: Some(LineId(1)),
        chat_key: Some("key".into()),
        created_at: 0,
    }
}

fn member(u: UserId) -> Membership {
    Membership {
        chat_id: ChatId(10),
        user_id: u,
        role: Role::Member,
        joined_at: 0,
        left_at: None,
        removed: false,
    }
}

fn left(u: UserId) -> Membership {
    Membership {
        left_at: Some(5),
        ..member(u)
    }
}

fn members(us: &[UserId]) -> Roster {
    Roster::from_members(&us.iter().copied().map(member).collect::<Vec<_>>())
}

fn user(id: UserId) -> User {
    User {
        tenant_id: T,
        id,
        kind: UserKind::Person,
        name: "u".into(),
        handle: None,
        active: true,
        app_id: None,
    }
}

fn bot(id: UserId, app: AppId) -> User {
    User {
        kind: UserKind::Bot,
        app_id: Some(app),
        ..user(id)
    }
}

fn line(active: bool) -> Line {
    Line {
        tenant_id: T,
        id: LineId(1),
        phone_number: "+15550000000".into(),
        user_id: LINE_USER,
        active,
    }
}

#[test]
fn bitrix_leave_rules() {
    let group = chat(ChatKind::Group, Network::Internal);
    let open_line = chat(ChatKind::OpenLine, Network::Internal);
    let dm = chat(ChatKind::Dm, Network::Internal);
    let in_chat = members(&[OWNER, ALICE]);
    let cases: Vec<(
        &str,
        &Chat,
        UserId,
        Option<Membership>,
        Result<LeaveDecision, CoreError>,
    )> = vec![
        (
            "member leaves",
            &group,
            ALICE,
            Some(member(ALICE)),
            Ok(LeaveDecision { keep_owner: true }),
        ),
        // seed 000: the owner may leave and stays owner
        (
            "owner leaves and stays owner",
            &group,
            OWNER,
            Some(member(OWNER)),
            Ok(LeaveDecision { keep_owner: true }),
        ),
        (
            "DM cannot be left",
            &dm,
            ALICE,
            Some(member(ALICE)),
            Err(CoreError::DirectChat),
        ),
        (
            "open-line chat forbids leaving",
            &open_line,
            ALICE,
            Some(member(ALICE)),
            Err(CoreError::RemovalForbidden),
        ),
        ("never a member", &group, STRANGER, None, Err(CoreError::NotAMember)),
        (
            "leaving twice",
            &group,
            BOB,
            Some(left(BOB)),
            Err(CoreError::NoLongerMember),
        ),
    ];
    for (name, c, who, latest, want) in cases {
        assert_eq!(bitrix_leave(c, &in_chat, &user(who), latest.as_ref()), want, "{name}");
    }
}

#[test]
fn bot_resolution_rules() {
    let app_bots = vec![bot(BOT_A, APP), bot(BOT_B, APP)];
    let foreign = bot(BOT_FOREIGN, OTHER_APP);
    let person = user(ALICE);
    let cases: Vec<(&str, Option<UserId>, Option<&User>, &[User], Result<UserId, CoreError>)> = vec![
        // seed 001: BOT_ID absent → the first bot registered by the app
        ("BOT_ID absent → first bot of the app", None, None, &app_bots, Ok(BOT_A)),
        (
            "BOT_ID names the app's bot",
            Some(BOT_B),
            Some(&app_bots[1]),
            &app_bots,
            Ok(BOT_B),
        ),
        (
            "BOT_ID absent and the app has no bot",
            None,
            None,
            &[],
            Err(CoreError::BotNotFound),
        ),
        (
            "unknown bot",
            Some(UserId(999)),
            None,
            &app_bots,
            Err(CoreError::BotNotFound),
        ),
        (
            "BOT_ID names a person",
            Some(ALICE),
            Some(&person),
            &app_bots,
            Err(CoreError::BotNotFound),
        ),
        (
            "foreign bot",
            Some(BOT_FOREIGN),
            Some(&foreign),
            &app_bots,
            Err(CoreError::ForeignBot),
        ),
    ];
    for (name, bot_id, requested, bots, want) in cases {
        assert_eq!(resolve_bot(APP, bot_id, requested, bots).map(|b| b.id), want, "{name}");
    }
}

#[test]
fn bot_leave_rules() {
    let group = chat(ChatKind::Group, Network::Internal);
    let bot_owned = Chat {
        owner_id: Some(BOT_A),
        ..group.clone()
    };
    let dm = chat(ChatKind::Dm, Network::Internal);
    let open_line = chat(ChatKind::OpenLine, Network::Internal);
    let in_chat = members(&[OWNER, BOT_A]);
    let cases: Vec<(
        &str,
        &Chat,
        UserId,
        Option<Membership>,
        Result<LeaveDecision, CoreError>,
    )> = vec![
        (
            "bot member leaves",
            &group,
            BOT_A,
            Some(member(BOT_A)),
            Ok(LeaveDecision { keep_owner: false }),
        ),
        (
            "bot owner leave forbidden",
            &bot_owned,
            BOT_A,
            Some(member(BOT_A)),
            Err(CoreError::OwnerCannotLeave),
        ),
        ("bot not a member", &group, BOT_B, None, Err(CoreError::NotAMember)),
        (
            "bot leaving twice",
            &group,
            BOT_B,
            Some(left(BOT_B)),
            Err(CoreError::NoLongerMember),
        ),
        (
            "DM cannot be left",
            &dm,
            BOT_A,
            Some(member(BOT_A)),
            Err(CoreError::DirectChat),
        ),
        (
            "open-line chat forbids removal",
            &open_line,
            BOT_A,
            Some(member(BOT_A)),
            Err(CoreError::RemovalForbidden),
        ),
    ];
    for (name, c, who, latest, want) in cases {
        assert_eq!(bot_leave(c, &in_chat, who, latest.as_ref()), want, "{name}");
    }
}

#[test]
fn imessage_leave_rules() {
    let group = chat(ChatKind::Group, Network::Imessage);
    let dm = chat(ChatKind::Dm, Network::Imessage);
    let no_line = Chat {
        line_id: None,
        ..group.clone()
    };
    let no_key = Chat {
        chat_key: None,
        ..group.clone()
    };
    let internal = chat(ChatKind::Group, Network::Internal);
    let four = members(&[LINE_USER, ALICE, BOB, CAROL]);
    let three = members(&[LINE_USER, ALICE, BOB]);
    let line_left = members(&[ALICE, BOB, CAROL]);
    let ok = Ok(LeaveDecision { keep_owner: false });
    let small = Err(CoreError::GroupTooSmall { min_remaining: 3 });
    let cases: Vec<(&str, &Chat, &Roster, Option<Line>, Result<LeaveDecision, CoreError>)> = vec![
        (
            "4 members: the line leaves, 3 remain",
            &group,
            &four,
            Some(line(true)),
            ok,
        ),
        (
            "minimum 4 before an iMessage leave",
            &group,
            &three,
            Some(line(true)),
            small,
        ),
        (
            "DM cannot be left",
            &dm,
            &four,
            Some(line(true)),
            Err(CoreError::DirectChat),
        ),
        (
            "missing pinned line",
            &no_line,
            &four,
            None,
            Err(CoreError::NotSupported),
        ),
        (
            "missing chat key",
            &no_key,
            &four,
            Some(line(true)),
            Err(CoreError::NotSupported),
        ),
        (
            "not an iMessage chat",
            &internal,
            &four,
            Some(line(true)),
            Err(CoreError::NotSupported),
        ),
        (
            "leaving twice",
            &group,
            &line_left,
            Some(line(true)),
            Err(CoreError::LeftChat),
        ),
        (
            "line cannot deliver",
            &group,
            &four,
            Some(line(false)),
            Err(CoreError::DeliveryFailed),
        ),
    ];
    for (name, c, ms, l, want) in cases {
        assert_eq!(imessage_leave(c, ms, l.as_ref()), want, "{name}");
    }
}

#[test]
fn crm_chat_resolution_rules() {
    let cases: Vec<(&str, &[ChatId], Option<ChatId>, Result<ChatId, CoreError>)> = vec![
        // seed 002: CHAT_ID absent → the last chat linked to the entity
        ("CRM default last chat", &[ChatId(1), ChatId(2)], None, Ok(ChatId(2))),
        (
            "explicit chat of the entity",
            &[ChatId(1), ChatId(2)],
            Some(ChatId(1)),
            Ok(ChatId(1)),
        ),
        (
            "chat not of that CRM entity",
            &[ChatId(1)],
            Some(ChatId(7)),
            Err(CoreError::ChatNotOfEntity),
        ),
        ("entity without chats", &[], None, Err(CoreError::NoCrmChat)),
    ];
    for (name, chats, given, want) in cases {
        assert_eq!(resolve_crm_chat(chats, given), want, "{name}");
    }
}

#[test]
fn crm_remove_rules() {
    let ol = chat(ChatKind::OpenLine, Network::Internal);
    let dm = chat(ChatKind::Dm, Network::Internal);
    let in_chat = members(&[OWNER, ALICE, BOB]);
    let inactive = User {
        active: false,
        ..user(BOB)
    };
    let inactive_actor = User {
        active: false,
        ..user(ALICE)
    };
    let cases: Vec<(&str, &Chat, User, User, Option<Membership>, Result<(), CoreError>)> = vec![
        (
            "operator removes a member",
            &ol,
            user(ALICE),
            user(BOB),
            Some(member(BOB)),
            Ok(()),
        ),
        (
            "owner removes a member",
            &ol,
            user(OWNER),
            user(BOB),
            Some(member(BOB)),
            Ok(()),
        ),
        (
            "actor without access",
            &ol,
            user(STRANGER),
            user(BOB),
            Some(member(BOB)),
            Err(CoreError::PermissionDenied),
        ),
        (
            "inactive actor",
            &ol,
            inactive_actor,
            user(BOB),
            Some(member(BOB)),
            Err(CoreError::PermissionDenied),
        ),
        (
            "inactive user",
            &ol,
            user(ALICE),
            inactive,
            Some(member(BOB)),
            Err(CoreError::UserInactive),
        ),
        (
            "user not in chat",
            &ol,
            user(ALICE),
            user(CAROL),
            None,
            Err(CoreError::NotAMember),
        ),
        (
            "user already removed",
            &ol,
            user(ALICE),
            user(CAROL),
            Some(left(CAROL)),
            Err(CoreError::NoLongerMember),
        ),
        (
            "DM",
            &dm,
            user(ALICE),
            user(BOB),
            Some(member(BOB)),
            Err(CoreError::DirectChat),
        ),
    ];
    for (name, c, actor, target, latest, want) in cases {
        assert_eq!(
            crm_remove(c, &in_chat, &actor, &target, latest.as_ref()),
            want,
            "{name}"
        );
    }
}

#[test]
fn imessage_remove_rules() {
    let group = chat(ChatKind::Group, Network::Imessage);
    let four = members(&[LINE_USER, ALICE, BOB, CAROL]);
    let three = members(&[LINE_USER, ALICE, BOB]);
    let small = Err(CoreError::GroupTooSmall { min_remaining: 3 });
    let no_key = Chat {
        chat_key: None,
        ..group.clone()
    };
    let cases: Vec<(&str, &Chat, &Roster, UserId, Option<Membership>, Result<(), CoreError>)> = vec![
        ("remove from 4", &group, &four, CAROL, Some(member(CAROL)), Ok(())),
        ("at minimum size 3", &group, &three, BOB, Some(member(BOB)), small),
        (
            "not in group",
            &group,
            &four,
            STRANGER,
            None,
            Err(CoreError::NotAMember),
        ),
        (
            "removed twice",
            &group,
            &four,
            STRANGER,
            Some(left(STRANGER)),
            Err(CoreError::NoLongerMember),
        ),
        (
            "missing chat key",
            &no_key,
            &four,
            CAROL,
            Some(member(CAROL)),
            Err(CoreError::NotSupported),
        ),
    ];
    for (name, c, ms, target, latest, want) in cases {
        assert_eq!(
            imessage_remove(c, ms, Some(&line(true)), target, latest.as_ref()),
            want,
            "{name}"
        );
    }
}

#[test]
fn bitrix_remove_rules() {
    let group = chat(ChatKind::Group, Network::Internal);
    let in_chat = members(&[OWNER, ALICE, BOB]);
    let cases: Vec<(&str, UserId, UserId, Option<Membership>, Result<(), CoreError>)> = vec![
        ("owner removes a member", OWNER, BOB, Some(member(BOB)), Ok(())),
        (
            "a member cannot remove",
            ALICE,
            BOB,
            Some(member(BOB)),
            Err(CoreError::PermissionDenied),
        ),
        ("target not a member", OWNER, STRANGER, None, Err(CoreError::NotAMember)),
        (
            "the owner cannot be removed",
            OWNER,
            OWNER,
            Some(member(OWNER)),
            Err(CoreError::OwnerCannotLeave),
        ),
    ];
    for (name, actor, target, latest, want) in cases {
        assert_eq!(
            bitrix_remove(&group, &in_chat, &user(actor), target, latest.as_ref()),
            want,
            "{name}"
        );
    }
}

#[test]
fn add_member_rules() {
    let group = chat(ChatKind::Group, Network::Internal);
    let im = chat(ChatKind::Group, Network::Imessage);
    let dm = chat(ChatKind::Dm, Network::Internal);
    let in_chat = members(&[OWNER, ALICE]);
    let full: Vec<UserId> = std::iter::once(LINE_USER).chain((1000..1031).map(UserId)).collect();
    let full = members(&full);
    let inactive = User {
        active: false,
        ..user(BOB)
    };
    assert_eq!(
        add_member(&group, &in_chat, None, Some(&user(ALICE)), &user(BOB)),
        Ok(true),
        "member adds"
    );
    assert_eq!(
        add_member(&group, &in_chat, None, Some(&user(ALICE)), &user(ALICE)),
        Ok(false),
        "idempotent"
    );
    assert_eq!(
        add_member(&group, &in_chat, None, Some(&user(STRANGER)), &user(BOB)),
        Err(CoreError::PermissionDenied),
        "outsider"
    );
    assert_eq!(
        add_member(&group, &in_chat, None, None, &inactive),
        Err(CoreError::UserInactive),
        "inactive user"
    );
    assert_eq!(
        add_member(&dm, &in_chat, None, None, &user(BOB)),
        Err(CoreError::DirectChat),
        "DM"
    );
    assert_eq!(
        add_member(&im, &full, Some(&line(true)), None, &user(BOB)),
        Err(CoreError::TooManyParticipants { max: 31 }),
        "iMessage group full"
    );
    assert_eq!(
        add_member(&im, &members(&[ALICE, BOB]), Some(&line(true)), None, &user(CAROL)),
        Err(CoreError::LeftChat),
        "after leaving"
    );
}

#[test]
fn transfer_owner_rules() {
    let group = chat(ChatKind::Group, Network::Internal);
    // seed 000: the owner left (no longer a member) but is still the owner
    // and may hand over ownership.
    let owner_left = members(&[ALICE, BOB]);
    assert_eq!(
        transfer_owner(&group, &owner_left, Some(&user(OWNER)), ALICE),
        Ok(()),
        "owner who left transfers"
    );
    assert_eq!(
        transfer_owner(&group, &owner_left, Some(&user(ALICE)), BOB),
        Err(CoreError::PermissionDenied),
        "not the owner"
    );
    assert_eq!(
        transfer_owner(&group, &owner_left, Some(&user(OWNER)), CAROL),
        Err(CoreError::NotAMember),
        "to a non-member"
    );
}

#[test]
fn send_and_create_rules() {
    let in_chat = members(&[ALICE]);
    assert_eq!(send_message(&in_chat, &user(ALICE), Some(&member(ALICE))), Ok(()));
    assert_eq!(
        send_message(&in_chat, &user(BOB), Some(&left(BOB))),
        Err(CoreError::LeftChat),
        "after leaving"
    );
    assert_eq!(send_message(&in_chat, &user(BOB), None), Err(CoreError::NotAMember));
    assert_eq!(create_chat(ChatKind::Group, Network::Imessage, 31), Ok(()));
    assert_eq!(
        create_chat(ChatKind::Group, Network::Imessage, 32),
        Err(CoreError::TooManyParticipants { max: 31 })
    );
    assert!(create_chat(ChatKind::Group, Network::Imessage, 1).is_err());
    assert!(create_chat(ChatKind::Dm, Network::Imessage, 2).is_err());
    assert_eq!(create_chat(ChatKind::Dm, Network::Internal, 1), Ok(()));
}

#[test]
fn view_rules() {
    let group = chat(ChatKind::Group, Network::Internal);
    let without_owner = members(&[ALICE]);
    assert_eq!(can_view(&group, &without_owner, ALICE), Ok(()), "a member");
    assert_eq!(can_view(&group, &without_owner, OWNER), Ok(()), "the owner who left");
    assert_eq!(can_view(&group, &without_owner, STRANGER), Err(CoreError::NotAMember));
}

#[test]
fn line_presence_and_rename_rules() {
    let group = chat(ChatKind::Group, Network::Imessage);
    let dm = chat(ChatKind::Dm, Network::Imessage);
    let internal = chat(ChatKind::Group, Network::Internal);
    let with_line = members(&[LINE_USER, ALICE, BOB]);
    let without = members(&[ALICE, BOB]);
    assert_eq!(line_present(&group, &with_line, Some(&line(true))), Ok(()));
    assert_eq!(
        line_present(&group, &without, Some(&line(true))),
        Err(CoreError::LeftChat),
        "after leaving: 409"
    );
    assert_eq!(
        line_present(&internal, &with_line, Some(&line(true))),
        Err(CoreError::NotSupported)
    );
    assert_eq!(line_present(&group, &with_line, None), Err(CoreError::NotSupported));
    assert_eq!(can_rename(&group), Ok(()));
    assert_eq!(can_rename(&dm), Err(CoreError::DirectChat));
}
