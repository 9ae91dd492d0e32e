#!/usr/bin/env node
// Replays demo traffic through the gateway and reports what it decided.
//
//   node scripts/demo/traffic.js --base http://127.0.0.1:8080
//       [--access-log FILE] [--jwt-key FILE] [--vetting on|off] [--geoip on|off]
//       [--only app,app]
//   node scripts/demo/traffic.js --base http://127.0.0.1:8080 --walkthrough
//       [--review 'scripts/vetting-review -p <redis port>']
//
// Every app runs the real SMART flow over HTTP: discovery, /oauth2/auth with
// PKCE and state, the login redirects (with cookies), the code read from the
// redirect's Location (the redirect_uri itself is never fetched), the token
// exchange with the app's client authentication, FHIR calls and a refresh.
// Without --access-log and --jwt-key it looks for a running run.sh's files;
// without --review, the walkthrough takes the Redis port from its state file.
//
// --vetting defaults to what the access log shows (no $vetting_* fields: off);
// --geoip off makes the country expectations informational.
//
// Exit status: 1 when the module is on and something that must hold did not
// (a write reached the FHIR server, the good app was refused, ...); with
// --vetting off the expected refusals cannot happen and it exits 0.

import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import * as jose from 'jose';

import { client, FHIR_SCOPES, OIDC_SCOPES } from './clients.js';

const { values: args } = parseArgs({
  options: {
    base: { type: 'string', default: 'http://127.0.0.1:8080' },
    'access-log': { type: 'string' },
    'jwt-key': { type: 'string' },
    vetting: { type: 'string' },
    geoip: { type: 'string', default: 'on' },
    only: { type: 'string' },
    walkthrough: { type: 'boolean', default: false },
    review: { type: 'string' },
  },
});

const BASE = args.base.replace(/\/$/, '');
const FHIR = `${BASE}/fhir/r4`;
// on/off; when not given, told by the access log (no decision fields: off)
let VETTING = args.vetting !== 'off';
// abroad-app's servers: two networks of Deutsche Telekom, which the pinned
// country database (scripts/fetch-country-db.sh: IPtoASN data, PDDL) puts
// in DE: 80.128.0.0/11 and 2003::/19. The database decides, not this file:
// the replay checks the country the gateway logged for these calls.
const ABROAD = ['80.156.10.20', '2003:e0:1::20'];
const ABROAD_COUNTRY = 'DE';
const RUN = randomBytes(3).toString('hex');
const SCOPE = ['launch/patient', 'openid', 'fhirUser', 'offline_access', 'patient/*.read'].join(' ');

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const brief = (text) => text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 60);
const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

// run.sh leaves its temporary directory (dir=), its pid (pid=) and its Redis
// port (redis_port=) here
function runState(key) {
  const port = new URL(BASE).port || '80';
  const state = path.join(process.env.TMPDIR || tmpdir(), `vetting-demo-${port}.state`);
  if (!existsSync(state)) return undefined;
  return readFileSync(state, 'utf8').match(new RegExp(`^${key}=(.*)$`, 'm'))?.[1];
}

const runDir = () => runState('dir');

// the review command for the demo's Redis, as typed from the current directory
function reviewCommand() {
  if (args.review) return args.review;
  const script = fileURLToPath(new URL('../vetting-review', import.meta.url));
  const rel = path.relative(process.cwd(), script);
  const cmd = rel.startsWith('..') ? script : rel;
  return `${cmd} -p ${runState('redis_port') ?? '<redis port>'}`;
}

// --- HTTP, one app at a time -------------------------------------------------

class App {
  constructor(id, member) {
    this.id = id;
    this.client = client(id);
    this.member = member;
    this.sent = 0;
    this.statuses = new Map();
    this.requestIds = new Set();
    this.lastFhirAt = 0;
    this.token = undefined;
    this.notes = [];
    this.abroadIds = [];
    this.logChecks = [];
  }

