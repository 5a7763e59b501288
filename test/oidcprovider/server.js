// A real OpenID Connect provider for Tether's tests, built on oidc-provider
// (OpenID Certified). It behaves like Entra ID where Tether cares: tokens are
// JWTs carrying oid, tid, name, preferred_username and groups, and a principal
// with more groups than the overage threshold gets no groups claim but the
// distributed-claim pointers _claim_names/_claim_sources to this provider's
// groups endpoint, which pages its answer with @odata.nextLink.
//
// Usage: node server.js CONFIG.json, where CONFIG.json is (all times in
// seconds; the Go harness writes it from its Config, see provider.go):
//
//   {
//     "issuer": "https://10.213.0.1:8443",  // optional: https://HOST:PORT
//     "listen": {"host": "10.213.0.1", "port": 0},  // port 0: any free port
//     "tls": {"cert": "tls.crt", "key": "tls.key"},  // PEM files
//     "keys": "jwks.json",  // private JWK set: one RS256 and one ES256 key, each with kid and use "sig"
//     "tenantId": "<uuid>",
//     "groupOverageThreshold": 200, "groupsPageSize": 100,
//     "tokenTTL": 3600, "refreshTokenTTL": 1209600, "devicePollInterval": 5,
//     "resources": [  // at least one; the first is the default
//       {"identifier": "api://tether", "audience": "api://tether", "scopes": [], "signingAlg": "RS256"}],
//     "clients": [
//       {"clientId": "cli", "objectId": "<uuid>", "name": "CLI",
//        "grantTypes": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
//        "redirectUris": ["http://127.0.0.1/callback"], "idTokenSigningAlg": "RS256", "groups": []},
//       {"clientId": "console", "clientSecret": "...", "objectId": "<uuid>", "applicationType": "web",
//        "grantTypes": ["authorization_code", "refresh_token"],
//        "redirectUris": ["https://10.213.0.1:8443/console/auth/callback"]},
//       {"clientId": "ci", "clientSecret": "...", "objectId": "<uuid>", "grantTypes": ["client_credentials"]}],
//     "users": [
//       {"id": "<uuid: the oid>", "username": "alice@example.test", "password": "...", "name": "Alice",
//        "groups": ["<group uuid>"], "claims": {"email": "alice@example.test"}}]
//   }
//
// A client with a clientSecret is confidential (client_secret_basic); one
// without is public (PKCE). "applicationType" (optional) is "web" or
// "native": a native client's loopback redirect URIs match any port, and
// oidc-provider refuses https ones on 127.0.0.1, which a web application
// (such as the hub's console, at https://HOST:PORT/console/auth/callback)
// may have. Default: web with a clientSecret, native without.
//
// The Go package in this directory (tether.dev/tether/test/oidcprovider)
// writes the configuration, starts this program and drives its login pages;
// its doc.go describes every endpoint and flow. The program prints one line
// "ready <issuer>" once it serves requests; the other lines are its log
// (logfmt on stdout, and oidc-provider's own warnings on stderr). It is for
// tests only: all state is in memory, and the cookie keys are made anew at
// every start. The harness writes the signing keys (the file named by
// "keys") and the TLS files; a directory it was told to keep (Config.Dir)
// holds a config.json to rerun this by hand.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';

import { createLocalJWKSet, jwtVerify } from 'jose';
import { Provider, errors } from 'oidc-provider';

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const GRANT_TYPES = new Set(['authorization_code', DEVICE_GRANT, 'client_credentials', 'refresh_token']);
const MAX_FORM_BYTES = 64 * 1024;

// ---- logging --------------------------------------------------------------

function logfmtValue(v) {
  const s = String(v);
  return /^[\w.:/@+-]+$/.test(s) ? s : JSON.stringify(s);
}

// log prints one logfmt line. Never pass tokens, codes or passwords.
function log(level, msg, fields = {}) {
  let line = `time=${new Date().toISOString()} level=${level} msg=${logfmtValue(msg)}`;
  for (const [k, v] of Object.entries(fields)) {
    if (v !== undefined && v !== null && v !== '') line += ` ${k}=${logfmtValue(v)}`;
  }
  process.stdout.write(`${line}\n`);
}

