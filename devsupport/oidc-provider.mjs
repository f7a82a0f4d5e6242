#!/usr/bin/env node
// Development OpenID Provider for the OpenVPP wallet.
//
// DEVELOPMENT ONLY. This runs the certified npm `oidc-provider` (v9) with its built-in
// development login form (`features.devInteractions`): ANY email address logs in and the
// password is ignored. Never expose it beyond 127.0.0.1 and never use it in production.
//
// What it gives the product and the tests, offline:
//   - one public client (no secret, PKCE S256 required) for the authorization-code flow;
//   - RFC 9068 JWT access tokens (header typ "at+jwt", RS256, kid) for the wallet API,
//     because resource indicators are on and the API is the default resource;
//   - consent is skipped for this first-party client, so the flow is
//     /auth -> login form -> redirect back to the client with ?code=...;
//   - signing keys kept in a JWKS file (created on first run, mode 0600) so tokens
//     stay verifiable across restarts.
//
// Usage:
//   node devsupport/oidc-provider.mjs --port 9400 [--issuer URL] [--audience URL]
//        [--client-id ID] [--redirect-uri URI ...] [--keys-file PATH]
//        [--access-token-ttl SECONDS]
//
// When listening it prints exactly one JSON line to stdout: {"ready":true,"issuer":"..."}.
// Everything else (oidc-provider notices and warnings, our logs) goes to stderr.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

// oidc-provider prints its NOTICE lines with console.info (stdout). Keep stdout reserved for
// the single ready line the Python side waits for.
console.log = console.error;
console.info = console.error;

const { default: Provider, errors: oidcErrors } = await import('oidc-provider');

const DEFAULT_AUDIENCE = 'https://wallet.ovpp.local';
const DEFAULT_CLIENT_ID = 'ovpp-dev';
const DEFAULT_REDIRECT_URIS = ['http://127.0.0.1:8000/app/callback', 'http://127.0.0.1/callback'];
const DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 3600;
// OpenID Connect scopes (known to oidc-provider as "static" scopes).
const OPENID_SCOPES = ['openid', 'email', 'offline_access'];
// Scopes of the wallet API resource server; they only ever appear in access tokens.
const WALLET_API_SCOPES = ['wallet:read', 'wallet:sign', 'utility:admin'];

function fail(message) {
  console.error(`oidc-provider.mjs: ${message}`);
  process.exit(2);
}

function parseCommandLine() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        port: { type: 'string' },
        issuer: { type: 'string' },
        audience: { type: 'string', default: DEFAULT_AUDIENCE },
        'client-id': { type: 'string', default: DEFAULT_CLIENT_ID },
        'redirect-uri': { type: 'string', multiple: true },
        'keys-file': { type: 'string' },
        'access-token-ttl': { type: 'string', default: String(DEFAULT_ACCESS_TOKEN_TTL_SECONDS) },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    fail(error.message);
  }

  const port = Number.parseInt(parsed.port ?? '', 10);
  if (!Number.isInteger(port) || port <= 0 || port > 65535 || String(port) !== parsed.port) {
    fail('--port N is required (1-65535)');
  }

  const issuer = parsed.issuer ?? `http://127.0.0.1:${port}`;
  const issuerUrl = URL.parse(issuer);
  if (!issuerUrl || !['http:', 'https:'].includes(issuerUrl.protocol)) {
    fail(`--issuer must be an http(s) URL, got ${JSON.stringify(issuer)}`);
  }
  if (issuerUrl.pathname !== '/' || issuerUrl.search || issuerUrl.hash) {
    fail('--issuer must be an origin without path, query or fragment (the provider serves at /)');
  }

  const audienceUrl = URL.parse(parsed.audience);
  if (!audienceUrl || parsed.audience.includes('#')) {
    fail('--audience must be an absolute URI without fragment (it is the resource indicator)');
  }

  const accessTokenTtlSeconds = Number.parseInt(parsed['access-token-ttl'], 10);
  if (!Number.isInteger(accessTokenTtlSeconds) || accessTokenTtlSeconds <= 0) {
    fail('--access-token-ttl must be a positive number of seconds');
  }

  return {
    port,
    issuer: issuerUrl.origin,
    audience: parsed.audience,
    clientId: parsed['client-id'],
    redirectUris: parsed['redirect-uri']?.length ? parsed['redirect-uri'] : DEFAULT_REDIRECT_URIS,
    keysFile: parsed['keys-file'],
    accessTokenTtlSeconds,
  };
}

