// Drives confab with the official @bitrix24/b24jssdk over HTTPS, unchanged.
// usage: B24_WEBHOOK=https://127.0.0.1:PORT/rest/1/sdkhook/ NODE_EXTRA_CA_CERTS=cert.pem node bitrix_b24jssdk.cjs
const { B24Hook, AjaxError } = require('@bitrix24/b24jssdk');

const b24 = B24Hook.fromWebhookUrl(process.env.B24_WEBHOOK);
const CLIENT_ID = 'app.sdk.js';

function expect(cond, what) {
  if (!cond) { console.log('FAILED:', what); process.exit(1); }
  console.log('ok:', what);
}

async function call(method, params) {
  const r = await b24.actions.v2.call.make({ method, params });
  if (!r.isSuccess) throw new Error(`${method}: ${r.getErrorMessages().join('; ')}`);
  return r.getData().result;
}

async function callErr(method, params) {
  try {
    const r = await b24.actions.v2.call.make({ method, params });
    if (!r.isSuccess) return { soft: r.getErrorMessages() };
    return { result: r.getData().result };
  } catch (e) {
    if (e instanceof AjaxError) return { code: e.code, status: e.status, message: e.message };
    throw e;
  }
}

(async () => {
  const handler = 'https://example.invalid/bot';
  const bot = await call('imbot.register', { CODE: 'jsbot', TYPE: 'B', EVENT_HANDLER: handler, PROPERTIES: { NAME: 'JS bot' }, CLIENT_ID });
  expect(Number.isInteger(bot) && bot > 0, `imbot.register -> ${bot}`);
  const ownerBot = await call('imbot.register', { CODE: 'jsowner', TYPE: 'B', EVENT_HANDLER: handler, PROPERTIES: { NAME: 'Owner bot' }, CLIENT_ID });

  const chat = await call('im.chat.add', { USERS: [2, 3, bot], TITLE: 'JS chat' });
  expect(Number.isInteger(chat), `im.chat.add -> ${chat}`);
  const members = await call('im.chat.user.list', { CHAT_ID: chat });
  expect(JSON.stringify(members) === JSON.stringify([1, 2, 3, bot]), `members ${JSON.stringify(members)}`);

  expect(await call('imbot.chat.leave', { CHAT_ID: chat, BOT_ID: bot, CLIENT_ID }) === true, 'the bot leaves');
  const again = await callErr('imbot.chat.leave', { CHAT_ID: chat, BOT_ID: bot, CLIENT_ID });
  expect(again.code === 'WRONG_REQUEST' && again.status === 400, `second leave -> ${JSON.stringify(again)}`);

  const owned = await call('imbot.chat.add', { BOT_ID: ownerBot, USERS: [2], TITLE: 'Bot owned', CLIENT_ID });
  const refused = await callErr('imbot.chat.leave', { CHAT_ID: owned, BOT_ID: ownerBot, CLIENT_ID });
  expect(refused.code === 'ACCESS_ERROR' && refused.status === 403 && refused.message === 'LEAVE_OWNER_FORBIDDEN', `owner bot leave -> ${JSON.stringify(refused)}`);

  const r1 = await call('imopenlines.crm.chat.user.delete', { CRM_ENTITY_TYPE: 'lead', CRM_ENTITY: 1205, USER_ID: 2, CHAT_ID: 20 });
  expect(r1 === 20, `crm delete with CHAT_ID -> ${r1}`);
  const r2 = await call('imopenlines.crm.chat.user.delete', { CRM_ENTITY_TYPE: 'lead', CRM_ENTITY: 1205, USER_ID: 3 });
  expect(r2 === 21, `crm delete without CHAT_ID -> last chat ${r2}`);

  const batch = await b24.actions.v2.batch.make({
    calls: {
      a: ['im.chat.add', { USERS: [2], TITLE: 'Batch chat' }],
      b: ['im.chat.user.list', { CHAT_ID: '$result[a]' }],
      c: ['im.chat.leave', { CHAT_ID: '$result[a]' }],
    },
    options: { isHaltOnError: true },
  });
  expect(batch.isSuccess, `batch ok ${JSON.stringify(batch.getErrorMessages())}`);
  const data = batch.getData();
  const list = data.b?.getData ? data.b.getData().result : data.b;
  expect(JSON.stringify(list) === JSON.stringify([1, 2]), `batch $result reference -> ${JSON.stringify(list)}`);

  const burst = await Promise.all(Array.from({ length: 12 }, () => call('im.chat.user.list', { CHAT_ID: chat })));
  expect(burst.length === 12 && burst.every((m) => Array.isArray(m)), 'a rate-limited burst is ridden out');
  console.log('scenario ok');
})().catch((e) => { console.log('FAILED:', e && (e.stack || e)); process.exit(1); });
