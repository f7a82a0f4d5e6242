// Sign-in (authorization code + PKCE S256) and the GraphQL transport (HTTP and
// graphql-transport-ws). The documents are the published operations in clients/operations.

const TOKEN_KEY = 'ovpp.accessToken';
const REFRESH_KEY = 'ovpp.refreshToken';
const PENDING_KEY = 'ovpp.pendingSignIn';

let configPromise;
export function config() {
  configPromise ??= fetch('/app/config.json').then((response) => response.json());
  return configPromise;
}

async function discovery() {
  const { issuer } = await config();
  const response = await fetch(`${issuer}/.well-known/openid-configuration`);
  if (!response.ok) throw new Error('The sign-in service is not reachable.');
  return response.json();
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

export function accessToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/**
 * Forgets the tokens and revokes the refresh token at the provider (RFC 7009, best effort):
 * a copy of it taken earlier must not keep renewing a session the customer ended.
 */
export function signOut() {
  const refreshToken = sessionStorage.getItem(REFRESH_KEY);
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(REFRESH_KEY);
  if (refreshToken) revoke(refreshToken);
}

async function revoke(token) {
  try {
    const [settings, provider] = await Promise.all([config(), discovery()]);
    if (!provider.revocation_endpoint) return;
    await fetch(provider.revocation_endpoint, {
      method: 'POST',
      body: new URLSearchParams({ token, token_type_hint: 'refresh_token', client_id: settings.clientId }),
    });
  } catch {
    // Best effort: otherwise the token dies with its grant (14 days with the dev provider).
  }
}

function keepTokens(body) {
  sessionStorage.setItem(TOKEN_KEY, body.access_token);
  // With rotation the provider sends a new refresh token each time; keep the old one if not.
  if (body.refresh_token) sessionStorage.setItem(REFRESH_KEY, body.refresh_token);
}

let renewing;
/**
 * A new access token from the refresh token (offline_access), without sending the customer
 * back to the sign-in page; one renewal at a time. Returns whether it worked.
 */
export function renewSession() {
  renewing ??= (async () => {
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    if (!refreshToken) return false;
    const [settings, provider] = await Promise.all([config(), discovery()]);
    const response = await fetch(provider.token_endpoint, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: refreshToken,
        client_id: settings.clientId,
        resource: settings.audience,
      }),
    });
    const body = await response.json().catch(() => ({}));
    if (response.ok && body.access_token) {
      keepTokens(body);
      return true;
    }
    if (['invalid_grant', 'invalid_client'].includes(body.error)) {
      // Expired or revoked: only signing in again helps, and the shell shows how.
      signOut();
      dispatchEvent(new Event(SESSION_ENDED));
      return false;
    }
    // The provider is unwell (5xx, rate limit, a proxy's page): keep the session, try later.
    throw new ApiError('The sign-in service is not reachable; please try again.', 'NETWORK');
  })().finally(() => { renewing = undefined; });
  return renewing;
}

/** Dispatched on window when the session cannot be renewed: the customer must sign in. */
export const SESSION_ENDED = 'ovpp:session-ended';

/** Leaves for the OpenID Provider's login page; it comes back to /app/callback. */
export async function signIn() {
  const [settings, provider] = await Promise.all([config(), discovery()]);
  const verifier = randomString();
  const state = randomString();
  const challenge = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PENDING_KEY, JSON.stringify({ verifier, state }));
  const url = new URL(provider.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: settings.clientId,
    redirect_uri: settings.redirectUri,
    scope: settings.scope,
    resource: settings.audience,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    // OpenID Connect grants offline_access (a refresh token) only with prompt=consent.
    ...(settings.scope.split(' ').includes('offline_access') ? { prompt: 'consent' } : {}),
  }).toString();
  location.assign(url);
}

/** On /app/callback: trade the code for an access token (RFC 9068 JWT for the wallet API). */
export async function finishSignIn() {
  const params = new URLSearchParams(location.search);
  const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || 'null');
  sessionStorage.removeItem(PENDING_KEY);
  history.replaceState(null, '', '/app/#wallet');
  if (params.get('error')) throw new Error(params.get('error_description') || params.get('error'));
  if (!pending || params.get('state') !== pending.state) throw new Error('The sign-in expired; please try again.');
  const [settings, provider] = await Promise.all([config(), discovery()]);
  const response = await fetch(provider.token_endpoint, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: params.get('code'),
      redirect_uri: settings.redirectUri,
      client_id: settings.clientId,
      code_verifier: pending.verifier,
      resource: settings.audience,
    }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.access_token) throw new Error(body.error_description || 'Sign-in failed.');
  keepTokens(body);
}

const documents = new Map();
function operation(name) {
  if (!documents.has(name)) {
    documents.set(name, fetch(`/app/operations/${name}.graphql`).then((response) => {
      if (!response.ok) throw new Error(`Missing operation ${name}`);
      return response.text();
    }));
  }
  return documents.get(name);
}

export class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

/**
 * Runs a published operation; returns `data`, throws ApiError with the first error's code.
 * An expired access token is renewed once with the refresh token, and the operation retried
 * (safe for mutations too: the API refuses an unauthenticated request before doing anything).
 */
export async function gql(name, variables = {}) {
  const sent = accessToken();
  try {
    return await gqlOnce(name, variables, sent);
  } catch (error) {
    if (error.code !== 'UNAUTHENTICATED') throw error;
    // Renewed meanwhile (another request got there first): just retry with the new token.
    if (accessToken() && accessToken() !== sent) return gqlOnce(name, variables, accessToken());
    if (await renewSession()) return gqlOnce(name, variables, accessToken());
    throw error;
  }
}

async function gqlOnce(name, variables, token) {
  const { graphqlUrl } = await config();
  const response = await fetch(graphqlUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: await operation(name), variables, operationName: name }),
  });
  const body = await response.json().catch(() => ({}));
  if (body.errors?.length) {
    const [first] = body.errors;
    throw new ApiError(first.message, first.extensions?.code);
  }
  if (!response.ok || !body.data) throw new ApiError('The wallet service is not reachable.', 'NETWORK');
  return body.data;
}

/**
 * A subscription over graphql-transport-ws; calls onNext(data) per update.
 * Returns a function that closes it. onError is called if the socket fails.
 */
export async function subscribe(name, variables, { onNext, onError, onComplete }) {
  const { graphqlUrl } = await config();
  const query = await operation(name);
  const socket = new WebSocket(graphqlUrl.replace(/^http/, 'ws'), 'graphql-transport-ws');
  let finished = false;
  const finish = (callback, value) => {
    if (finished) return;
    finished = true;
    callback?.(value);
    socket.close();
  };
  socket.onopen = () => socket.send(JSON.stringify({
    type: 'connection_init', payload: { Authorization: `Bearer ${accessToken()}` },
  }));
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === 'connection_ack') {
      socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query, variables, operationName: name } }));
    } else if (message.type === 'next') {
      if (message.payload.errors?.length) finish(onError, new ApiError(message.payload.errors[0].message));
      else onNext(message.payload.data);
    } else if (message.type === 'error') {
      finish(onError, new ApiError(message.payload?.[0]?.message || 'Live updates failed.'));
    } else if (message.type === 'complete') {
      finish(onComplete);
    } else if (message.type === 'ping') {
      socket.send(JSON.stringify({ type: 'pong' }));
    }
  };
  socket.onerror = () => finish(onError, new ApiError('Live updates are not available.'));
  socket.onclose = () => finish(onComplete);
  return () => finish(null);
}