// ---- configuration --------------------------------------------------------

class ConfigError extends Error {}

function need(cond, what) {
  if (!cond) throw new ConfigError(what);
}

function positiveInt(value, fallback, what) {
  if (value === undefined || value === null || value === 0) return fallback;
  need(Number.isSafeInteger(value) && value > 0, `${what} must be a positive integer`);
  return value;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// loadConfig reads and checks the JSON configuration described at the top.
function loadConfig(path) {
  const raw = JSON.parse(fs.readFileSync(path, 'utf8'));
  const cfg = {
    issuer: raw.issuer,
    host: raw.listen?.host || '127.0.0.1',
    port: raw.listen?.port ?? 0,
    tlsCert: raw.tls?.cert,
    tlsKey: raw.tls?.key,
    keysFile: raw.keys,
    tenantId: raw.tenantId,
    overageThreshold: positiveInt(raw.groupOverageThreshold, 200, 'groupOverageThreshold'),
    groupsPageSize: positiveInt(raw.groupsPageSize, 100, 'groupsPageSize'),
    tokenTTL: positiveInt(raw.tokenTTL, 3600, 'tokenTTL'),
    refreshTokenTTL: positiveInt(raw.refreshTokenTTL, 14 * 24 * 3600, 'refreshTokenTTL'),
    devicePollInterval: positiveInt(raw.devicePollInterval, 5, 'devicePollInterval'),
    resources: new Map(),
    clients: new Map(),
    users: new Map(),
    usersByName: new Map(),
    extraClaimNames: new Set(),
  };
  need(cfg.tlsCert && cfg.tlsKey, 'tls.cert and tls.key are required');
  need(cfg.keysFile, 'keys (the private JWK set file) is required');
  need(Number.isSafeInteger(cfg.port) && cfg.port >= 0 && cfg.port < 65536, 'listen.port must be in [0, 65535]');
  need(typeof cfg.tenantId === 'string' && UUID.test(cfg.tenantId), 'tenantId must be a UUID');

  for (const r of raw.resources ?? []) {
    need(typeof r.identifier === 'string' && URL.parse(r.identifier), `resource ${r.identifier}: identifier must be an absolute URI`);
    need(!cfg.resources.has(r.identifier), `resource ${r.identifier} is listed twice`);
    const alg = r.signingAlg || 'RS256';
    need(alg === 'RS256' || alg === 'ES256', `resource ${r.identifier}: signingAlg must be RS256 or ES256`);
    cfg.resources.set(r.identifier, {
      identifier: r.identifier,
      audience: r.audience || r.identifier,
      scopes: r.scopes ?? [],
      alg,
      ttl: positiveInt(r.tokenTTL, cfg.tokenTTL, `resource ${r.identifier}: tokenTTL`),
    });
  }
  need(cfg.resources.size > 0, 'at least one resource is required: every access token is a JWT for one');
  cfg.defaultResource = raw.resources[0].identifier;

  const objectIds = new Set();
  for (const c of raw.clients ?? []) {
    need(typeof c.clientId === 'string' && c.clientId, 'every client needs a clientId');
    need(!cfg.clients.has(c.clientId), `client ${c.clientId} is listed twice`);
    need(typeof c.objectId === 'string' && UUID.test(c.objectId), `client ${c.clientId}: objectId must be a UUID`);
    need(!objectIds.has(c.objectId), `object ID ${c.objectId} is used twice`);
    objectIds.add(c.objectId);
    const grantTypes = c.grantTypes ?? [];
    for (const g of grantTypes) need(GRANT_TYPES.has(g), `client ${c.clientId}: unsupported grant type ${g}`);
    need(grantTypes.length > 0, `client ${c.clientId}: grantTypes is empty`);
    need(!grantTypes.includes('client_credentials') || c.clientSecret, `client ${c.clientId}: client_credentials needs a clientSecret`);
    need(c.applicationType === undefined || c.applicationType === 'web' || c.applicationType === 'native', `client ${c.clientId}: applicationType must be web or native`);
    cfg.clients.set(c.clientId, {
      clientId: c.clientId,
      clientSecret: c.clientSecret || undefined,
      objectId: c.objectId.toLowerCase(),
      name: c.name || c.clientId,
      grantTypes,
      redirectUris: c.redirectUris ?? [],
      applicationType: c.applicationType || (c.clientSecret ? 'web' : 'native'),
      tokenEndpointAuthMethod: c.clientSecret ? 'client_secret_basic' : 'none',
      idTokenSigningAlg: c.idTokenSigningAlg || 'RS256',
      groups: c.groups ?? [],
    });
  }

  for (const u of raw.users ?? []) {
    need(typeof u.username === 'string' && u.username, 'every user needs a username');
    need(typeof u.password === 'string' && u.password, `user ${u.username}: password is empty`);
    need(typeof u.id === 'string' && UUID.test(u.id), `user ${u.username}: id (the object ID) must be a UUID`);
    const key = u.username.toLowerCase();
    need(!cfg.usersByName.has(key), `user ${u.username} is listed twice`);
    need(!objectIds.has(u.id.toLowerCase()), `object ID ${u.id} is used twice`);
    objectIds.add(u.id.toLowerCase());
    const user = {
      id: u.id.toLowerCase(),
      username: u.username,
      passwordDigest: digest(u.password),
      name: u.name || u.username,
      groups: u.groups ?? [],
      claims: u.claims ?? {},
    };
    for (const k of Object.keys(user.claims)) cfg.extraClaimNames.add(k);
    cfg.users.set(user.id, user);
    cfg.usersByName.set(key, user);
  }
  return cfg;
}

function digest(s) {
  return crypto.createHash('sha256').update(s, 'utf8').digest();
}

// ---- keys -----------------------------------------------------------------

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

// loadKeys reads the private JWK set the tokens are signed with: an RS256
// key (the default) and an ES256 one. The keys come from a file rather than
// crypto.generateKeyPairSync because Node.js 20 can deadlock exporting a
// freshly generated RSA key to JWK when a garbage collection runs meanwhile.
function loadKeys(path) {
  const { keys } = JSON.parse(fs.readFileSync(path, 'utf8'));
  need(Array.isArray(keys), `${path}: not a JWK set`);
  for (const alg of ['RS256', 'ES256']) {
    need(keys.some((k) => k.alg === alg && k.use === 'sig' && k.kid && k.d), `${path}: no private ${alg} signing key with a kid`);
  }
  const publicJwks = keys.map((k) => Object.fromEntries(Object.entries(k).filter(([m]) => !PRIVATE_MEMBERS.includes(m))));
  return { privateJwks: keys, publicJwks };
}

// ---- claims ---------------------------------------------------------------

function groupsEndpoint(issuer, oid) {
  return `${issuer}/groups/${oid}/getMemberObjects`;
}

// groupClaims is what Entra ID puts in a token for the groups: the list, or
// above the threshold the distributed-claim pointers to the groups endpoint.
function groupClaims(cfg, issuer, oid, groups) {
  if (groups.length === 0) return {};
  if (groups.length > cfg.overageThreshold) {
    return {
      _claim_names: { groups: 'src1' },
      _claim_sources: { src1: { endpoint: groupsEndpoint(issuer, oid) } },
    };
  }
  return { groups: [...groups] };
}

function userClaims(cfg, issuer, user) {
  return {
    ...user.claims,
    sub: user.id,
    oid: user.id,
    tid: cfg.tenantId,
    name: user.name,
    preferred_username: user.username,
    ...groupClaims(cfg, issuer, user.id, user.groups),
  };
}

// ---- HTML -----------------------------------------------------------------

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;max-width:26em;margin:2em auto}label{display:block;margin:.5em 0}input[type=text],input[type=password]{width:100%}.error{color:#b00020}</style>
</head>
<body>
<p><em>Tether test identity provider</em></p>
<h1>${esc(title)}</h1>
${body}
</body>
</html>
`;
}

function sendHTML(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

function sendJSON(res, status, body, headers = {}) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.end(JSON.stringify(body));
}

function loginPage(uid, client, error) {
  return page('Sign in', `<p>to continue to <strong id="client">${esc(client)}</strong></p>
${error ? `<p class="error" id="error">${esc(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${esc(uid)}/login">
<label>Username <input type="text" name="username" autocomplete="username" required autofocus></label>
<label>Password <input type="password" name="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
<form id="abort" method="post" action="/interaction/${esc(uid)}/abort"><button type="submit">Cancel</button></form>`);
}

