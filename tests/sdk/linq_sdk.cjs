// Drives confab with the official @linqapp/sdk, unchanged but for the base
// URL (LINQ_API_V3_BASE_URL) and key (LINQ_API_V3_API_KEY), with a local
// webhook receiver that verifies the documented signature.
const http = require('node:http');
const crypto = require('node:crypto');
const { LinqAPIV3, AuthenticationError, BadRequestError, ConflictError, NotFoundError, PermissionDeniedError } = require('@linqapp/sdk');

const LINE = process.env.LINQ_LINE;
let requests = [];
const countingFetch = (url, init) => { requests.push(`${init?.method || 'GET'} ${new URL(url).pathname}`); return fetch(url, init); };
const client = new LinqAPIV3({ fetch: countingFetch });

function expect(cond, what) {
  if (!cond) { console.log('FAILED:', what); process.exit(1); }
  console.log('ok:', what);
}

async function errorOf(promise) {
  try { await promise; return null; } catch (e) { return e; }
}

(async () => {
  const received = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { received.push({ headers: req.headers, body }); res.writeHead(200); res.end('ok'); });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const target = `http://127.0.0.1:${server.address().port}/linq`;

  const sub = await client.webhookSubscriptions.create({ target_url: target, subscribed_events: ['participant.removed'] });
  expect(typeof sub.signing_secret === 'string' && sub.signing_secret.length > 10, 'subscription created, secret shown once');

  const created = await client.chats.create({ from: LINE, to: ['+14155557001', '+14155557002', '+14155557003', '+14155557004'], message: { parts: [{ type: 'text', value: 'Hello group' }] } });
  const chatId = created.chat.id;
  expect(created.chat.handles.length === 5, `5-member group ${chatId}`);

  const sent = await client.chats.messages.send(chatId, { message: { parts: [{ type: 'text', value: 'before leaving' }] } });
  expect(sent.message && sent.message.id, 'message sent');

  const left = await client.chats.leaveChat(chatId);
  expect(left.status === 'accepted' && left.message === 'Leave group chat queued' && left.trace_id, `leave accepted, trace ${left.trace_id}`);

  const deadline = Date.now() + 10000;
  while (received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(received.length === 1, 'participant.removed webhook arrived');
  const hook = received[0];
  const ts = hook.headers['x-webhook-timestamp'];
  const expected = crypto.createHmac('sha256', sub.signing_secret).update(`${ts}.${hook.body}`).digest('hex');
  expect(hook.headers['x-webhook-signature'] === expected, 'signature verifies (HMAC-SHA256 over "{ts}.{body}")');
  const event = JSON.parse(hook.body);
  expect(event.event_type === 'participant.removed' && event.data.chat_id === chatId && event.data.participant.is_me === true && event.trace_id === left.trace_id, 'envelope and data');

  const chat = await client.chats.retrieve(chatId);
  const me = chat.handles.find((h) => h.is_me);
  expect(me && me.status === 'left' && me.left_at, 'retrieve shows our handle as left');

  requests = [];
  const e409 = await errorOf(client.chats.messages.send(chatId, { message: { parts: [{ type: 'text', value: 'after' }] } }));
  expect(e409 instanceof ConflictError && e409.status === 409 && e409.error?.error?.code === 2013, `send after leaving → 409/2013 (${e409 && e409.message})`);
  expect(requests.filter((r) => r.endsWith('/messages')).length === 1, `not retried (${requests.length} request)`);

  const small = await client.chats.create({ from: LINE, to: ['+14155557101', '+14155557102'], message: { parts: [{ type: 'text', value: 'small' }] } });
  const eSmall = await errorOf(client.chats.leaveChat(small.chat.id));
  expect(eSmall instanceof BadRequestError && eSmall.status === 400, `3-member group leave → ${eSmall && eSmall.status}`);

  const dm = await client.chats.create({ from: LINE, to: ['+14155557201'], message: { parts: [{ type: 'text', value: 'dm' }] } });
  const eDm = await errorOf(client.chats.leaveChat(dm.chat.id));
  expect(eDm instanceof ConflictError && eDm.status === 409, `DM leave → ${eDm && eDm.status}`);

  const eNotFound = await errorOf(client.chats.retrieve(crypto.randomUUID()));
  expect(eNotFound instanceof NotFoundError && eNotFound.status === 404, 'unknown chat → NotFoundError');
  const group = await client.chats.create({ from: LINE, to: ['+14155557301', '+14155557302', '+14155557303', '+14155557304'], message: { parts: [{ type: 'text', value: 'g' }] } });
  const eTyping = await errorOf(client.chats.typing.start(group.chat.id));
  expect(eTyping instanceof PermissionDeniedError && eTyping.status === 403, 'typing in a group → PermissionDeniedError');

  const bad = new LinqAPIV3({ apiKey: 'wrong-key' });
  const eAuth = await errorOf(bad.chats.retrieve(chatId));
  expect(eAuth instanceof AuthenticationError, 'wrong key → AuthenticationError');

  server.close();
  console.log('scenario ok');
})().catch((e) => { console.log('FAILED:', e && (e.stack || e)); process.exit(1); });
