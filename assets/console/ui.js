// Small building blocks shared by the pages: loading and error states, buttons that show
// progress, Relay pagination, dates and money.

import { html, useState, useEffect, useCallback, useRef } from 'preact';
import { gql, yuan } from 'console/api.js';
import { t, errorText, lang } from 'console/i18n.js';

export { yuan };

/** Formats a DateTime string in the reader's language and time zone. */
export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toLocaleString(lang() === 'zh-CN' ? 'zh-CN' : 'en-GB', {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
}

/** A failed action, in words (never silent). */
export function ErrorBox({ error, onRetry }) {
  if (!error) return null;
  return html`<div class="error" role="alert" data-code=${error.code || ''}>
    <span>${errorText(error)}</span>
    ${onRetry ? html` <button class="link" onClick=${onRetry}>${t('retry')}</button>` : null}
  </div>`;
}

export function Spinner({ label }) {
  return html`<div class="loading" role="status"><span class="spinner"></span>${label || t('loading')}</div>`;
}

/** A button that runs `action` (async), shows progress meanwhile and reports its error. */
export function ActionButton({ action, children, class: cls = '', disabled, onError, onDone, id, ...rest }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const mounted = useRef(true);
  useEffect(() => () => (mounted.current = false), []);
  const run = async (ev) => {
    if (ev) ev.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      const result = await action();
      if (onDone) onDone(result);
    } catch (e) {
      if (onError) onError(e);
      else if (mounted.current) setError(e);
    } finally {
      if (mounted.current) setBusy(false);
    }
  };
  return html`<span class="action">
    <button id=${id} class=${`${cls} ${busy ? 'busy' : ''}`} disabled=${disabled || busy} aria-busy=${busy} onClick=${run} ...${rest}>
      ${busy ? html`<span class="spinner"></span>` : null}${children}
    </button>
    ${error ? html`<${ErrorBox} error=${error} />` : null}
  </span>`;
}

/** Loads `load()` when `deps` change; returns { data, error, loading, reload }. */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const seq = useRef(0);
  const reload = useCallback(() => {
    const mine = ++seq.current;
    setState((s) => ({ ...s, loading: true, error: null }));
    load().then(
      (data) => mine === seq.current && setState({ data, error: null, loading: false }),
      (error) => mine === seq.current && setState((s) => ({ data: s.data, error, loading: false })),
    );
  }, deps);
  useEffect(() => {
    reload();
  }, [reload]);
  return { ...state, reload };
}

/**
 * A Relay connection read page by page: `query` takes `$first` and `$after`, `pick(data)`
 * returns the connection. Renders the items with `row` and a "more" button.
 */
export function Paged({ query, variables = {}, pick, row, empty, pageSize = 10, header, refreshKey, table }) {
  const [items, setItems] = useState([]);
  const [page, setPage] = useState({ hasNextPage: false, endCursor: null });
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState(null);
  const key = JSON.stringify(variables) + String(refreshKey);
  const load = async (after, replace) => {
    setLoading(true);
    setError(null);
    try {
      const data = await gql(query, { ...variables, first: pageSize, after });
      const conn = pick(data);
      setItems((old) => (replace ? conn.edges.map((e) => e.node) : old.concat(conn.edges.map((e) => e.node))));
      setPage(conn.pageInfo);
    } catch (e) {
      setError(e);
    } finally {
      setLoading(false);
    }
  };
  useEffect(() => {
    load(null, true);
  }, [key]);
  const body = items.map((item, i) => row(item, i));
  return html`<div class="paged">
    ${items.length === 0 && !loading && !error ? html`<p class="muted empty">${empty || t('nothing')}</p>` : null}
    ${items.length > 0
      ? table
        ? html`<div class="table-wrap"><table>${header}<tbody>${body}</tbody></table></div>`
        : html`<ul class="list">${body}</ul>`
      : null}
    ${loading ? html`<${Spinner} />` : null}
    <${ErrorBox} error=${error} onRetry=${() => load(page.endCursor, items.length === 0)} />
    ${page.hasNextPage && !loading
      ? html`<button class="secondary more" onClick=${() => load(page.endCursor, false)}>${t('more')}</button>`
      : null}
  </div>`;
}

/** A status badge (orders, refunds, runs). */
export function Status({ value }) {
  return html`<span class=${`badge s-${String(value).toLowerCase()}`} data-status=${value}>${t(`status.${value}`)}</span>`;
}

/** Seconds left until `iso`, ticking every second. */
export function useCountdown(iso) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [iso]);
  return iso ? Math.max(0, Math.floor((Date.parse(iso) - now) / 1000)) : 0;
}

export function mmss(seconds) {
  const m = Math.floor(seconds / 60);
  const s = seconds % 60;
  return `${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
}

/** A labelled input bound to a state pair. */
export function Field({ label, value, set, type = 'text', id, ...rest }) {
  return html`<label class="field"><span>${label}</span>
    <input id=${id} type=${type} value=${value} onInput=${(e) => set(e.currentTarget.value)} ...${rest} /></label>`;
}
