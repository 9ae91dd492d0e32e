#!/usr/bin/env node
// Demo SMART-on-FHIR authorization server for the vetting demo stack.
//
//   node authserver.js --port 4100 --issuer http://127.0.0.1:8080/oauth2 \
//       --fhir-base http://127.0.0.1:8080/fhir/r4 --state-dir /tmp/x [--public-port 8080]
//
// oidc-provider does the OAuth work; this file only configures it, adds the
// demo login shortcut and puts the SMART "patient" launch context into token
// responses. It listens on loopback and is reached through nginx, which
// forwards the full /oauth2/... URI and X-Forwarded-* headers.

import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

import {
  CLIENTS, FHIR_SCOPES, MEMBER_COUNT, OIDC_SCOPES, memberIds,
} from './clients.js';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '4100' },
    issuer: { type: 'string', default: 'http://127.0.0.1:8080/oauth2' },
    'fhir-base': { type: 'string', default: 'http://127.0.0.1:8080/fhir/r4' },
    'state-dir': { type: 'string' },
    'public-port': { type: 'string', default: '8080' },
  },
});

const ISSUER = args.issuer.replace(/\/$/, '');
const MOUNT = new URL(ISSUER).pathname; // "/oauth2"
const FHIR_BASE = args['fhir-base'].replace(/\/$/, '');
const MEMBERS = new Set(memberIds());

function log(...parts) {
  console.log(new Date().toISOString(), ...parts);
}

// Keys are made fresh at every start: nothing outlives the demo run.
async function makeSigningKeys() {
  const rs = await jose.generateKeyPair('RS256', { extractable: true });
  const es = await jose.generateKeyPair('ES256', { extractable: true });
  const rsJwk = { ...(await jose.exportJWK(rs.privateKey)), kid: 'as-rs256', alg: 'RS256', use: 'sig' };
  const esJwk = { ...(await jose.exportJWK(es.privateKey)), kid: 'as-es256', alg: 'ES256', use: 'sig' };
  return [rsJwk, esJwk];
}

// The private_key_jwt demo app: its key pair is generated here and the
// private half written for traffic.js (and curl users) to sign with.
async function makeClientKey(clientId) {
  const { publicKey, privateKey } = await jose.generateKeyPair('RS384', { extractable: true });
  const kid = `${clientId}-key-1`;
  const pub = { ...(await jose.exportJWK(publicKey)), kid, alg: 'RS384', use: 'sig' };
  const priv = { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS384', use: 'sig' };
  if (args['state-dir']) {
    const dir = path.join(args['state-dir'], 'secrets');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(path.join(dir, `${clientId}.private.jwk.json`), JSON.stringify(priv, null, 2), { mode: 0o600 });
  }
  return pub;
}

async function clientMetadata() {
  const out = [];
  for (const c of CLIENTS) {
    const meta = {
      client_id: c.id,
      client_name: c.name,
      token_endpoint_auth_method: c.auth,
      grant_types: c.resourceServer ? [] : ['authorization_code', 'refresh_token'],
      response_types: c.resourceServer ? [] : ['code'],
      redirect_uris: c.resourceServer ? [] : c.redirectUris(Number(args['public-port'])),
    };
    if (c.secret) meta.client_secret = c.secret;
    if (c.auth === 'private_key_jwt') {
      meta.jwks = { keys: [await makeClientKey(c.id)] };
      meta.token_endpoint_auth_signing_alg = 'RS384';
    }
    out.push(meta);
  }
  return out;
}

function fhirUser(memberId) {
  return `${FHIR_BASE}/Patient/${memberId}`;
}

const configuration = {
  clients: await clientMetadata(),
  jwks: { keys: await makeSigningKeys() },
  cookies: { keys: [randomBytes(32).toString('base64url')] },

  // Members m-00001 .. m-000NN are the only accounts.
  async findAccount(ctx, sub) {
    if (!MEMBERS.has(sub)) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, fhirUser: fhirUser(sub) };
      },
    };
  },
  claims: {
    openid: ['sub'],
    fhirUser: ['fhirUser'],
  },
  // SMART wants fhirUser in the id_token itself, not only at userinfo.
  conformIdTokenClaims: false,
  scopes: OIDC_SCOPES,
  // SMART's "aud" parameter names the FHIR base (RFC 8707 "resource").
  extraParams: ['aud'],
  responseTypes: ['code'],
  pkce: { required: () => true },
  enabledJWA: {
    // SMART asymmetric client auth uses RS384 / ES384.
    clientAuthSigningAlgValues: ['RS256', 'RS384', 'ES256', 'ES384', 'PS256'],
  },

  features: {
    devInteractions: { enabled: false },
    introspection: {
      enabled: true,
      // The FHIR server may introspect any token; an app only its own.
      allowedPolicy(ctx, client, token) {
        return client.clientId === 'fhir-rs' || client.clientId === token.clientId;
      },
    },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource(ctx, client, oneOf) {
        if (oneOf) return oneOf.includes(FHIR_BASE) ? FHIR_BASE : oneOf[0];
        return ctx.oidc.params?.aud || FHIR_BASE;
      },
      // code and refresh grants keep the audience chosen at /auth
      useGrantedResource: () => true,
      getResourceServerInfo(ctx, resource) {
        if (resource.replace(/\/$/, '') !== FHIR_BASE) {
          throw new errors.InvalidTarget('aud / resource must be the FHIR base URL');
        }
        // openid & co. are listed too so that the access token's scope
        // (and the token response's) shows the whole grant
        return {
          scope: [...OIDC_SCOPES, ...FHIR_SCOPES].join(' '),
          audience: FHIR_BASE,
          accessTokenTTL: 3600,
          accessTokenFormat: 'opaque',
        };
      },
    },
  },

  // Repeated in introspection responses (SMART token-introspection).
  extraTokenClaims(ctx, token) {
    if (!token.accountId) return undefined;
    return { patient: token.accountId, fhirUser: fhirUser(token.accountId) };
  },

  interactions: {
    url: (ctx, interaction) => `${MOUNT}/interaction/${interaction.uid}`,
  },

  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 30 * 24 * 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 30 * 24 * 3600,
  },

  async renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const provider = new Provider(ISSUER, configuration);
