"""Drives confab with the official b24pysdk over HTTPS, unchanged.
usage: B24_WEBHOOK=https://127.0.0.1:PORT/rest/1/sdkhook/ REQUESTS_CA_BUNDLE=cert.pem python bitrix_b24pysdk.py
"""
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from b24pysdk import BitrixWebhook
from b24pysdk.errors import BitrixAPIError

u = urlsplit(os.environ["B24_WEBHOOK"])
token = BitrixWebhook(domain=u.netloc, webhook_token=u.path.split("/rest/", 1)[1].strip("/"))
CLIENT_ID = "app.sdk.py"


def expect(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)
    print("ok:", what)


def call(method, params):
    return token.call_method(method, params)["result"]


def call_err(method, params):
    try:
        return {"result": call(method, params)}
    except BitrixAPIError as e:
        return {"code": e.error, "status": e.status_code, "message": e.error_description}


handler = "https://example.invalid/bot"
bot = call("imbot.register", {"CODE": "pybot", "TYPE": "B", "EVENT_HANDLER": handler, "PROPERTIES": {"NAME": "Py bot"}, "CLIENT_ID": CLIENT_ID})
expect(isinstance(bot, int) and bot > 0, f"imbot.register -> {bot}")
owner_bot = call("imbot.register", {"CODE": "pyowner", "TYPE": "B", "EVENT_HANDLER": handler, "PROPERTIES": {"NAME": "Owner"}, "CLIENT_ID": CLIENT_ID})

chat = call("im.chat.add", {"USERS": [2, 3, bot], "TITLE": "Py chat"})
members = call("im.chat.user.list", {"CHAT_ID": chat})
expect(members == [1, 2, 3, bot], f"members {members}")

expect(call("imbot.chat.leave", {"CHAT_ID": chat, "BOT_ID": bot, "CLIENT_ID": CLIENT_ID}) is True, "the bot leaves")
again = call_err("imbot.chat.leave", {"CHAT_ID": chat, "BOT_ID": bot, "CLIENT_ID": CLIENT_ID})
expect(again.get("code") == "WRONG_REQUEST" and again.get("status") == 400, f"second leave -> {again}")

owned = call("imbot.chat.add", {"BOT_ID": owner_bot, "USERS": [2], "TITLE": "Bot owned", "CLIENT_ID": CLIENT_ID})
refused = call_err("imbot.chat.leave", {"CHAT_ID": owned, "BOT_ID": owner_bot, "CLIENT_ID": CLIENT_ID})
expect(refused.get("code") == "ACCESS_ERROR" and refused.get("status") == 403 and refused.get("message") == "LEAVE_OWNER_FORBIDDEN", f"owner bot leave -> {refused}")

r1 = call("imopenlines.crm.chat.user.delete", {"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 1205, "USER_ID": 2, "CHAT_ID": 20})
expect(r1 == 20, f"crm delete with CHAT_ID -> {r1}")
r2 = call("imopenlines.crm.chat.user.delete", {"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 1205, "USER_ID": 3})
expect(r2 == 21, f"crm delete without CHAT_ID -> {r2}")

b = token.call_batch({
    "a": ("im.chat.add", {"USERS": [2], "TITLE": "Batch chat"}),
    "b": ("im.chat.user.list", {"CHAT_ID": "$result[a]"}),
    "c": ("im.chat.leave", {"CHAT_ID": "$result[a]"}),
}, halt=True)
res = b["result"]
expect(not res["result_error"] and res["result"]["b"] == [1, 2] and res["result"]["c"] is True, f"batch with $result -> {res['result']}")

# The typed client reads the full `time` object.
typed = __import__("b24pysdk").Client(token).im.chat.get(entity_type="CRM", entity_id="LEAD|1205").result
expect(typed == {"ID": 21}, f"typed client result -> {typed}")

with ThreadPoolExecutor(max_workers=12) as pool:
    burst = list(pool.map(lambda _: call("im.chat.user.list", {"CHAT_ID": chat}), range(12)))
expect(len(burst) == 12 and all(isinstance(m, list) for m in burst), "a rate-limited burst is ridden out")
print("scenario ok")