  async request(method, url, {
    headers = {}, form, json, token, xff, jar,
  } = {}) {
    const rid = `${RUN}-${this.id}-${this.sent + 1}`;
    const h = {
      'User-Agent': `vetting-demo/${this.id}`,
      'X-Request-Id': rid,
      Accept: url.startsWith(FHIR) ? 'application/fhir+json' : 'application/json',
      ...headers,
    };
    if (token) h.Authorization = `Bearer ${token}`;
    if (xff) h['X-Forwarded-For'] = xff;
    if (jar?.size) h.Cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    let body;
    if (form) {
      body = new URLSearchParams(form).toString();
      h['Content-Type'] = 'application/x-www-form-urlencoded';
    } else if (json) {
      body = JSON.stringify(json);
      h['Content-Type'] ??= 'application/fhir+json';
    }
    this.sent++;
    this.requestIds.add(rid);
    let res;
    try {
      res = await fetch(url, { method, headers: h, body, redirect: 'manual', signal: AbortSignal.timeout(15000) });
    } catch (err) {
      this.count('ERR');
      return {
        id: rid, status: 0, ok: false, headers: new Headers(), text: String(err.cause?.code || err.message),
      };
    }
    const text = await res.text();
    this.count(res.status);
    if (jar) {
      for (const c of res.headers.getSetCookie()) {
        const [pair, ...attrs] = c.split(';');
        const i = pair.indexOf('=');
        const name = pair.slice(0, i).trim();
        const gone = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a) || /^\s*expires=Thu, 01 Jan 1970/i.test(a));
        if (gone) jar.delete(name); else jar.set(name, pair.slice(i + 1).trim());
      }
    }
    let data;
    try { data = JSON.parse(text); } catch { data = undefined; }
    return {
      id: rid,
      status: res.status,
      ok: res.ok,
      headers: res.headers,
      text,
      data,
      // answered by the FHIR server itself, not by the gateway
      upstream: res.headers.get('x-demo-upstream') === 'fhirserver',
    };
  }

  count(status) {
    this.statuses.set(status, (this.statuses.get(status) || 0) + 1);
  }

  // FHIR calls of a well-behaved app stay under the gateway's 5 r/s
  async paced(minIntervalMs) {
    const wait = this.lastFhirAt + minIntervalMs - Date.now();
    if (wait > 0) await sleep(wait);
    this.lastFhirAt = Date.now();
  }

  async fhir(method, pathOrUrl, opts = {}) {
    if (opts.pace) await this.paced(opts.pace);
    const url = pathOrUrl.startsWith('http') ? pathOrUrl : `${FHIR}/${pathOrUrl}`;
    return this.request(method, url, { token: this.token?.access_token, ...opts });
  }
}

// --- SMART -------------------------------------------------------------------

let smart;

async function discover(app) {
  const r = await app.request('GET', `${FHIR}/.well-known/smart-configuration`);
  await app.request('GET', `${FHIR}/metadata`);
  if (r.status !== 200 || !r.data?.authorization_endpoint) {
    throw new Error(`SMART discovery failed: ${r.status} ${r.text.slice(0, 200)}`);
  }
  smart = r.data;
  return smart;
}

function pkcePair() {
  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  return { verifier, challenge };
}

function authorizeUrl(app, member, pkce, state, redirectUri) {
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: app.client.id,
    redirect_uri: redirectUri,
    scope: SCOPE,
    state,
    aud: FHIR,
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
    login_hint: member,
  });
  return `${smart.authorization_endpoint}?${q}`;
}

let jwtKey;

async function clientAuth(app) {
  const c = app.client;
  switch (c.auth) {
    case 'client_secret_basic': {
      const basic = Buffer.from(`${encodeURIComponent(c.id)}:${encodeURIComponent(c.secret)}`).toString('base64');
      return { headers: { Authorization: `Basic ${basic}` }, form: {} };
    }
    case 'client_secret_post':
      return { headers: {}, form: { client_id: c.id, client_secret: c.secret } };
    case 'private_key_jwt': {
      if (!jwtKey) throw new Error('no private key for private_key_jwt (--jwt-key)');
      const assertion = await new jose.SignJWT({})
        .setProtectedHeader({ alg: jwtKey.alg, kid: jwtKey.kid, typ: 'JWT' })
        .setIssuer(c.id)
        .setSubject(c.id)
        .setAudience(smart.token_endpoint)
        .setJti(b64url(randomBytes(16)))
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(jwtKey.key);
      return {
        headers: {},
        form: {
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          client_assertion: assertion,
        },
      };
    }
    default:
      return { headers: {}, form: { client_id: c.id } };
  }
}

