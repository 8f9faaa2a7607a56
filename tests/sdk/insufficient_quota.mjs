// How the official OpenAI Node SDK treats the proxy's 429 answers.
//
//   PROXY_URL=http://127.0.0.1:PORT/api/v1 PROXY_TOKEN=rlp_... node insufficient_quota.mjs [quota|rate]
//
// Calls chat.completions.create (max_tokens 50) again and again, counting every HTTP attempt
// the SDK makes (maxRetries 2), until a call fails, and prints one JSON line:
//   {"mode":"quota","ok":N,"error_status":429,"error_code":"insufficient_quota",
//    "attempts_for_failure":M, ...}
// quota (default): exits 0 only if the failure was a 429 with code insufficient_quota that the
//   SDK attempted exactly once (a budget spent is final: no retries).
// rate: exits 0 only if a 429 with code rate_limit_exceeded was retried by the SDK (attempts
//   > 1, whether the call then failed or succeeded): a momentary refusal is worth retrying.
// Optional environment: PROXY_HEADERS, a JSON object of extra request headers (e.g. x-mock-*
// headers when pointed at the mock upstream directly); SDK_MAX_CALLS (default 200): give up,
// exit 1, when that many calls all succeeded.
import OpenAI from 'openai';

const mode = process.argv[2] ?? 'quota';
if (mode !== 'quota' && mode !== 'rate') {
  console.error(`usage: node insufficient_quota.mjs [quota|rate] (got '${mode}')`);
  process.exit(2);
}
const baseURL = process.env.PROXY_URL;
const apiKey = process.env.PROXY_TOKEN;
if (!baseURL || !apiKey) {
  console.error('PROXY_URL and PROXY_TOKEN must be set');
  process.exit(2);
}
const defaultHeaders = process.env.PROXY_HEADERS ? JSON.parse(process.env.PROXY_HEADERS) : undefined;
const maxCalls = Number(process.env.SDK_MAX_CALLS ?? 200);

// Counts the SDK's attempts; notes what the 429s said (read from a clone: the SDK reads the body).
let attempts = 0;
let seen429 = null;
const countingFetch = async (url, init) => {
  attempts += 1;
  const response = await globalThis.fetch(url, init);
  if (response.status === 429) {
    const body = await response.clone().json().catch(() => null);
    seen429 = {
      code: body?.error?.code ?? null,
      retry_after: response.headers.get('retry-after'),
      x_should_retry: response.headers.get('x-should-retry'),
    };
  }
  return response;
};

const client = new OpenAI({
  baseURL,
  apiKey,
  maxRetries: 2,
  timeout: 30_000,
  fetch: countingFetch,
  defaultHeaders,
});

const result = { mode, ok: 0, error_status: null, error_code: null, attempts_for_failure: null };
let passed = false;
for (let call = 0; call < maxCalls; ++call) {
  attempts = 0;
  seen429 = null;
  try {
    await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello.' }],
      max_tokens: 50,
    });
    result.ok += 1;
    if (mode === 'rate' && seen429) {
      // Refused, retried, then let through: the retry is what this mode looks for.
      Object.assign(result, { error_status: 429, error_code: seen429.code, attempts_for_failure: attempts,
                              retry_after: seen429.retry_after, recovered: true });
      passed = seen429.code === 'rate_limit_exceeded' && attempts > 1;
      break;
    }
  } catch (err) {
    result.error_status = err?.status ?? null;
    result.error_code = err?.code ?? null;
    result.attempts_for_failure = attempts;
    result.retry_after = err?.headers?.['retry-after'] ?? null;
    result.x_should_retry = err?.headers?.['x-should-retry'] ?? null;
    result.recovered = false;
    if (result.error_status === null)
      result.message = String(err?.message ?? err);
    if (mode === 'quota')
      passed = result.error_status === 429 && result.error_code === 'insufficient_quota' && attempts === 1;
    else
      passed = result.error_status === 429 && result.error_code === 'rate_limit_exceeded' && attempts > 1;
    break;
  }
}
if (result.error_status === null && !result.recovered)
  result.message = `no call failed in ${maxCalls} calls`;
console.log(JSON.stringify(result));
process.exit(passed ? 0 : 1);