function consentPage(uid, client, username, details) {
  const items = [];
  for (const s of details.missingOIDCScope ?? []) items.push(`<li>OpenID scope <code>${esc(s)}</code></li>`);
  for (const c of details.missingOIDCClaims ?? []) items.push(`<li>claim <code>${esc(c)}</code></li>`);
  for (const [r, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    items.push(`<li><code>${esc(scopes.join(' '))}</code> at <code>${esc(r)}</code></li>`);
  }
  return page('Allow access', `<p><strong id="client">${esc(client)}</strong> asks to sign in as <strong id="user">${esc(username)}</strong>.</p>
${items.length ? `<ul>${items.join('\n')}</ul>` : ''}
<form id="consent" method="post" action="/interaction/${esc(uid)}/consent"><button type="submit">Allow</button></form>
<form id="abort" method="post" action="/interaction/${esc(uid)}/abort"><button type="submit">Deny</button></form>`);
}

// ---- request helpers ------------------------------------------------------

function readForm(req) {
  return new Promise((resolve, reject) => {
    const type = (req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/x-www-form-urlencoded') {
      reject(Object.assign(new Error('expected a form (application/x-www-form-urlencoded)'), { status: 415 }));
      return;
    }
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_FORM_BYTES) {
        reject(Object.assign(new Error('form too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

function drain(req) {
  return new Promise((resolve) => {
    req.on('data', () => {});
    req.on('end', resolve);
    req.on('error', resolve);
    req.on('close', resolve);
  });
}

// ---- the provider ---------------------------------------------------------

function providerConfiguration(cfg, keys) {
  const ttl = {
    AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL || cfg.tokenTTL,
    ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL || cfg.tokenTTL,
    IdToken: cfg.tokenTTL,
    RefreshToken: cfg.refreshTokenTTL,
    AuthorizationCode: 60,
    DeviceCode: 600,
    Interaction: 3600,
    Session: 24 * 3600,
    Grant: cfg.refreshTokenTTL,
  };
  const entraClaims = ['sub', 'oid', 'tid', 'name', 'preferred_username', 'groups', ...cfg.extraClaimNames];

  return {
    clients: [...cfg.clients.values()].map((c) => {
      const code = c.grantTypes.includes('authorization_code');
      return {
        client_id: c.clientId,
        ...(c.clientSecret ? { client_secret: c.clientSecret } : {}),
        client_name: c.name,
        application_type: c.applicationType,
        grant_types: c.grantTypes,
        response_types: code ? ['code'] : [],
        redirect_uris: code ? c.redirectUris : [],
        token_endpoint_auth_method: c.tokenEndpointAuthMethod,
        id_token_signed_response_alg: c.idTokenSigningAlg,
      };
    }),
    jwks: { keys: keys.privateJwks },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    // Every Entra-style claim comes with the openid scope, as in Entra ID.
    claims: { openid: entraClaims, profile: ['name', 'preferred_username'] },
    scopes: ['openid', 'profile', 'offline_access'],
    // Scope-derived claims go in the ID token too, not only to userinfo.
    conformIdTokenClaims: false,
    // Like Entra ID: a client allowed the refresh_token grant gets refresh
    // tokens without OIDC's offline_access + prompt=consent ceremony, and
    // they outlive the browser session.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => false,
    pkce: { required: () => true },
    ttl,
    async findAccount(_ctx, sub) {
      const user = cfg.users.get(sub);
      if (!user) return undefined;
      return { accountId: user.id, claims: async () => userClaims(cfg, provider.issuer, user) };
    },
    extraTokenClaims: async (_ctx, token) => {
      if (token.kind === 'ClientCredentials') {
        const c = cfg.clients.get(token.clientId);
        return {
          oid: c.objectId,
          tid: cfg.tenantId,
          idtyp: 'app',
          azp: c.clientId,
          app_displayname: c.name,
          ...groupClaims(cfg, provider.issuer, c.objectId, c.groups),
        };
      }
      const user = cfg.users.get(token.accountId);
      if (!user) return undefined;
      const { sub: _sub, ...claims } = userClaims(cfg, provider.issuer, user);
      return { ...claims, idtyp: 'user', azp: token.clientId };
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: async (ctx, form, _out, err) => {
          let msg = '<p>Enter the code shown on your device.</p>';
          if (err && (err.userCode || err.name === 'NoCodeError')) {
            msg = '<p class="error" id="error">The code you entered is incorrect or expired. Try again.</p>';
          } else if (err && err.name === 'AbortedError') {
            msg = '<p class="error" id="error">The sign-in was cancelled.</p>';
          } else if (err) {
            msg = `<p class="error" id="error">${esc(err.message || 'The request failed.')}</p>`;
          }
          ctx.type = 'html';
          ctx.body = page('Device sign-in', `${msg}\n${form}\n<button type="submit" form="op.deviceInputForm">Continue</button>`);
        },
        userCodeConfirmSource: async (ctx, form, client, _deviceInfo, userCode) => {
          ctx.type = 'html';
          ctx.body = page('Confirm device', `<p><strong id="client">${esc(client.clientName || client.clientId)}</strong> wants to sign you in on a device showing the code <code id="user_code">${esc(userCode)}</code>.</p>
${form}
<button type="submit" form="op.deviceConfirmForm">Continue</button>
<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Abort</button>`);
        },
        successSource: async (ctx) => {
          ctx.type = 'html';
          ctx.body = page('Signed in', '<p id="success">The device is signed in. You can close this page.</p>');
        },
      },
      resourceIndicators: {
        enabled: true,
        // A request that names no resource gets the first configured one:
        // at the authorization and device endpoints, and for client
        // credentials. Code, device-code and refresh grants keep what was
        // granted (useGrantedResource), so their access tokens are JWTs too.
        defaultResource: async (ctx, _client, oneOf) => {
          if (oneOf) return oneOf;
          if (ctx.oidc.route === 'token' && ctx.oidc.params.grant_type !== 'client_credentials') return undefined;
          return cfg.defaultResource;
        },
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, indicator) => {
          const r = cfg.resources.get(indicator);
          if (!r) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
          return {
            scope: r.scopes.join(' '),
            audience: r.audience,
            accessTokenFormat: 'jwt',
            accessTokenTTL: r.ttl,
            jwt: { sign: { alg: r.alg } },
          };
        },
      },
    },
    interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
    clientBasedCORS: () => false,
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = page('Sign-in error', Object.entries(out)
        .map(([k, v]) => `<p><strong>${esc(k)}</strong>: <span id="${esc(k)}">${esc(v)}</span></p>`).join('\n'));
    },
  };
}

let provider; // set once, before the server answers anything but 503

// ---- interaction pages ----------------------------------------------------

async function interaction(cfg, req, res, path) {
  const m = /^\/interaction\/([\w-]+)(?:\/(login|consent|abort))?$/.exec(path);
  if (!m) return sendHTML(res, 404, page('Not found', '<p>No such page.</p>'));
  const [, uid, action] = m;
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    if (err instanceof errors.SessionNotFound) {
      return sendHTML(res, 400, page('Sign-in expired', `<p class="error" id="error">${esc(err.error_description || err.message)}</p>`));
    }
    throw err;
  }
  if (details.uid !== uid) {
    return sendHTML(res, 400, page('Sign-in mismatch', '<p class="error" id="error">This page belongs to another sign-in.</p>'));
  }
  const { prompt, params, session } = details;
  const client = cfg.clients.get(params.client_id);
  const clientName = client?.name || params.client_id;

  if (!action) {
    if (req.method !== 'GET') return sendHTML(res, 405, page('Method not allowed', ''));
    switch (prompt.name) {
      case 'login':
        return sendHTML(res, 200, loginPage(uid, clientName));
      case 'consent': {
        const user = cfg.users.get(session?.accountId);
        return sendHTML(res, 200, consentPage(uid, clientName, user?.username ?? session?.accountId, prompt.details));
      }
      default:
        return sendHTML(res, 501, page('Not implemented', `<p>prompt ${esc(prompt.name)}</p>`));
    }
  }
  if (req.method !== 'POST') return sendHTML(res, 405, page('Method not allowed', ''));

  switch (action) {
    case 'abort':
      await drain(req);
      log('INFO', 'sign-in aborted', { client: params.client_id });
      return provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'End-User aborted interaction',
      }, { mergeWithLastSubmission: false });
    case 'login': {
      const form = await readForm(req);
      if (prompt.name !== 'login') return sendHTML(res, 409, page('Already signed in', '<p class="error" id="error">This sign-in needs no password now.</p>'));
      const user = cfg.usersByName.get((form.get('username') || '').toLowerCase());
      const given = digest(form.get('password') || '');
      // Compare digests in constant time, and for unknown users too.
      const ok = crypto.timingSafeEqual(given, user ? user.passwordDigest : digest(crypto.randomUUID())) && !!user;
      if (!ok) {
        log('INFO', 'sign-in refused', { client: params.client_id, reason: 'bad username or password' });
        return sendHTML(res, 401, loginPage(uid, clientName, 'Invalid username or password.'));
      }
      log('INFO', 'user signed in', { client: params.client_id, principal: user.id });
      return provider.interactionFinished(req, res, { login: { accountId: user.id } }, { mergeWithLastSubmission: false });
    }
    case 'consent': {
      await drain(req);
      if (prompt.name !== 'consent') return sendHTML(res, 409, page('Nothing to allow', '<p class="error" id="error">This sign-in needs no consent now.</p>'));
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const d = prompt.details;
      if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      const grantId = await grant.save();
      log('INFO', 'consent given', { client: params.client_id, principal: session.accountId });
      return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    }
    default:
      return sendHTML(res, 404, page('Not found', ''));
  }
}

// ---- groups endpoint (Entra's getMemberObjects, paged) --------------------

async function groups(cfg, verifyKeys, req, res, url, oid) {
  await drain(req);
  if (req.method !== 'POST' && req.method !== 'GET') {
    return sendJSON(res, 405, { error: { code: 'Request_BadRequest', message: 'use POST' } }, { Allow: 'POST, GET' });
  }
  const deny = (status, code, message) => {
    log('INFO', 'groups request refused', { status, reason: message });
    const headers = status === 401 ? { 'WWW-Authenticate': `Bearer error="invalid_token", error_description="${message}"` } : {};
    return sendJSON(res, status, { error: { code, message } }, headers);
  };
  const m = /^Bearer ([\w-]+\.[\w-]+\.[\w-]+)$/.exec(req.headers.authorization || '');
  if (!m) return deny(401, 'InvalidAuthenticationToken', 'a bearer access token is required');
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(m[1], verifyKeys, {
      issuer: provider.issuer,
      typ: 'at+jwt',
      algorithms: ['RS256', 'ES256'],
    }));
  } catch (err) {
    return deny(401, 'InvalidAuthenticationToken', `access token rejected: ${err.code || err.message}`);
  }
  if (claims.oid !== oid) {
    return deny(403, 'Authorization_RequestDenied', 'the token is not for this principal');
  }
  const principal = cfg.users.get(oid) ?? [...cfg.clients.values()].find((c) => c.objectId === oid);
  if (!principal) return deny(404, 'Request_ResourceNotFound', 'no such principal');

  const all = principal.groups;
  const skipRaw = url.searchParams.get('$skiptoken') ?? '0';
  const skip = /^\d+$/.test(skipRaw) ? Number(skipRaw) : NaN;
  if (!(skip <= all.length)) {
    return sendJSON(res, 400, { error: { code: 'Request_BadRequest', message: 'invalid $skiptoken' } });
  }
  const end = Math.min(skip + cfg.groupsPageSize, all.length);
  const body = {
    '@odata.context': `${provider.issuer}/$metadata#Collection(Edm.String)`,
    value: all.slice(skip, end),
  };
  if (end < all.length) {
    body['@odata.nextLink'] = `${groupsEndpoint(provider.issuer, oid)}?$skiptoken=${end}`;
  }
  log('INFO', 'groups served', { principal: oid, from: skip, count: end - skip, total: all.length });
  return sendJSON(res, 200, body);
}