// nginx in front sets X-Forwarded-Proto/-Host/-For
provider.proxy = true;

// --- demo login and consent ---------------------------------------------

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, clientId, error) {
  const msg = error ? `<p style="color:#a00">${escapeHtml(error)}</p>` : '';
  return `<!doctype html><html><head><meta charset="utf-8"><title>Demo payer sign-in</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:3em auto">
<h1>Demo payer sign-in</h1>
<p>App <b>${escapeHtml(clientId)}</b> asks for access to your claims data.</p>${msg}
<form method="post" action="${MOUNT}/interaction/${escapeHtml(uid)}">
<label>Member id <input name="member" value="m-00001" pattern="m-[0-9]{5}"></label>
<button type="submit">Sign in and allow</button>
</form>
<p><small>Demo shortcut: no password; consent is granted for the requested scopes.</small></p>
</body></html>`;
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 4096) break;
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// Consent: grant exactly what the prompt says is missing.
async function grantConsent(details) {
  const { prompt: { details: missing }, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return { consent: { grantId: await grant.save() } };
}

// DEMO SHORTCUT: there is no password. The member named in login_hint (or
// typed into the form) is signed in, and consent is granted at once.
provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([A-Za-z0-9_-]+)$/);
  if (!m) return next();
  const { req, res } = ctx;
  try {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== m[1]) throw new errors.SessionNotFound('interaction mismatch');
    const clientId = details.params.client_id;

    if (details.prompt.name === 'login') {
      let member = details.params.login_hint;
      if (ctx.method === 'POST') member = (await readForm(req)).get('member');
      if (!member || !MEMBERS.has(member)) {
        ctx.status = member ? 400 : 200;
        ctx.type = 'html';
        ctx.set('Cache-Control', 'no-store');
        ctx.body = loginPage(details.uid, clientId, member ? `unknown member id ${member}` : '');
        return undefined;
      }
      log(`login member=${member} client=${clientId}`);
      const result = { login: { accountId: member } };
      ctx.respond = false;
      return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
    }

    if (details.prompt.name === 'consent') {
      const result = await grantConsent(details);
      ctx.respond = false;
      return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
    }

    throw new errors.InvalidRequest(`unexpected prompt ${details.prompt.name}`);
  } catch (err) {
    ctx.status = err.statusCode || 500;
    ctx.type = 'json';
    ctx.body = { error: err.error || 'server_error', error_description: err.error_description || err.message };
    return undefined;
  }
});

// SMART apps ask for offline_access without prompt=consent, and OpenID
// Connect Core has the AS drop offline_access then. Every demo authorization
// goes through the consent step anyway, so say so and keep the scope.
provider.use(async (ctx, next) => {
  if (ctx.path === '/auth' && ctx.method === 'GET') {
    const q = new URLSearchParams(ctx.querystring);
    if ((q.get('scope') || '').split(' ').includes('offline_access') && !q.has('prompt')) {
      q.set('prompt', 'consent');
      ctx.querystring = q.toString();
      // oidc-provider finds its mount path by comparing the two
      ctx.req.originalUrl = `${MOUNT}${ctx.url}`;
    }
  }
  return next();
});

// --- SMART launch context in token responses ------------------------------

// oidc-provider has no hook for top-level token response members, so the
// "patient" member is added after the token endpoint produced its body,
// from the account of the access token it just issued.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== '/token' || ctx.method !== 'POST' || ctx.status !== 200) return;
  const body = ctx.body;
  if (!body || typeof body !== 'object' || !body.access_token) return;
  const accountId = ctx.oidc.entities.AccessToken?.accountId;
  if (accountId) {
    ctx.body = { ...body, patient: accountId };
  }
});

provider.on('server_error', (ctx, err) => log('server_error', err));
provider.on('grant.success', (ctx) => {
  const at = ctx.oidc.entities.AccessToken;
  log(`token issued grant_type=${ctx.oidc.params.grant_type} client=${ctx.oidc.client?.clientId} member=${at?.accountId}`);
});
provider.on('grant.error', (ctx, err) => {
  log(`token refused client=${ctx.oidc.client?.clientId ?? '-'} error=${err.error} (${err.error_detail || err.error_description})`);
});
provider.on('authorization.error', (ctx, err) => {
  log(`authorization refused client=${ctx.oidc.params?.client_id ?? '-'} error=${err.error} (${err.error_detail || err.error_description})`);
});

// --- HTTP ----------------------------------------------------------------

const callback = provider.callback();

// nginx forwards the full URI; oidc-provider runs as if mounted at MOUNT
// (it derives the mount path from req.originalUrl).
const server = http.createServer((req, res) => {
  if (req.url === MOUNT || req.url.startsWith(`${MOUNT}/`) || req.url.startsWith(`${MOUNT}?`)) {
    req.originalUrl = req.url;
    req.url = req.url.slice(MOUNT.length) || '/';
    return callback(req, res);
  }
  res.writeHead(404, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ error: 'not_found' }));
  return undefined;
});

server.keepAliveTimeout = 65_000;
server.listen(Number(args.port), '127.0.0.1', () => {
  log(`authorization server: issuer ${ISSUER}, listening on 127.0.0.1:${args.port}, ${MEMBER_COUNT} members`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
