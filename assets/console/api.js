// The console's only way to the backend: the public GraphQL API over HTTP (POST /graphql)
// and graphql-transport-ws (/graphql/ws). Tokens live in memory only; the access token is
// refreshed shortly before it expires, and once more when the server says UNAUTHENTICATED.

const HTTP_URL = new URL('/graphql', window.location.href).toString();
const WS_URL = HTTP_URL.replace(/^http/, 'ws') + '/ws';
// Refresh this long before the access token expires.
const REFRESH_MARGIN_MS = 60_000;

/** An error to show a person: `code` is the server's `extensions.code` (or NETWORK). */
export class ApiError extends Error {
  constructor(code, message, extensions = {}) {
    super(message || code);
    this.code = code;
    this.extensions = extensions;
  }
}

const AUTH_FIELDS = 'accessToken refreshToken accessTokenExpiresAt user { id email role agentId }';

let session = null; // { access, refresh, expiresAt (ms), user }
let refreshing = null;
const listeners = new Set();

/** The signed-in user ({ id, email, role, agentId }) or null. */
export function currentUser() {
  return session ? session.user : null;
}

/** Calls `fn(user)` whenever someone signs in or out; returns the unsubscribe function. */
export function onSession(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function setSession(payload, reason) {
  session = payload
    ? {
        access: payload.accessToken,
        refresh: payload.refreshToken,
        expiresAt: Date.parse(payload.accessTokenExpiresAt),
        user: payload.user,
      }
    : null;
  for (const fn of listeners) fn(session ? session.user : null, reason);
}

async function post(query, variables, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  let resp;
  try {
    resp = await fetch(HTTP_URL, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  } catch (e) {
    throw new ApiError('NETWORK', String(e));
  }
  let body;
  try {
    body = await resp.json();
  } catch (e) {
    throw new ApiError(resp.status === 429 ? 'LIMIT_EXCEEDED' : 'NETWORK', `HTTP ${resp.status}`);
  }
  if (body.errors && body.errors.length) {
    const first = body.errors[0];
    const ext = first.extensions || {};
    throw new ApiError(ext.code || 'INTERNAL', first.message, ext);
  }
  return body.data;
}

/** Trades the refresh token for a new pair (one exchange at a time, shared by all callers). */
export function refresh() {
  if (!session) return Promise.reject(new ApiError('UNAUTHENTICATED'));
  if (!refreshing) {
    const token = session.refresh;
    refreshing = post(`mutation($token: String!) { refreshToken(token: $token) { ${AUTH_FIELDS} } }`, { token })
      .then((data) => setSession(data.refreshToken))
      .catch((e) => {
        // A refused refresh ends the session: sign in again. A network error keeps it.
        if (e.code !== 'NETWORK') setSession(null, 'expired');
        throw e;
      })
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

/** A valid access token (refreshed first when it is about to expire), or null when signed out. */
export async function accessToken() {
  if (!session) return null;
  if (session.expiresAt - Date.now() < REFRESH_MARGIN_MS) await refresh();
  return session ? session.access : null;
}

/** Runs a query or mutation as the signed-in user (or anonymously); returns `data`. */
export async function gql(query, variables = {}) {
  const token = await accessToken();
  try {
    return await post(query, variables, token);
  } catch (e) {
    if (e.code === 'UNAUTHENTICATED' && token && session) {
      await refresh();
      return post(query, variables, session ? session.access : null);
    }
    throw e;
  }
}

export async function login(email, password) {
  const data = await post(`mutation($input: LoginInput!) { login(input: $input) { ${AUTH_FIELDS} } }`, {
    input: { email, password },
  });
  setSession(data.login);
  return data.login.user;
}

export async function register(email, password, inviteCode) {
  const input = { email, password };
  if (inviteCode) input.inviteCode = inviteCode;
  const data = await post(`mutation($input: RegisterInput!) { register(input: $input) { ${AUTH_FIELDS} } }`, {
    input,
  });
  setSession(data.register);
  return data.register.user;
}

export async function logout() {
  const s = session;
  setSession(null, 'logout');
  if (s) {
    try {
      await post('mutation($t: String!) { logout(refreshToken: $t) }', { t: s.refresh });
    } catch (e) {
      // The session is gone from this page either way; the server ends it on its own.
    }
  }
}

let nextId = 1;

/**
 * Runs a subscription over its own graphql-transport-ws connection, authorized in
 * `connection_init`. `on.started()` (the server accepted the connection),
 * `on.next(data)`, `on.error(ApiError)`, `on.complete()`. With
 * `resubscribe`, a stream that ends (the server ends it when the access token expires, or
 * the connection drops) is started again with a fresh token, and `on.restart()` is called.
 * Returns a function that stops it.
 */
export function subscribe(query, variables, on, { resubscribe = false } = {}) {
  let stopped = false;
  let socket = null;
  let attempts = 0;
  const id = String(nextId++);

  const again = () => {
    if (stopped || !resubscribe || !session) return;
    const wait = Math.min(30_000, 500 * 2 ** Math.min(attempts, 6));
    attempts += 1;
    setTimeout(() => {
      if (!stopped) {
        if (on.restart) on.restart();
        start();
      }
    }, wait);
  };

  const start = async () => {
    let token;
    try {
      token = await accessToken();
    } catch (e) {
      if (on.error) on.error(e);
      return;
    }
    if (stopped) return;
    let ended = false;
    const ws = new WebSocket(WS_URL, 'graphql-transport-ws');
    socket = ws;
    const finish = (err) => {
      if (ended) return;
      ended = true;
      if (err && on.error && !resubscribe) on.error(err);
      if (!err && on.complete && !resubscribe) on.complete();
      try {
        ws.close(1000);
      } catch (e) {
        /* already closed */
      }
      again();
    };
    ws.onopen = () => {
      ws.send(
        JSON.stringify({ type: 'connection_init', payload: token ? { Authorization: `Bearer ${token}` } : {} }),
      );
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      switch (msg.type) {
        case 'connection_ack':
          ws.send(JSON.stringify({ id, type: 'subscribe', payload: { query, variables } }));
          if (on.started) on.started();
          break;
        case 'ping':
          ws.send(JSON.stringify({ type: 'pong' }));
          break;
        case 'next': {
          const payload = msg.payload || {};
          if (payload.errors && payload.errors.length) {
            const ext = payload.errors[0].extensions || {};
            const err = new ApiError(ext.code || 'INTERNAL', payload.errors[0].message, ext);
            if (on.error) on.error(err);
          } else {
            attempts = 0;
            on.next(payload.data);
          }
          break;
        }
        case 'error': {
          const first = (msg.payload && msg.payload[0]) || {};
          const ext = first.extensions || {};
          const err = new ApiError(ext.code || 'INTERNAL', first.message, ext);
          if (on.error) on.error(err);
          ended = true;
          ws.close(1000);
          // An error for the operation itself (forbidden, not found) is final.
          break;
        }
        case 'complete':
          finish(null);
          break;
        default:
          break;
      }
    };
    ws.onclose = (ev) => {
      if (stopped || ended) return;
      if (ev.code === 4403 || ev.code === 4401) {
        // The token was refused or the session ended: try a refresh once, then give up.
        refresh().then(() => finish(null), (e) => finish(e));
      } else {
        finish(new ApiError('NETWORK', `WebSocket closed (${ev.code})`));
      }
    };
  };

  start();
  return () => {
    stopped = true;
    if (socket) {
      try {
        socket.send(JSON.stringify({ id, type: 'complete' }));
        socket.close(1000);
      } catch (e) {
        /* already closed */
      }
    }
  };
}

/** `fen` (a Money string or number) as yuan with two decimals, e.g. "1500" → "¥15.00". */
export function yuan(fen) {
  if (fen === null || fen === undefined || fen === '') return '—';
  let n = BigInt(fen);
  const negative = n < 0n;
  if (negative) n = -n;
  const whole = (n / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const cents = (n % 100n).toString().padStart(2, '0');
  return `${negative ? '-' : ''}¥${whole}.${cents}`;
}

/** Parses a yuan amount typed by a person ("15", "15.5", "15.50") into fen; null if invalid. */
export function toFen(text) {
  const m = /^\s*(\d{1,9})(?:\.(\d{1,2}))?\s*$/.exec(String(text));
  if (!m) return null;
  const fen = BigInt(m[1]) * 100n + BigInt((m[2] || '').padEnd(2, '0') || '0');
  return fen > 0n ? fen.toString() : null;
}

/** A fresh idempotency key for one action a person started. */
export function idempotencyKey(prefix) {
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `${prefix}-${Date.now().toString(36)}-${random[0].toString(36)}${random[1].toString(36)}`;
}