function generateSigningJwk() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  // RFC 7638 thumbprint as kid: stable, unique, and derived from the public key only.
  const thumbprintInput = JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n });
  const kid = crypto.createHash('sha256').update(thumbprintInput).digest('base64url');
  return { ...jwk, kid, use: 'sig', alg: 'RS256' };
}

// Returns a JWKS with private RSA signing keys. With a keys file the keys persist across
// restarts (file created with mode 0600 when missing); without one they live in memory.
function loadOrCreateSigningKeys(keysFile) {
  if (!keysFile) {
    return { keys: [generateSigningJwk()] };
  }
  const keysPath = path.resolve(keysFile);
  if (!fs.existsSync(keysPath)) {
    fs.mkdirSync(path.dirname(keysPath), { recursive: true });
    const jwks = { keys: [generateSigningJwk()] };
    try {
      // 'wx': fail instead of overwriting if another process created the file meanwhile.
      fs.writeFileSync(keysPath, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
      console.error(`oidc-provider.mjs: created signing keys ${keysPath}`);
      return jwks;
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
    }
  }
  let jwks;
  try {
    jwks = JSON.parse(fs.readFileSync(keysPath, 'utf8'));
  } catch (error) {
    fail(`cannot read keys file ${keysPath}: ${error.message}`);
  }
  const usable = Array.isArray(jwks?.keys)
    && jwks.keys.some((key) => key.kty === 'RSA' && key.d && typeof key.kid === 'string');
  if (!usable) {
    fail(`keys file ${keysPath} must be a JWKS holding a private RSA key with a kid`);
  }
  return { keys: jwks.keys };
}

// Cookie signing keys: derived from the first private key so sessions survive restarts
// along with the tokens; random when the keys live only in memory.
function cookieKeysFor(jwks) {
  const privateExponent = jwks.keys.find((key) => key.d)?.d;
  if (!privateExponent) return [crypto.randomBytes(32).toString('base64url')];
  return [crypto.createHmac('sha256', privateExponent).update('ovpp-dev-oidc cookie key').digest('base64url')];
}

// sub for an email: "dev-" + first 24 hex chars of sha256(lowercased, trimmed email).
// devsupport/oidc_login.py:dev_subject must stay identical.
function devAccountIdFor(email) {
  const normalized = email.trim().toLowerCase();
  return `dev-${crypto.createHash('sha256').update(normalized, 'utf8').digest('hex').slice(0, 24)}`;
}

const settings = parseCommandLine();
const signingKeys = loadOrCreateSigningKeys(settings.keysFile);

// accountId -> normalized email of everyone who logged in since start. Sessions, grants and
// refresh tokens live in oidc-provider's in-memory adapter too, so this needs no storage.
const emailByAccountId = new Map();

// devInteractions stores whatever was typed into the login box as the session's accountId
// (which becomes `sub`). Intercept the login result so accountId is the derived dev- id.
class DevelopmentProvider extends Provider {
  async interactionResult(req, res, result, options) {
    if (result?.login && typeof result.login.accountId === 'string') {
      const email = result.login.accountId.trim().toLowerCase();
      if (!/^[^\s@]+@[^\s@]+$/.test(email)) {
        return super.interactionResult(req, res, {
          error: 'access_denied',
          error_description: 'log in with an email address (any address works on this development provider)',
        }, { mergeWithLastSubmission: false });
      }
      const accountId = devAccountIdFor(email);
      emailByAccountId.set(accountId, email);
      result = { ...result, login: { ...result.login, accountId } };
    }
    return super.interactionResult(req, res, result, options);
  }
}

const walletResourceServerInfo = {
  scope: WALLET_API_SCOPES.join(' '),
  audience: settings.audience,
  accessTokenTTL: settings.accessTokenTtlSeconds,
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: 'RS256' } },
};