// The whole authorization: returns { ok, stage, status, error, token }.
async function authorize(app, member) {
  const [redirectUri] = app.client.redirectUris(new URL(BASE).port);
  const review = reviewCommand();
  const pkce = pkcePair();
  const state = b64url(randomBytes(16));
  const jar = new Map(); // a fresh browser for every member
  let url = authorizeUrl(app, member, pkce, state, redirectUri);
  let code;
  for (let hop = 0; hop < 10 && !code; hop++) {
    const r = await app.request('GET', url, { jar });
    const loc = r.headers.get('location');
    if (r.status < 300 || r.status > 399 || !loc) {
      return { ok: false, stage: hop === 0 ? 'authorize' : 'login', status: r.status, error: r.data?.error || brief(r.text) };
    }
    const next = new URL(loc, url);
    if (next.href.startsWith(redirectUri)) {
      // the redirect_uri is the app's: read the code, do not fetch it
      const p = next.searchParams;
      if (p.get('error')) return { ok: false, stage: 'authorize', status: r.status, error: p.get('error') };
      if (p.get('state') !== state) return { ok: false, stage: 'authorize', status: r.status, error: 'state mismatch' };
      code = p.get('code');
    }
    url = next.href;
  }
  if (!code) return { ok: false, stage: 'login', status: 0, error: 'too many redirects' };

  const auth = await clientAuth(app);
  const r = await app.request('POST', smart.token_endpoint, {
    headers: auth.headers,
    form: {
      grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: pkce.verifier, ...auth.form,
    },
  });
  if (r.status !== 200 || !r.data?.access_token) {
    return { ok: false, stage: 'token', status: r.status, error: r.data?.error || brief(r.text) };
  }
  if (r.data.patient !== member) app.notes.push(`token response patient=${r.data.patient}, expected ${member}`);
  app.token = r.data;
  return { ok: true, status: 200, token: r.data };
}

async function refresh(app) {
  const auth = await clientAuth(app);
  const r = await app.request('POST', smart.token_endpoint, {
    headers: auth.headers,
    form: { grant_type: 'refresh_token', refresh_token: app.token.refresh_token, ...auth.form },
  });
  if (r.status === 200 && r.data?.access_token) app.token = { ...app.token, ...r.data };
  return r;
}

// --- the apps ----------------------------------------------------------------

const checks = [];

function check(app, must, expected, got, ok) {
  checks.push({
    app: app.id, must, expected, got, ok,
  });
}

