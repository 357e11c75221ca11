//! `confab serve --demo`: the demo world (idempotent) and what to paste.

use confab_faces::admin::world::{self, World};

pub const DEMO_WORLD: &str = include_str!("demo.toml");

pub fn world() -> anyhow::Result<World> {
    world::parse_toml(DEMO_WORLD).map_err(|e| anyhow::anyhow!("built-in demo world is invalid: {e}"))
}

/// The text printed after the demo world is in place. `base` is
/// `http://host:port`.
pub fn banner(base: &str, admin_token: Option<&str>) -> String {
    let built = |face: &str| confab_faces::FACES.iter().any(|(f, b)| *f == face && *b);
    let note = |face: &str| {
        if built(face) {
            "   ".to_string()
        } else {
            format!("   # answers 404 until the {face} face lands\n   ")
        }
    };
    let admin = match admin_token {
        Some(t) => format!("admin token (shown once, now):  {t}\n"),
        None => {
            "admin token: configured (--admin-token / CONFAB_ADMIN_TOKEN), or printed at the first start\n".to_string()
        }
    };
    format!(
        r#"
== confab demo world (tenant "demo") ==
{admin}
users: 1 Alice (owner of chat 1), 2 Bob, 3 Carol, 4 Dave (open-line operator), 5 Erin (inactive)
bots:  100 Helper bot, 101 Second bot (app CLIENT_ID local.demo.bots)
chats: 1 Bitrix group (owner Alice; Bob, Carol, Dave, both bots) · 2 DM Alice–Bob
       3 iMessage group, 4 members, ch_3f1c1a522b0e4c399a550d7e3a1c0003 / 3f1c1a52-2b0e-4c39-9a55-0d7e3a1c0003
       4 iMessage group, 3 members (too small to leave) · 5, 6 open-line chats of CRM lead 1205 (owner Alice)
       7 iMessage group, 5 members, 3f1c1a52-2b0e-4c39-9a55-0d7e3a1c0007 (for the Linq example)

Bitrix24 REST — incoming webhook {base}/rest/1/demowebhookcode1/  (scopes im imbot imopenlines)
{n_bitrix}curl -X POST {base}/rest/1/demowebhookcode1/imbot.chat.leave.json -H 'Content-Type: application/json' -d '{{"CHAT_ID":1,"BOT_ID":101,"CLIENT_ID":"local.demo.bots"}}'
   curl -X POST {base}/rest/1/demowebhookcode1/imopenlines.crm.chat.user.delete.json -H 'Content-Type: application/json' -d '{{"CRM_ENTITY_TYPE":"lead","CRM_ENTITY":1205,"USER_ID":2}}'
   OAuth access token demo-oauth-access-token (app local.demo.bots, user 1; BOT_ID defaults to the app's first bot):
   curl -X POST {base}/rest/imbot.chat.leave -H 'Content-Type: application/json' -d '{{"CHAT_ID":1,"auth":"demo-oauth-access-token"}}'

Vibecode — personal keys vibe_api_demo_personal_key (Bob), vibe_api_demo_owner_key (Alice, owner of chat 1);
           app key vibe_app_demo_app_key + user session token demo-user-session-token (Carol)
{n_vibe}curl -X POST {base}/v1/chats/1/leave -H 'X-Api-Key: vibe_api_demo_personal_key'
   curl -X POST {base}/v1/chats/1/leave -H 'X-Api-Key: vibe_app_demo_app_key' -H 'Authorization: Bearer demo-user-session-token'
   # the owner stays owner after leaving; hand the chat over, then leave completely:
   curl -X POST {base}/v1/chats/1/owner -H 'X-Api-Key: vibe_api_demo_owner_key' -H 'Content-Type: application/json' -d '{{"userId":4}}'
   curl -X POST {base}/v1/chats/1/leave -H 'X-Api-Key: vibe_api_demo_owner_key'

Chert — tenant demo, signing secret demo-chert-signing-secret-0123456789 (also the bearer token)
{n_chert}TS=$(date +%s); SIG=$(printf '%s.' "$TS" | openssl dgst -sha256 -hmac 'demo-chert-signing-secret-0123456789' | sed 's/^.* //')
   curl -X POST {base}/api/v1/chats/ch_3f1c1a522b0e4c399a550d7e3a1c0003/leave -H 'x-chert-tenant: demo' -H "x-chert-signature: v1,$TS,$SIG"

Linq — API key demo-linq-api-key
{n_linq}curl -X POST {base}/api/partner/v3/chats/3f1c1a52-2b0e-4c39-9a55-0d7e3a1c0007/leave -H 'Authorization: Bearer demo-linq-api-key'

Admin API: {base}/admin/v1/tenants/demo (Authorization: Bearer <admin token>) · OpenAPI: {base}/openapi/admin.json
"#,
        n_bitrix = note("bitrix"),
        n_vibe = note("vibecode"),
        n_chert = note("chert"),
        n_linq = note("linq"),
    )
}
