#!/usr/bin/env node
// Demo FHIR R4 Patient Access API (CARIN Blue Button) behind the gateway.
//
//   node fhirserver.js --port 4200 --public-base http://127.0.0.1:8080 \
//       --as-url http://127.0.0.1:4100/oauth2
//
// Read-only: read, vread, search-type (GET or POST _search), Patient
// $everything and paging. Access tokens are checked by introspection at the
// authorization server; the token's patient bounds what can be read. Writes
// get 405; the gateway should never let one through, so each one that
// arrives is counted and logged.

import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';

import { client, FHIR_SCOPES, OIDC_SCOPES } from './clients.js';
import { generate, ownerOf } from './fhirdata.js';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '4200' },
    'public-base': { type: 'string', default: 'http://127.0.0.1:8080' },
    'base-path': { type: 'string', default: '/fhir/r4' },
    'as-url': { type: 'string', default: 'http://127.0.0.1:4100/oauth2' },
  },
});

const BASE_PATH = args['base-path'];
const PUBLIC_ORIGIN = args['public-base'].replace(/\/$/, '');
const BASE_URL = `${PUBLIC_ORIGIN}${BASE_PATH}`;
const AS_URL = args['as-url'].replace(/\/$/, '');
const RS = client('fhir-rs');
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const TYPES = ['Patient', 'Coverage', 'ExplanationOfBenefit', 'Organization', 'Practitioner'];

const data = generate();
const stats = { requests: 0, writesReceived: 0 };

function log(...parts) {
  console.log(new Date().toISOString(), ...parts);
}

// --- responses -------------------------------------------------------------

class FhirError extends Error {
  constructor(status, code, diagnostics, headers = {}) {
    super(diagnostics);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

function outcome(code, diagnostics, severity = 'error') {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, diagnostics }] };
}

function send(req, res, status, body, headers = {}) {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, {
    'Content-Type': FHIR_JSON,
    'Content-Length': Buffer.byteLength(text),
    // lets the traffic replay tell upstream answers from gateway answers
    'X-Demo-Upstream': 'fhirserver',
    ...headers,
  });
  res.end(req.method === 'HEAD' ? undefined : text);
}

// --- token introspection, cached briefly -----------------------------------

const introspectCache = new Map();
const ACTIVE_TTL_MS = 5000;
const INACTIVE_TTL_MS = 2000;