// (a) a well-behaved claims viewer: reads for three members, paging, a refresh
async function goodApp() {
  const app = new App('good-app', 'm-00001');
  await discover(app);
  const refused = [];
  const pace = 260;
  const expectOk = (what, r) => {
    if (r.status >= 400 || r.status === 0) refused.push(`${what} -> ${r.status}`);
    return r;
  };
  for (const m of ['m-00001', 'm-00002', 'm-00003']) {
    app.member = m;
    const a = await authorize(app, m);
    if (!a.ok) { refused.push(`authorize ${m} -> ${a.stage} ${a.status} ${a.error}`); continue; }
    const get = (p) => app.fhir('GET', p, { pace }).then((r) => expectOk(`GET ${p.split('?')[0]}`, r));
    await get(`Patient/${m}`);
    await get(`Patient?_id=${m}`);
    await get(`Coverage?patient=${m}`);
    // paging: follow Bundle.link next verbatim
    let page = await get(`ExplanationOfBenefit?patient=${m}&_count=2`);
    const eobIds = [];
    for (let n = 0; page.data?.resourceType === 'Bundle' && n < 5; n++) {
      eobIds.push(...(page.data.entry || []).map((e) => e.resource.id));
      const next = page.data.link?.find((l) => l.relation === 'next')?.url;
      if (!next) break;
      page = await get(next);
    }
    await get(`ExplanationOfBenefit?patient=${m}&type=http://terminology.hl7.org/CodeSystem/claim-type|pharmacy&_count=10`);
    await app.fhir('POST', 'ExplanationOfBenefit/_search', { pace, form: { patient: m, _count: '50' } })
      .then((r) => expectOk('POST ExplanationOfBenefit/_search', r));
    if (eobIds[0]) await get(`ExplanationOfBenefit/${eobIds[0]}`);
    await get(`Patient/${m}/$everything?_count=20`);
    const rr = await refresh(app);
    expectOk('refresh', rr);
    await get(`Coverage?patient=${m}`);
  }
  check(app, true, 'every request answered 2xx/3xx', refused.length ? `refused: ${refused.join('; ')}` : 'all answered', !refused.length);
  return app;
}

// (b) an app that writes to a read-only API
async function writerApp() {
  const app = new App('writer-app', 'm-00004');
  const m = app.member;
  await discover(app);
  const a = await authorize(app, m);
  if (!a.ok) {
    check(app, true, 'authorization succeeds before any write', `${a.stage} ${a.status} ${a.error}`, false);
    return app;
  }
  await app.fhir('GET', `Patient/${m}`);

  const writes = [
    ['POST', 'Observation', { json: { resourceType: 'Observation', status: 'final', code: { text: 'weight' }, subject: { reference: `Patient/${m}` } } }],
    ['PUT', `Patient/${m}`, { json: { resourceType: 'Patient', id: m, active: false } }],
    ['PATCH', `Coverage/cov-${m.slice(2)}`, { json: [{ op: 'replace', path: '/status', value: 'cancelled' }], headers: { 'Content-Type': 'application/json-patch+json' } }],
    ['DELETE', `ExplanationOfBenefit/eob-${m.slice(2)}-1`, {}],
    ['POST', '', { json: { resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'DELETE', url: `Coverage/cov-${m.slice(2)}` } }] } }],
  ];
  const seen = [];
  let reached = 0;
  for (const [method, p, opts] of writes) {
    const r = await app.request(method, p ? `${FHIR}/${p}` : FHIR, { token: app.token.access_token, ...opts });
    if (r.upstream) reached++;
    seen.push(`${method} ${p || '/fhir/r4'} ${r.status}${r.upstream ? ' (reached the FHIR server)' : ''}`);
  }
  check(app, true, 'no write reaches the FHIR server', reached ? `${reached} of ${writes.length} did` : 'none did', reached === 0);
  const gw405 = seen.filter((s) => / 405$/.test(s)).length;
  check(app, true, 'the gateway answers the first writes 405', `${gw405} gateway 405s (${seen.join(', ')})`, gw405 >= 3);

  const read = await app.fhir('GET', `Patient/${m}`);
  const invalidToken = read.status === 401 && /invalid_token/.test(read.headers.get('www-authenticate') || '');
  check(app, true, 'after 3 writes the app is suspended: a read gets 401 invalid_token', `${read.status}`, invalidToken && !read.upstream);
  const rr = await refresh(app);
  check(app, true, 'its refresh gets invalid_client', `${rr.status} ${rr.data?.error ?? ''}`.trim(), rr.data?.error === 'invalid_client');
  const again = await authorize(app, m);
  check(app, true, 'a new /oauth2/auth for it is refused (403)', again.ok ? 'authorized' : `${again.stage} ${again.status} ${again.error}`,
    !again.ok && again.stage === 'authorize' && again.status === 403);
  return app;
}

