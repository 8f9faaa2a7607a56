// Checks insufficient_quota.mjs itself, against a small local server that plays the proxy:
// each case serves a list of answers in order and says what the script must conclude.
//   node self_test.mjs        (exit 0 when every case went as expected)
import { spawn } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('./insufficient_quota.mjs', import.meta.url));

const ok = { status: 200, headers: {}, body: {
  id: 'chatcmpl-self', object: 'chat.completion', created: 1700000000, model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: 'hello' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 } } };
const error429 = (code, headers) => ({ status: 429, headers, body: {
  error: { message: `refused (${code})`, type: code, param: null, code } } });
const quota = error429('insufficient_quota', { 'x-should-retry': 'false' });
const quotaNoHeader = error429('insufficient_quota', {});
const rate = error429('rate_limit_exceeded', { 'retry-after': '1' });
const rateNoRetry = error429('rate_limit_exceeded', { 'x-should-retry': 'false' });

const cases = [
  { name: 'quota refusal with x-should-retry: false is final', mode: 'quota',
    answers: [ok, ok, ok, quota], exit: 0, expect: { ok: 3, error_code: 'insufficient_quota', attempts_for_failure: 1 } },
  { name: 'quota refusal without x-should-retry gets retried (the script must fail)', mode: 'quota',
    answers: [ok, quotaNoHeader], exit: 1, expect: { ok: 1, error_code: 'insufficient_quota', attempts_for_failure: 3 } },
  { name: 'rate refusal with Retry-After: 1 is retried, then served', mode: 'rate',
    answers: [ok, ok, rate, ok], exit: 0, expect: { ok: 3, error_code: 'rate_limit_exceeded', attempts_for_failure: 2, recovered: true } },
  { name: 'rate refusal retried until the retries run out', mode: 'rate',
    answers: [rate], exit: 0, expect: { ok: 0, error_code: 'rate_limit_exceeded', attempts_for_failure: 3, recovered: false } },
  { name: 'rate refusal marked not retryable (the script must fail)', mode: 'rate',
    answers: [rateNoRetry], exit: 1, expect: { ok: 0, error_code: 'rate_limit_exceeded', attempts_for_failure: 1 } },
];

// Serves answers[i] to the i-th request; the last answer repeats.
function serve(answers) {
  let n = 0;
  const seen = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      seen.push({ url: req.url, authorization: req.headers.authorization, body });
      const a = answers[Math.min(n++, answers.length - 1)];
      res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
      res.end(JSON.stringify(a.body));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, seen })));
}

function run(mode, url) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, mode], {
      env: { ...process.env, PROXY_URL: url, PROXY_TOKEN: 'rlp_selftest', SDK_MAX_CALLS: '20' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('close', (code) => resolve({ code, out }));
  });
}

let failures = 0;
for (const c of cases) {
  const { server, seen } = await serve(c.answers);
  const { port } = server.address();
  const { code, out } = await run(c.mode, `http://127.0.0.1:${port}/api/v1`);
  server.close();
  const problems = [];
  let line = null;
  try { line = JSON.parse(out.trim().split('\n').pop()); } catch { problems.push(`not JSON: ${out}`); }
  if (code !== c.exit) problems.push(`exit ${code}, expected ${c.exit}`);
  for (const [k, v] of Object.entries(c.expect))
    if (line && line[k] !== v) problems.push(`${k} = ${JSON.stringify(line[k])}, expected ${JSON.stringify(v)}`);
  if (line && line.error_status !== 429) problems.push(`error_status = ${line.error_status}`);
  if (!seen.length || seen[0].url !== '/api/v1/chat/completions') problems.push(`requests went to ${seen[0]?.url}`);
  if (seen[0]?.authorization !== 'Bearer rlp_selftest') problems.push(`authorization ${seen[0]?.authorization}`);
  if (seen[0] && JSON.parse(seen[0].body).max_tokens !== 50) problems.push('max_tokens was not 50');
  console.log(`${problems.length ? 'FAIL' : 'ok  '} ${c.name}${problems.length ? ': ' + problems.join('; ') : ''}`);
  failures += problems.length ? 1 : 0;
}
console.log(failures ? `${failures} of ${cases.length} cases failed` : `all ${cases.length} cases passed`);
process.exit(failures ? 1 : 0);