async function introspect(token) {
  const key = createHash('sha256').update(token).digest('base64url');
  const hit = introspectCache.get(key);
  if (hit && hit.until > Date.now()) return hit.result;

  const basic = Buffer.from(`${RS.id}:${RS.secret}`).toString('base64');
  const r = await fetch(`${AS_URL}/token/introspection`, {
    method: 'POST',
    headers: { Authorization: `Basic ${basic}`, 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
    signal: AbortSignal.timeout(3000),
  });
  if (!r.ok) throw new FhirError(503, 'transient', `token introspection failed (${r.status})`);
  const result = await r.json();
  if (introspectCache.size > 5000) introspectCache.clear();
  introspectCache.set(key, { result, until: Date.now() + (result.active ? ACTIVE_TTL_MS : INACTIVE_TTL_MS) });
  return result;
}

function invalidToken(description) {
  return new FhirError(401, 'security', description, {
    'WWW-Authenticate': `Bearer realm="fhir", error="invalid_token", error_description="${description}"`,
  });
}

async function authenticate(req) {
  const h = req.headers.authorization || '';
  const m = h.match(/^Bearer\s+([A-Za-z0-9\-._~+/]+=*)$/i);
  if (!m) {
    throw new FhirError(401, 'login', 'an access token is required', { 'WWW-Authenticate': 'Bearer realm="fhir"' });
  }
  const info = await introspect(m[1]);
  if (!info.active) throw invalidToken('the access token is not active');
  if (info.token_type && info.token_type !== 'Bearer') throw invalidToken('not an access token');
  const aud = [].concat(info.aud || []);
  if (!aud.includes(BASE_URL)) throw invalidToken('the access token is not for this server');
  if (!info.patient) throw new FhirError(403, 'forbidden', 'the access token has no patient context');
  return { clientId: info.client_id, patient: info.patient, scopes: new Set((info.scope || '').split(' ')) };
}

// SMART v1 (.read, .*) and v2 (.rs) scopes; "patient/*" covers every type.
function hasScope(auth, type) {
  return [type, '*'].some((t) => ['read', 'rs', '*', 'cruds'].some((a) => auth.scopes.has(`patient/${t}.${a}`)));
}

function requireScope(auth, type) {
  if (hasScope(auth, type)) return;
  throw new FhirError(403, 'forbidden', `the access token's scope does not cover ${type}`, {
    'WWW-Authenticate': `Bearer realm="fhir", error="insufficient_scope", scope="patient/${type}.read"`,
  });
}

function requireOwner(auth, resource) {
  const owner = ownerOf(resource);
  if (owner && owner !== auth.patient) {
    throw new FhirError(403, 'forbidden', `${resource.resourceType}/${resource.id} belongs to another member than the token's patient`);
  }
}

// --- search --------------------------------------------------------------

const pages = new Map(); // _getpages id -> { patient, clientId, entries, params, type }
const PAGE_TTL_MS = 10 * 60 * 1000;

function refId(value, type) {
  // "m-00001", "Patient/m-00001" or a full URL
  const v = value.trim();
  const i = v.lastIndexOf(`${type}/`);
  return i >= 0 ? v.slice(i + type.length + 1) : v;
}

function tokenMatches(coding, param) {
  // code, system|code or |code
  const [system, code] = param.includes('|') ? param.split('|') : [undefined, param];
  return (coding?.coding || []).some((c) => c.code === code && (!system || c.system === system));
}

function dateMatches(value, param) {
  const m = param.match(/^(eq|ne|gt|lt|ge|le)?(\d{4}(-\d{2}(-\d{2})?)?)/);
  if (!m || !value) return false;
  const op = m[1] || 'eq';
  const p = m[2];
  const v = value.slice(0, p.length);
  switch (op) {
    case 'eq': return v === p;
    case 'ne': return v !== p;
    case 'gt': return v > p;
    case 'lt': return v < p;
    case 'ge': return v >= p;
    default: return v <= p;
  }
}

// Patient-bound reference parameters: any other member is refused.
const PATIENT_PARAMS = {
  Patient: ['_id'],
  Coverage: ['patient', 'beneficiary'],
  ExplanationOfBenefit: ['patient'],
};

function checkPatientParams(auth, type, params) {
  for (const name of PATIENT_PARAMS[type] || []) {
    for (const raw of params.getAll(name)) {
      for (const v of raw.split(',')) {
        if (refId(v, 'Patient') !== auth.patient) {
          throw new FhirError(403, 'forbidden', `${name}=${v} is not the token's patient`);
        }
      }
    }
  }
}

function filterFor(type, params) {
  const tests = [];
  for (const [name, raw] of params) {
    const values = raw.split(',');
    const any = (fn) => tests.push((r) => values.some((v) => fn(r, v)));
    switch (name) {
      case '_id': any((r, v) => r.id === v); break;
      case 'identifier':
        any((r, v) => (r.identifier || []).some((i) => (v.includes('|') ? `${i.system}|${i.value}` === v : i.value === v)));
        break;
      case 'type': if (type === 'ExplanationOfBenefit') any((r, v) => tokenMatches(r.type, v)); break;
      case 'service-date':
      case 'billable-period-start':
        if (type === 'ExplanationOfBenefit') tests.push((r) => dateMatches(r.billablePeriod?.start, raw));
        break;
      case '_lastUpdated': tests.push((r) => dateMatches(r.meta?.lastUpdated, raw)); break;
      default: break; // lenient: unknown parameters are ignored
    }
  }
  return (r) => tests.every((t) => t(r));
}

function countParam(params, dflt = 20) {
  const n = Number.parseInt(params.get('_count') ?? '', 10);
  return Number.isFinite(n) && n > 0 ? Math.min(n, 100) : dflt;
}

function bundle(selfUrl, entries, offset, count, pageId) {
  const page = entries.slice(offset, offset + count);
  const link = [{ relation: 'self', url: selfUrl }];
  if (pageId && offset + count < entries.length) {
    link.push({
      relation: 'next',
      url: `${BASE_URL}?_getpages=${pageId}&_getpagesoffset=${offset + count}&_count=${count}&_bundletype=searchset`,
    });
  }
  if (pageId && offset > 0) {
    link.push({
      relation: 'previous',
      url: `${BASE_URL}?_getpages=${pageId}&_getpagesoffset=${Math.max(0, offset - count)}&_count=${count}&_bundletype=searchset`,
    });
  }
  return {
    resourceType: 'Bundle',
    id: randomBytes(8).toString('hex'),
    meta: { lastUpdated: new Date().toISOString() },
    type: 'searchset',
    total: entries.filter((e) => e.search.mode === 'match').length,
    link,
    entry: page,
  };
}

function entry(resource, mode = 'match') {
  return { fullUrl: `${BASE_URL}/${resource.resourceType}/${resource.id}`, resource, search: { mode } };
}

function remember(auth, entries) {
  const id = randomBytes(12).toString('hex');
  const now = Date.now();
  for (const [k, v] of pages) if (v.until < now) pages.delete(k);
  if (pages.size > 2000) pages.delete(pages.keys().next().value);
  pages.set(id, { patient: auth.patient, entries, until: now + PAGE_TTL_MS });
  return id;
}

function respondWithEntries(req, res, auth, selfUrl, entries, count) {
  const pageId = entries.length > count ? remember(auth, entries) : undefined;
  send(req, res, 200, bundle(selfUrl, entries, 0, count, pageId));
}

function search(req, res, auth, type, params) {
  requireScope(auth, type);
  checkPatientParams(auth, type, params);
  const match = filterFor(type, params);
  const mine = (r) => { const o = ownerOf(r); return o === null || o === auth.patient; };
  const found = [...data.get(type).values()].filter((r) => mine(r) && match(r));
  const qs = params.toString();
  respondWithEntries(req, res, auth, `${BASE_URL}/${type}${qs ? `?${qs}` : ''}`, found.map((r) => entry(r)), countParam(params));
}

function everything(req, res, auth, id, params) {
  requireScope(auth, 'Patient');
  const p = data.get('Patient').get(id);
  if (!p) throw new FhirError(404, 'not-found', `Patient/${id} is not known`);
  requireOwner(auth, p);
  const entries = [entry(p)];
  const refs = new Set();
  for (const type of ['Coverage', 'ExplanationOfBenefit']) {
    if (!hasScope(auth, type)) continue;
    for (const r of data.get(type).values()) {
      if (ownerOf(r) !== id) continue;
      entries.push(entry(r));
      for (const x of [r.provider, r.insurer, ...(r.payor || [])]) if (x?.reference) refs.add(x.reference);
    }
  }
  for (const ref of refs) {
    const [t, rid] = ref.split('/');
    const r = data.get(t)?.get(rid);
    if (r) entries.push(entry(r, 'include'));
  }
  const qs = params.toString();
  respondWithEntries(req, res, auth, `${BASE_URL}/Patient/${id}/$everything${qs ? `?${qs}` : ''}`, entries, countParam(params, 50));
}

function continuePaging(req, res, auth, params) {
  const id = params.get('_getpages');
  const p = pages.get(id);
  if (!p || p.until < Date.now()) throw new FhirError(410, 'not-found', 'the search result set has expired; search again');
  if (p.patient !== auth.patient) throw new FhirError(403, 'forbidden', 'the search result set belongs to another member');
  const offset = Math.max(0, Number.parseInt(params.get('_getpagesoffset') || '0', 10) || 0);
  send(req, res, 200, bundle(`${BASE_URL}?${params}`, p.entries, offset, countParam(params), id));
}

function read(req, res, auth, type, id, vid) {
  requireScope(auth, type);
  const r = data.get(type).get(id);
  if (!r) throw new FhirError(404, 'not-found', `${type}/${id} is not known`);
  requireOwner(auth, r);
  if (vid !== undefined && vid !== '1') throw new FhirError(404, 'not-found', `${type}/${id}/_history/${vid} is not known`);
  const body = { ...r, meta: { ...r.meta, versionId: '1' } };
  send(req, res, 200, body, { ETag: 'W/"1"', 'Last-Modified': new Date(r.meta.lastUpdated).toUTCString() });
}

// --- discovery (no token) ------------------------------------------------

let smartConfig;

async function smartConfiguration() {
  if (smartConfig) return smartConfig;
  // ask the AS for its public endpoint URLs, as a client through nginx sees them
  const pub = new URL(PUBLIC_ORIGIN);
  const r = await fetch(`${AS_URL}/.well-known/openid-configuration`, {
    headers: { 'X-Forwarded-Host': pub.host, 'X-Forwarded-Proto': pub.protocol.replace(':', '') },
    signal: AbortSignal.timeout(3000),
  });
  if (!r.ok) throw new FhirError(503, 'transient', 'authorization server discovery failed');
  const oidc = await r.json();
  smartConfig = {
    issuer: oidc.issuer,
    jwks_uri: oidc.jwks_uri,
    authorization_endpoint: oidc.authorization_endpoint,
    token_endpoint: oidc.token_endpoint,
    introspection_endpoint: oidc.introspection_endpoint,
    revocation_endpoint: oidc.revocation_endpoint,
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    grant_types_supported: ['authorization_code', 'refresh_token'],
    scopes_supported: [...OIDC_SCOPES, ...FHIR_SCOPES],
    response_types_supported: ['code'],
    code_challenge_methods_supported: ['S256'],
    capabilities: [
      'launch-standalone', 'client-public', 'client-confidential-symmetric', 'client-confidential-asymmetric',
      'sso-openid-connect', 'context-standalone-patient', 'permission-offline', 'permission-patient', 'permission-v1',
    ],
  };
  return smartConfig;
}

async function capabilityStatement() {
  const smart = await smartConfiguration();
  const sp = (name, type, doc) => ({ name, type, documentation: doc });
  const resource = (type, profile, searchParam) => ({
    type,
    supportedProfile: [`http://hl7.org/fhir/us/carin-bb/StructureDefinition/${profile}`],
    interaction: [{ code: 'read' }, { code: 'vread' }, { code: 'search-type' }],
    searchParam: [sp('_id', 'token'), sp('_lastUpdated', 'date'), ...searchParam],
  });
  return {
    resourceType: 'CapabilityStatement',
    id: 'demo-payer',
    status: 'active',
    date: '2025-06-30',
    publisher: 'Demo Health Plan',
    kind: 'instance',
    instantiates: ['http://hl7.org/fhir/us/carin-bb/CapabilityStatement/c4bb'],
    software: { name: 'vetting demo FHIR server', version: '0.1.0' },
    implementation: { description: 'Demo Patient Access API (synthetic data)', url: BASE_URL },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [{
      mode: 'server',
      security: {
        extension: [{
          url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
          extension: [
            { url: 'authorize', valueUri: smart.authorization_endpoint },
            { url: 'token', valueUri: smart.token_endpoint },
            { url: 'introspect', valueUri: smart.introspection_endpoint },
            { url: 'revoke', valueUri: smart.revocation_endpoint },
          ],
        }],
        service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }] }],
      },
      resource: [
        resource('Patient', 'C4BB-Patient', [sp('identifier', 'token')]),
        resource('Coverage', 'C4BB-Coverage', [sp('patient', 'reference'), sp('beneficiary', 'reference')]),
        resource('ExplanationOfBenefit', 'C4BB-ExplanationOfBenefit', [
          sp('patient', 'reference'), sp('type', 'token'), sp('identifier', 'token'),
          sp('service-date', 'date'), sp('billable-period-start', 'date'),
        ]),
        resource('Organization', 'C4BB-Organization', []),
        resource('Practitioner', 'C4BB-Practitioner', []),
      ],
      operation: [{ name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' }],
    }],
  };
}