// (c) an app that fires reads as fast as it can
async function burstApp() {
  const app = new App('burst-app', 'm-00005');
  const m = app.member;
  await discover(app);
  const a = await authorize(app, m);
  if (!a.ok) {
    check(app, true, 'authorization succeeds', `${a.stage} ${a.status} ${a.error}`, false);
    return app;
  }
  const results = await Promise.all(Array.from({ length: 40 }, (_, i) => app.fhir('GET', i % 2 ? `ExplanationOfBenefit?patient=${m}` : `Patient/${m}`)));
  const limited = results.filter((r) => r.status === 429);
  const withHeaders = limited.filter((r) => r.headers.get('retry-after') && (r.headers.get('ratelimit') || r.headers.get('ratelimit-policy')));
  check(app, true, 'some of 40 rapid reads get 429 with Retry-After and RateLimit headers',
    `${limited.length} x 429, ${withHeaders.length} with both headers`, limited.length > 0 && withHeaders.length === limited.length);
  await sleep(2500); // let the bucket refill before the final probe
  return app;
}

// (d) an app whose servers call from abroad (the member signs in at home),
// through the trusted proxy's X-Forwarded-For, from IPv4 and IPv6 addresses
async function abroadApp() {
  const app = new App('abroad-app', 'm-00006');
  const m = app.member;
  const mustHold = args.geoip !== 'off';
  if (!jwtKey) {
    check(app, false, 'runs (needs the private_key_jwt key, --jwt-key)', 'skipped', false);
    app.skipped = true;
    return app;
  }
  await discover(app);
  const a = await authorize(app, m);
  if (!a.ok) {
    check(app, true, 'authorization (private_key_jwt) succeeds', `${a.stage} ${a.status} ${a.error}`, false);
    return app;
  }
  const seen = [];
  for (let i = 0; i < 5; i++) {
    const xff = ABROAD[i % ABROAD.length];
    const r = await app.fhir('GET', i % 2 ? `Coverage?patient=${m}` : `ExplanationOfBenefit?patient=${m}`, { xff });
    seen.push(`${xff}:${r.status}`);
    if (i < 3) app.abroadIds.push(r.id);
  }
  const firstThree = seen.slice(0, 3);
  check(app, mustHold, `the first 3 calls from ${ABROAD.join(' and ')} get 403`, seen.join(' '),
    firstThree.every((s) => s.endsWith(':403')));
  // the country the gateway found, read from the access log after the run
  app.logChecks.push((log) => {
    if (!log.size) {
      check(app, false, `the country database places them in ${ABROAD_COUNTRY}`, 'no access log to read', false);
      return;
    }
    const countries = app.abroadIds.map((id) => log.get(id)?.country ?? '?');
    check(app, mustHold, `the country database places them in ${ABROAD_COUNTRY} ($vetting_country)`,
      countries.join(' '), countries.length > 0 && countries.every((c) => c === ABROAD_COUNTRY));
  });
  const home = await app.fhir('GET', `Patient/${m}`);
  check(app, mustHold, 'after 3 refusals the app is suspended: a call from home gets 401', `${home.status}`,
    home.status === 401 && !home.upstream);
  return app;
}

// (e) an app that collects many members' authorizations
async function popularApp() {
  const app = new App('popular-app', 'm-00006');
  await discover(app);
  let firstRefused = 0;
  let refusal = '';
  let granted = 0;
  for (let i = 6; i <= 60; i++) {
    const m = `m-${String(i).padStart(5, '0')}`;
    const a = await authorize(app, m);
    if (a.ok) {
      granted++;
      app.member = m;
    } else if (!firstRefused) {
      firstRefused = i - 5;
      refusal = `${a.stage} ${a.status} ${a.error}`;
    }
  }
  check(app, true, 'members 1-50 authorized, then the app is suspended',
    firstRefused ? `${granted} authorized; refused from member #${firstRefused} on (${refusal})` : `all ${granted} authorized`,
    firstRefused > 49 && firstRefused <= 55);
  return app;
}

const APPS = {
  'good-app': goodApp, 'writer-app': writerApp, 'burst-app': burstApp, 'abroad-app': abroadApp, 'popular-app': popularApp,
};