// ---- main -----------------------------------------------------------------

async function main() {
  const configPath = process.argv[2];
  if (!configPath || process.argv.length > 3) {
    process.stderr.write('usage: node server.js CONFIG.json\n');
    process.exit(2);
  }
  let cfg;
  let keys;
  try {
    cfg = loadConfig(configPath);
    keys = loadKeys(cfg.keysFile);
  } catch (err) {
    process.stderr.write(`config ${configPath}: ${err.message}\n`);
    process.exit(2);
  }
  const verifyKeys = createLocalJWKSet({ keys: keys.publicJwks });
  let oidc; // provider.callback(), once the provider exists

  const server = https.createServer({
    cert: fs.readFileSync(cfg.tlsCert),
    key: fs.readFileSync(cfg.tlsKey),
    headersTimeout: 10_000,
    requestTimeout: 30_000,
  }, (req, res) => {
    const start = process.hrtime.bigint();
    const url = new URL(req.url, 'https://placeholder.invalid');
    res.on('finish', () => {
      log('INFO', 'request', {
        method: req.method,
        path: url.pathname, // never the query: it may carry codes
        status: res.statusCode,
        duration_ms: Number((process.hrtime.bigint() - start) / 1_000_000n),
      });
    });
    if (!oidc) {
      sendJSON(res, 503, { error: 'temporarily_unavailable' });
      return;
    }
    const groupsPath = /^\/groups\/([0-9a-fA-F-]{36})\/getMemberObjects$/.exec(url.pathname);
    let handled;
    if (url.pathname.startsWith('/interaction/')) {
      handled = interaction(cfg, req, res, url.pathname);
    } else if (groupsPath) {
      handled = groups(cfg, verifyKeys, req, res, url, groupsPath[1].toLowerCase());
    } else {
      oidc(req, res);
      return;
    }
    handled.catch((err) => {
      log('ERROR', 'request failed', { path: url.pathname, err: err.message });
      if (!res.headersSent) {
        sendHTML(res, err.status || 500, page('Error', `<p class="error" id="error">${esc(err.message)}</p>`));
      } else {
        res.destroy();
      }
    });
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port, cfg.host, resolve);
  });
  const { port } = server.address();
  const hostPart = cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host;
  const issuer = cfg.issuer || `https://${hostPart}:${port}`;

  provider = new Provider(issuer, providerConfiguration(cfg, keys));
  // RFC 8628 lets the provider say how often to poll; oidc-provider leaves
  // it out (meaning 5 s), so add it to the device authorization response.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'device_authorization' && ctx.status === 200 && ctx.body?.device_code) {
      ctx.body.interval = cfg.devicePollInterval;
    }
  });
  provider.on('server_error', (_ctx, err) => log('ERROR', 'server error', { err: err.stack || err.message }));
  for (const event of ['authorization.error', 'grant.error', 'device_authorization.error', 'code_verification.error', 'device_resume.error', 'userinfo.error', 'jwks.error', 'discovery.error', 'end_session.error']) {
    provider.on(event, (ctx, err) => log('INFO', event, { client: ctx.oidc?.client?.clientId, err: err.error || err.message, description: err.error_description }));
  }
  provider.on('grant.success', (ctx) => log('INFO', 'token issued', {
    grant_type: ctx.oidc.params?.grant_type,
    client: ctx.oidc.client?.clientId,
    principal: ctx.oidc.account?.accountId,
  }));
  oidc = provider.callback();

  const stop = (signal) => {
    log('INFO', 'stopping', { signal });
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  log('INFO', 'listening', {
    issuer,
    users: cfg.users.size,
    clients: cfg.clients.size,
    resources: cfg.resources.size,
    overage_threshold: cfg.overageThreshold,
  });
  process.stdout.write(`ready ${issuer}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err.message}\n`);
  process.exit(1);
});
