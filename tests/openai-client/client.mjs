// SPDX-License-Identifier: MIT
// The official `openai` npm client against aigw. Run by
// test_openai_client.py, which installs the package next to a copy of this
// file and starts aigw (with the mock model "mock" and "gpt-up" on an
// OpenAI-type mock upstream). Environment: AIGW_BASE_URL.
// Prints one JSON line of results; exits non-zero on the first failed check.

import OpenAI from 'openai';

const base = process.env.AIGW_BASE_URL;
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-client-side-not-checked', maxRetries: 0, timeout: 20000 });
const results = { version: OpenAI.VERSION ?? null, checks: 0 };

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  results.checks++;
}

function eq(actual, expected, what) {
  check(JSON.stringify(actual) === JSON.stringify(expected),
    `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

const messages = [
  { role: 'system', content: 'You are a test.' },
  { role: 'user', content: 'hello from the node client' },
];
const expected = {
  mock: 'hello from the node client',             // the mock backend echoes
  'gpt-up': 'mock answer: hello from the node client', // the mock upstream
};

async function plain(model) {
  const { data: c, response } = await client.chat.completions
    .create({ model, messages }).withResponse();
  eq(response.status, 200, `${model}: status`);
  eq(response.headers.get('x-aigw-model'), model, `${model}: x-aigw-model`);
  eq(c.object, 'chat.completion', `${model}: object`);
  eq(c.model, model, `${model}: model`);
  eq(c.choices.length, 1, `${model}: choices`);
  eq(c.choices[0].message.role, 'assistant', `${model}: role`);
  eq(c.choices[0].message.content, expected[model], `${model}: content`);
  eq(c.choices[0].finish_reason, 'stop', `${model}: finish_reason`);
  check(c.usage && c.usage.total_tokens === c.usage.prompt_tokens + c.usage.completion_tokens && c.usage.total_tokens > 0,
    `${model}: usage ${JSON.stringify(c.usage)}`);
  results[`${model}_plain`] = c.choices[0].message.content;
}

async function streamed(model, includeUsage) {
  const stream = await client.chat.completions.create({
    model, messages, stream: true,
    ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
  });
  let text = '';
  let finishes = [];
  let usage = null;
  let n = 0;
  const ids = new Set();
  for await (const chunk of stream) {
    n++;
    ids.add(chunk.id);
    eq(chunk.object, 'chat.completion.chunk', `${model}: chunk object`);
    eq(chunk.model, model, `${model}: chunk model`);
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) {
      text += ch.delta?.content ?? '';
      if (ch.finish_reason) finishes.push(ch.finish_reason);
    }
  }
  check(n >= 2, `${model}: ${n} chunks`);
  eq(ids.size, 1, `${model}: one id over the stream`);
  eq(text, expected[model], `${model}: streamed content`);
  eq(finishes, ['stop'], `${model}: finish reasons`);
  if (includeUsage)
    check(usage && usage.total_tokens > 0, `${model}: usage in the stream ${JSON.stringify(usage)}`);
  else
    eq(usage, null, `${model}: no usage without include_usage`);
  results[`${model}_stream${includeUsage ? '_usage' : ''}`] = { text, chunks: n };
}

async function notFound() {
  try {
    await client.chat.completions.create({ model: 'no-such-model', messages });
  } catch (e) {
    check(e instanceof OpenAI.NotFoundError, `unknown model: ${e?.constructor?.name} is not NotFoundError`);
    eq(e.status, 404, 'unknown model: status');
    eq(e.code ?? e.error?.code, 'model_not_found', 'unknown model: code');
    eq(e.type ?? e.error?.type, 'invalid_request_error', 'unknown model: type');
    eq(e.param ?? e.error?.param, 'model', 'unknown model: param');
    results.not_found = { status: e.status, message: e.message };
    return;
  }
  throw new Error('unknown model: no error thrown');
}

async function badRequest() {
  try {
    await client.chat.completions.create({ model: 'mock', messages: [] });
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError, `empty messages: ${e?.constructor?.name} is not BadRequestError`);
    eq(e.status, 400, 'empty messages: status');
    results.bad_request = { status: e.status, message: e.message };
    return;
  }
  throw new Error('empty messages: no error thrown');
}

async function brokenStream() {
  // the upstream cuts the stream after some content: aigw ends it with an
  // error event, which the client must raise, not swallow
  const directive = 'MOCK ' + JSON.stringify({ text: 'partial answer here', chunks: 3, cut_after: 2 });
  const stream = await client.chat.completions.create({
    model: 'gpt-up', stream: true, messages: [{ role: 'user', content: directive }],
  });
  let text = '';
  try {
    for await (const chunk of stream)
      for (const ch of chunk.choices) text += ch.delta?.content ?? '';
  } catch (e) {
    check(e instanceof OpenAI.APIError, `broken stream: ${e?.constructor?.name} is not an APIError`);
    results.broken_stream = { text, error: e.message };
    return;
  }
  throw new Error(`broken stream: iteration ended without an error (text ${JSON.stringify(text)})`);
}

try {
  for (const model of ['mock', 'gpt-up']) {
    await plain(model);
    await streamed(model, false);
    await streamed(model, true);
  }
  await notFound();
  await badRequest();
  await brokenStream();
  console.log(JSON.stringify(results));
} catch (e) {
  console.log(JSON.stringify({ ...results, failure: String(e?.stack ?? e) }));
  process.exit(1);
}