// --- routing -------------------------------------------------------------

async function readBody(req, limit = 1 << 20) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new FhirError(413, 'too-costly', 'request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function isRead(method, parts) {
  if (method === 'GET' || method === 'HEAD') return true;
  if (method !== 'POST') return false;
  const last = parts[parts.length - 1];
  return last === '_search' || last === '$everything';
}

async function handle(req, res) {
  stats.requests++;
  const url = new URL(req.url, 'http://internal');
  if (url.pathname !== BASE_PATH && !url.pathname.startsWith(`${BASE_PATH}/`)) {
    throw new FhirError(404, 'not-found', `no FHIR endpoint at ${url.pathname}`);
  }
  const parts = url.pathname.slice(BASE_PATH.length).split('/').filter(Boolean).map(decodeURIComponent);
  const params = url.searchParams;
  const method = req.method;

  if (method === 'GET' && parts.length === 1 && parts[0] === 'metadata') {
    return send(req, res, 200, await capabilityStatement());
  }
  if (method === 'GET' && parts.join('/') === '.well-known/smart-configuration') {
    const body = JSON.stringify(await smartConfiguration(), null, 2);
    res.writeHead(200, { 'Content-Type': 'application/json', 'X-Demo-Upstream': 'fhirserver' });
    return res.end(body);
  }
  if (method === 'OPTIONS') {
    res.writeHead(204, { Allow: 'GET, HEAD, POST', 'X-Demo-Upstream': 'fhirserver' });
    return res.end();
  }

  if (!isRead(method, parts)) {
    // the gateway should have stopped this
    stats.writesReceived++;
    log(`WRITE REACHED THE FHIR SERVER: ${method} ${url.pathname} (writes so far: ${stats.writesReceived})`);
    await readBody(req).catch(() => '');
    throw new FhirError(405, 'not-supported', `${method} is not supported: this Patient Access API is read-only`, { Allow: 'GET, HEAD, POST' });
  }

  const auth = await authenticate(req);
  req.demoAuth = auth;

  if (method === 'POST') {
    const ctype = (req.headers['content-type'] || '').split(';')[0].trim();
    const body = await readBody(req, 64 * 1024);
    if (body && ctype !== 'application/x-www-form-urlencoded') {
      throw new FhirError(415, 'not-supported', 'POST _search and $everything take an application/x-www-form-urlencoded body');
    }
    for (const [k, v] of new URLSearchParams(body)) params.append(k, v);
  }

  const [type, id, op, vid, extra] = parts;
  if (parts.length === 0) {
    if (params.has('_getpages')) return continuePaging(req, res, auth, params);
    throw new FhirError(400, 'not-supported', 'system-level search is not supported');
  }
  if (!TYPES.includes(type)) throw new FhirError(404, 'not-supported', `resource type ${type} is not supported`);
  if (parts.length === 1 && method !== 'POST') return search(req, res, auth, type, params);
  if (parts.length === 2 && id === '_search') return search(req, res, auth, type, params);
  if (method === 'POST' && !(parts.length === 3 && op === '$everything')) {
    throw new FhirError(405, 'not-supported', 'only _search and $everything are accepted by POST');
  }
  if (parts.length === 2) return read(req, res, auth, type, id);
  if (parts.length === 3 && type === 'Patient' && op === '$everything') return everything(req, res, auth, id, params);
  if (parts.length === 4 && op === '_history' && extra === undefined) return read(req, res, auth, type, id, vid);
  throw new FhirError(400, 'not-supported', 'only read, vread, search-type and Patient/$everything are supported');
}

const server = http.createServer((req, res) => {
  const started = Date.now();
  res.on('finish', () => {
    const a = req.demoAuth;
    log(`${req.method} ${req.url.split('?')[0]} ${res.statusCode} ${Date.now() - started}ms client=${a?.clientId ?? '-'} patient=${a?.patient ?? '-'}`);
  });
  handle(req, res).catch((err) => {
    if (err instanceof FhirError) {
      const code = err.status === 401 && err.headers['WWW-Authenticate']?.includes('invalid_token') ? 'security' : err.code;
      return send(req, res, err.status, outcome(code, err.message), err.headers);
    }
    log('error', err);
    return send(req, res, 500, outcome('exception', 'internal error'));
  });
});

server.keepAliveTimeout = 65_000;
server.listen(Number(args.port), '127.0.0.1', () => {
  const n = (t) => data.get(t).size;
  log(`FHIR server: ${BASE_URL} on 127.0.0.1:${args.port}; ${n('Patient')} patients, ${n('Coverage')} coverages, `
    + `${n('ExplanationOfBenefit')} claims; introspection at ${AS_URL}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    log(`stopping; writes that reached this server: ${stats.writesReceived}`);
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