// Is the app still served? A read with its last token, or, without one,
// a fresh authorization request.
async function finalState(app) {
  if (app.skipped) return 'skipped';
  if (app.token?.access_token) {
    const r = await app.fhir('GET', `Patient/${app.member}`);
    if (r.status === 200) return 'active';
    if (r.status === 401 && !r.upstream) return 'suspended';
    return `unclear (read: ${r.status})`;
  }
  const a = await authorize(app, app.member);
  if (a.ok) return 'active';
  if (a.stage === 'authorize' && a.status === 403) return 'suspended';
  return `unclear (${a.stage}: ${a.status})`;
}

// --- the report ----------------------------------------------------------------

function readAccessLog(file) {
  const byId = new Map();
  if (!file || !existsSync(file)) return byId;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    try {
      const e = JSON.parse(line);
      if (e.request_id) byId.set(e.request_id, e);
    } catch { /* a line being written */ }
  }
  return byId;
}

function fmtCounts(map) {
  return [...map].sort((a, b) => String(a[0]).localeCompare(String(b[0]))).map(([k, n]) => `${k}=${n}`).join(' ');
}

function decisions(app, log) {
  const out = new Map();
  let found = 0;
  for (const id of app.requestIds) {
    const e = log.get(id);
    if (!e) continue;
    found++;
    let key;
    if (!('decision' in e)) key = 'no-module';
    else if (!e.decision) key = 'not-vetted';
    else key = e.rule ? `${e.decision}:${e.rule}` : e.decision;
    out.set(key, (out.get(key) || 0) + 1);
  }
  if (!found) return '(no access log)';
  return out.has('no-module') && out.size === 1 ? '(module off)' : fmtCounts(out);
}

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

async function replay() {
  const dir = runDir();
  const accessLog = args['access-log'] || (dir && path.join(dir, 'nginx/logs/access.jsonl'));
  const keyFile = args['jwt-key'] || (dir && path.join(dir, 'secrets/abroad-app.private.jwk.json'));
  if (keyFile && existsSync(keyFile)) {
    const jwk = JSON.parse(readFileSync(keyFile, 'utf8'));
    jwtKey = { key: await jose.importJWK(jwk, jwk.alg), alg: jwk.alg, kid: jwk.kid };
  }

  const wanted = args.only ? args.only.split(',') : Object.keys(APPS);
  const started = Date.now();
  // the apps run side by side, as they would in production
  const apps = await Promise.all(wanted.map(async (name) => {
    try {
      return await APPS[name]();
    } catch (err) {
      const app = new App(name, 'm-00001');
      check(app, true, 'runs', `crashed: ${err.message}`, false);
      app.skipped = true;
      return app;
    }
  }));
  const states = await Promise.all(apps.map(finalState));
  await sleep(300); // the access log is written as requests finish
  const log = readAccessLog(accessLog);
  if (args.vetting === undefined && log.size) {
    VETTING = [...log.values()].some((e) => 'decision' in e);
  }
  for (const app of apps) for (const f of app.logChecks) f(log);

  console.log(`\nTraffic replay through ${BASE} (${((Date.now() - started) / 1000).toFixed(1)} s, module ${VETTING ? 'on' : 'off'})\n`);
  const rows = [['app', 'client auth', 'sent', 'statuses', 'gateway decisions', 'final']];
  apps.forEach((app, i) => {
    rows.push([app.id, app.client.auth, app.sent, fmtCounts(app.statuses), decisions(app, log), states[i]]);
  });
  console.log(table(rows));

  console.log('');
  let failed = 0;
  const order = (c) => wanted.indexOf(c.app);
  for (const c of checks.sort((a, b) => order(a) - order(b))) {
    if (c.ok) {
      console.log(`  ok    ${c.app}: ${c.expected} (${c.got})`);
    } else if (VETTING && c.must) {
      failed++;
      console.log(`  FAIL  ${c.app}: expected ${c.expected}, got ${c.got}`);
    } else {
      console.log(`  --    ${c.app}: expected ${c.expected}, got ${c.got}`);
    }
  }
  for (const app of apps) for (const n of app.notes) console.log(`  note  ${app.id}: ${n}`);
  if (!VETTING) console.log('\n  (module off: the refusals above are what the module adds)');
  return failed ? 1 : 0;
}