const configuration = {
  clients: [
    {
      client_id: settings.clientId,
      client_name: 'OpenVPP wallet (development)',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: settings.redirectUris,
      // Loopback http redirect URIs are fine for a "web" client. Custom-scheme URIs
      // (mobile apps) need application_type "native", which makes oidc-provider ask for
      // consent on the devInteractions page (oidc_login.py submits that form too).
      application_type: settings.redirectUris.every((uri) => /^https?:/.test(uri)) ? 'web' : 'native',
      // No client `scope` allow-list: oidc-provider v9 only accepts OpenID scopes there
      // (invalid_client_metadata for wallet:*). Access token scopes are limited to the
      // resource server's scopes anyway; unknown scopes are dropped.
    },
  ],
  jwks: signingKeys,
  cookies: { keys: cookieKeysFor(signingKeys) },
  scopes: OPENID_SCOPES,
  // Authorization code flow only (no implicit / hybrid).
  responseTypes: ['code'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
  },
  pkce: {
    // Always required; oidc-provider v9 only implements S256.
    required: () => true,
  },
  features: {
    // DEVELOPMENT ONLY: built-in login form, any email logs in, password ignored.
    devInteractions: { enabled: true },
    // RFC 7009: the web app revokes its refresh token when the customer signs out.
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No `resource` from the client means the wallet API, so access tokens are JWTs.
      async defaultResource(ctx, client, oneOf) {
        if (oneOf) return oneOf.includes(settings.audience) ? settings.audience : oneOf;
        return settings.audience;
      },
      async getResourceServerInfo(ctx, resourceIndicator, client) {
        if (resourceIndicator === settings.audience) return walletResourceServerInfo;
        throw new oidcErrors.InvalidTarget(`unknown resource ${resourceIndicator}`);
      },
      // A token request without `resource` uses the resource granted at /auth (so the
      // token endpoint returns the JWT even though "openid" is requested).
      useGrantedResource: async () => true,
    },
  },
  async findAccount(ctx, accountId) {
    const email = emailByAccountId.get(accountId);
    if (!email) return undefined;
    return {
      accountId,
      async claims() {
        return { sub: accountId, email, email_verified: true };
      },
    };
  },
  // The wallet API shows the user's email, so put it in the access token.
  async extraTokenClaims(ctx, token) {
    const email = emailByAccountId.get(token.accountId);
    return email ? { email } : undefined;
  },
  // Auto-consent: this is the first-party client, so grant whatever it asks for (scopes
  // are already limited by the client's `scope` and the resource server's scopes).
  async loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const accountId = oidc.account.accountId;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
    let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
    if (!grant || grant.accountId !== accountId || grant.clientId !== oidc.client.clientId) {
      grant = new oidc.provider.Grant({ accountId, clientId: oidc.client.clientId });
    }
    const requestedOpenIdScopes = [...oidc.requestParamOIDCScopes];
    if (requestedOpenIdScopes.length) grant.addOIDCScope(requestedOpenIdScopes.join(' '));
    const requestedClaims = [...oidc.requestParamClaims];
    if (requestedClaims.length) grant.addOIDCClaims(requestedClaims);
    for (const [indicator, resourceServer] of Object.entries(oidc.resourceServers)) {
      const resourceScopes = [...oidc.requestParamScopes].filter((scope) => resourceServer.scopes.has(scope));
      if (resourceScopes.length) grant.addResourceScope(indicator, resourceScopes.join(' '));
    }
    await grant.save();
    return grant;
  },
  ttl: {
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? settings.accessTokenTtlSeconds,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
    RefreshToken: 14 * 24 * 3600,
  },
  // Development page; keeps the error visible (the Python driver shows a snippet of it).
  async renderError(ctx, out) {
    ctx.type = 'html';
    const escaped = Object.entries(out)
      .map(([key, value]) => `<p><strong>${key}</strong>: ${String(value).replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`)}</p>`)
      .join('\n');
    ctx.body = `<!DOCTYPE html><html><head><title>oidc error</title></head><body><h1>oidc error</h1>${escaped}</body></html>`;
  },
};

let provider;
try {
  provider = new DevelopmentProvider(settings.issuer, configuration);
} catch (error) {
  fail(`invalid provider configuration: ${error.message}`);
}
provider.on('server_error', (ctx, error) => console.error('oidc-provider server_error:', error));

const server = http.createServer(provider.callback());
server.on('error', (error) => fail(`cannot listen on 127.0.0.1:${settings.port}: ${error.message}`));
server.listen(settings.port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ ready: true, issuer: provider.issuer })}\n`);
});

function shutdown(signal) {
  console.error(`oidc-provider.mjs: ${signal}, shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