// --- walkthrough hints ---------------------------------------------------------

async function walkthrough() {
  const app = new App('demo-app', 'm-00001');
  const r = await app.request('GET', `${FHIR}/.well-known/smart-configuration`);
  smart = r.data;
  const [redirectUri] = app.client.redirectUris(new URL(BASE).port);
  const review = reviewCommand();
  const pkce = pkcePair();
  const url = authorizeUrl(app, 'm-00001', pkce, b64url(randomBytes(12)), redirectUri);
  const secrets = ['good-app', 'writer-app', 'burst-app', 'abroad-app', 'popular-app', 'demo-app', 'fhir-rs']
    .map((id) => client(id))
    .map((c) => `    ${c.id.padEnd(12)} ${c.auth.padEnd(20)} ${c.secret ?? (c.auth === 'none' ? '(public)' : '(key pair made at start)')}`);
  console.log(`
Walkthrough (details in scripts/demo/README.md)

  FHIR base      ${FHIR}          (GET ${FHIR}/metadata needs no token)
  SMART config   ${FHIR}/.well-known/smart-configuration
  OAuth issuer   ${smart.issuer}
  members        m-00001 .. m-00060 (demo login: no password, consent granted)
  scopes         ${[...OIDC_SCOPES, ...FHIR_SCOPES].join(' ')}
  clients        (id, token endpoint auth, secret)
${secrets.join('\n')}

  1. Authorize demo-app for member m-00001; open in a browser (shows the code), or follow the
     redirects with curl to the callback (at most 10; an answer without a redirect stops it, e.g. the
     403 of a suspended app, or 000 when the demo is down):
       u='${url}'
       for i in 1 2 3 4 5 6 7 8 9 10; do
         r=$(curl -s -c /tmp/demo.jar -b /tmp/demo.jar -o /dev/null -w '%{http_code} %{redirect_url}' "$u")
         [ -n "\${r#* }" ] || { echo "stopped: HTTP \${r%% *} without a redirect"; break; }
         u=\${r#* }; echo "$u"; [[ $u == ${redirectUri}* ]] && break
       done
       code=\${u#*code=}; code=\${code%%&*}
  2. Exchange the code within 60 s; the answer carries "patient":"m-00001":
       tok=$(curl -s -u demo-app:demo-app-secret ${smart.token_endpoint} -d grant_type=authorization_code \\
         -d "code=$code" --data-urlencode redirect_uri=${redirectUri} -d code_verifier=${pkce.verifier}); echo "$tok"
       at=$(node -pe 'JSON.parse(process.argv[1]).access_token' "$tok")
  3. Read:     curl -s -H "Authorization: Bearer $at" '${FHIR}/ExplanationOfBenefit?patient=m-00001'
  4. Write three times: 405 from the gateway each time, and the third suspends demo-app; its token
     then gets 401:
       for i in 1 2 3; do curl -s -o /dev/null -w 'DELETE: %{http_code}\\n' -X DELETE -H "Authorization: Bearer $at" ${FHIR}/ExplanationOfBenefit/eob-00001-1; done
       curl -s -o /dev/null -w 'read: %{http_code}\\n' -H "Authorization: Bearer $at" ${FHIR}/Patient/m-00001
  5. Review, as the security team does, and reinstate demo-app: the same token reads again (200):
       ${review} list
       ${review} show demo-app
       ${review} reinstate demo-app --reviewer you --note "demo walkthrough"
       curl -s -o /dev/null -w 'read: %{http_code}\\n' -H "Authorization: Bearer $at" ${FHIR}/Patient/m-00001`);
}

if (args.walkthrough) {
  await walkthrough();
} else {
  process.exitCode = await replay();
}
