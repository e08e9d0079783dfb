// The agent's (and sales person's, and admin's) sales desk: the subtree, live sales with
// today's totals, reports as charts over a date range, commissions and invite codes.

import { html, useState, useEffect, useRef } from 'preact';
import uPlot from 'uplot';
import { gql, subscribe, currentUser } from 'console/api.js';
import { t } from 'console/i18n.js';
import { ActionButton, ErrorBox, Paged, Spinner, useLoad, when, yuan } from 'console/ui.js';

const FIGURES = 'amount refunded net orders';

/** The calendar day (YYYY-MM-DD) `offset` days from now in the reports' time zone. */
function dayIn(zone, offset = 0) {
  const at = new Date(Date.now() + offset * 86_400_000);
  return new Intl.DateTimeFormat('en-CA', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(at);
}

/** Fen (a Money string) as a number of yuan, for charts only. */
const toYuan = (fen) => Number(BigInt(fen)) / 100;

/** Bars of `rows` (label, amount, net), one group per row. */
function BarChart({ rows, id }) {
  const box = useRef(null);
  useEffect(() => {
    const el = box.current;
    if (!el || rows.length === 0) return undefined;
    const labels = rows.map((r) => r.label);
    const xs = rows.map((_, i) => i);
    const width = Math.max(280, el.clientWidth || 600);
    const bars = uPlot.paths.bars({ size: [0.35, 48], align: 1 });
    const opts = {
      width,
      height: 220,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false, range: () => [-0.6, rows.length - 0.4] } },
      axes: [
        {
          incrs: [1],
          values: (u, splits) => splits.map((v) => (Number.isInteger(v) && labels[v] !== undefined ? labels[v] : '')),
          size: 40,
        },
        { values: (u, splits) => splits.map((v) => `¥${v}`), size: 70 },
      ],
      series: [
        { label: '', value: (u, v) => (v === null || labels[v] === undefined ? '' : labels[v]) },
        {
          label: t('report.amount'),
          stroke: '#1f6feb',
          fill: 'rgba(31,111,235,0.55)',
          paths: uPlot.paths.bars({ size: [0.35, 48], align: -1 }),
          points: { show: false },
          value: (u, v) => (v === null ? '—' : `¥${v.toFixed(2)}`),
        },
        {
          label: t('report.net'),
          stroke: '#2da44e',
          fill: 'rgba(45,164,78,0.55)',
          paths: bars,
          points: { show: false },
          value: (u, v) => (v === null ? '—' : `¥${v.toFixed(2)}`),
        },
      ],
    };
    const data = [xs, rows.map((r) => toYuan(r.amount)), rows.map((r) => toYuan(r.net))];
    const chart = new uPlot(opts, data, el);
    return () => chart.destroy();
  }, [JSON.stringify(rows)]);
  return html`<div class="chart" id=${id} ref=${box}></div>`;
}

/** One report of the scope over the range, grouped one way: a chart and its table. */
function Report({ scope, from, to, groupBy, refreshKey, title }) {
  const report = useLoad(
    () =>
      gql(
        `query($input: SalesReportInput!) { salesReport(input: $input) { totals { ${FIGURES} }
          rows(first: 100) { edges { node { key label ${FIGURES} } } } } }`,
        { input: { agentId: scope, from, to, groupBy } },
      ),
    [scope, from, to, groupBy, refreshKey],
  );
  const rows = report.data ? report.data.salesReport.rows.edges.map((e) => e.node) : [];
  const id = `report-${groupBy.toLowerCase()}`;
  return html`<section class="card report" id=${id} data-net=${report.data ? report.data.salesReport.totals.net : ''}>
    <h3>${title}</h3>
    ${report.loading && !report.data ? html`<${Spinner} />` : null}
    <${ErrorBox} error=${report.error} onRetry=${report.reload} />
    ${report.data && rows.length === 0 ? html`<p class="muted">${t('report.empty')}</p>` : null}
    ${rows.length ? html`<${BarChart} rows=${rows} id=${`${id}-chart`} />` : null}
    ${rows.length
      ? html`<div class="table-wrap"><table>
          <thead><tr><th>${t('report.group')}</th><th class="num">${t('report.orders')}</th><th class="num">${t('report.amount')}</th><th class="num">${t('report.refunded')}</th><th class="num">${t('report.net')}</th></tr></thead>
          <tbody>${rows.map(
            (r) => html`<tr data-key=${r.key}><td>${r.label}</td><td class="num">${r.orders}</td><td class="num">${yuan(r.amount)}</td><td class="num">${yuan(r.refunded)}</td><td class="num">${yuan(r.net)}</td></tr>`,
          )}</tbody>
          <tfoot><tr><th>${t('report.total')}</th><th class="num">${report.data.salesReport.totals.orders}</th><th class="num">${yuan(report.data.salesReport.totals.amount)}</th><th class="num">${yuan(report.data.salesReport.totals.refunded)}</th><th class="num report-net">${yuan(report.data.salesReport.totals.net)}</th></tr></tfoot>
        </table></div>`
      : null}
  </section>`;
}

/** A node of the agent tree; its children load when it is opened. */
function TreeNode({ node, selected, select, open: startOpen }) {
  const [open, setOpen] = useState(!!startOpen);
  const [children, setChildren] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (!open || children) return;
    gql('query($id: ID!) { agent(id: $id) { children(first: 100) { edges { node { id name commissionRate descendantCount } } } } }', {
      id: node.id,
    }).then(
      (d) => setChildren(d.agent.children.edges.map((e) => e.node)),
      setError,
    );
  }, [open]);
  const hasChildren = node.descendantCount > 0;
  return html`<li class="tree-node">
    <div class=${`tree-label ${selected === node.id ? 'on' : ''}`}>
      ${hasChildren
        ? html`<button class="twisty" aria-expanded=${open} onClick=${() => setOpen(!open)}>${open ? '▾' : '▸'}</button>`
        : html`<span class="twisty"></span>`}
      <button class="link" onClick=${() => select(node)}>${node.name}</button>
      <span class="muted small">${(node.commissionRate / 100).toFixed(2)}% · ${t('tree.below', { n: node.descendantCount })}</span>
    </div>
    ${open && !children && !error ? html`<${Spinner} />` : null}
    <${ErrorBox} error=${error} />
    ${open && children
      ? html`<ul class="tree">${children.map((c) => html`<${TreeNode} node=${c} selected=${selected} select=${select} />`)}</ul>`
      : null}
  </li>`;
}

/** Live sales of the scope as they commit, and today's totals. */
function Live({ scope, zone, onSale }) {
  const [events, setEvents] = useState([]);
  const [today, setToday] = useState(null);
  const [state, setState] = useState('connecting');
  const [error, setError] = useState(null);
  useEffect(() => {
    setEvents([]);
    setToday(null);
    setError(null);
    // Today's totals before the first sale arrives; every sale then carries them.
    gql(`query($input: SalesReportInput!) { salesReport(input: $input) { totals { ${FIGURES} } } }`, {
      input: { agentId: scope, from: dayIn(zone), to: dayIn(zone), groupBy: 'DAY' },
    }).then(
      (d) => setToday((old) => old || d.salesReport.totals),
      setError,
    );
    const stop = subscribe(
      `subscription($agentId: ID) { liveSales(agentId: $agentId) { kind orderNo orderKind orderAmount refunded channel customer at
        agentPath { id name } today { ${FIGURES} } } }`,
      { agentId: scope },
      {
        next: (d) => {
          setState('live');
          const e = d.liveSales;
          setEvents((old) => [e, ...old].slice(0, 50));
          setToday(e.today);
          if (onSale) onSale(e);
        },
        error: (e) => {
          setState('stopped');
          setError(e);
        },
        // The stream says nothing until a sale: it is live once the server accepted it.
        started: () => setState('live'),
        restart: () => setState('connecting'),
      },
      { resubscribe: true },
    );
    return stop;
  }, [scope]);
  return html`<section class="card live" id="live" data-state=${state}>
    <h2>${t('live.title')} <span class=${`dot ${state}`} title=${t(`live.${state}`)}></span><span class="muted small">${t(`live.${state}`)}</span></h2>
    <div class="figures" id="today">
      <div><span class="muted small">${t('live.todayAmount')}</span><strong id="today-amount">${today ? yuan(today.amount) : '…'}</strong></div>
      <div><span class="muted small">${t('live.todayOrders')}</span><strong id="today-orders">${today ? today.orders : '…'}</strong></div>
      <div><span class="muted small">${t('live.todayRefunded')}</span><strong>${today ? yuan(today.refunded) : '…'}</strong></div>
      <div><span class="muted small">${t('live.todayNet')}</span><strong id="today-net">${today ? yuan(today.net) : '…'}</strong></div>
    </div>
    <${ErrorBox} error=${error} />
    ${events.length === 0 ? html`<p class="muted">${t('live.waiting')}</p>` : null}
    <ul class="ticker" id="ticker">
      ${events.map(
        (e) => html`<li class=${`tick ${e.kind.toLowerCase()}`} data-order=${e.orderNo} data-kind=${e.kind}>
          <span class="muted small">${when(e.at)}</span>
          <strong>${e.kind === 'REFUND' ? `−${yuan(e.refunded)}` : `+${yuan(e.orderAmount)}`}</strong>
          <span>${t(`live.${e.kind}`)} · ${t(`kind.${e.orderKind}`)}${e.channel ? ` · ${t(`channel.${e.channel}`)}` : ''}</span>
          <span class="muted small">${e.customer} · ${e.agentPath.length ? e.agentPath[e.agentPath.length - 1].name : '—'} · <span class="mono">${e.orderNo}</span></span>
        </li>`,
      )}
    </ul>
  </section>`;
}

function Commissions({ scope }) {
  const balance = useLoad(() => gql('query($id: ID!) { agent(id: $id) { commissionBalance } }', { id: scope }), [scope]);
  return html`<section class="card" id="commissions">
    <h2>${t('commission.title')}</h2>
    ${balance.data ? html`<p>${t('commission.balance')}: <strong>${yuan(balance.data.agent.commissionBalance)}</strong></p>` : null}
    <${ErrorBox} error=${balance.error} />
    ${balance.error
      ? null
      : html`<${Paged}
          variables=${{ id: scope }}
          query="query($id: ID!, $first: Int, $after: String) { agent(id: $id) { commissions(first: $first, after: $after) { edges { node { amount clawedBack createdAt orderNo } } pageInfo { hasNextPage endCursor } } } }"
          pick=${(d) => d.agent.commissions}
          empty=${t('commission.none')}
          row=${(c) => html`<li class="row"><div><strong>${c.clawedBack ? t('commission.clawedBack') : t('commission.earned')}</strong>
            <span class="muted small">${when(c.createdAt)} · <span class="mono">${c.orderNo || ''}</span></span></div>
            <span class=${`right ${BigInt(c.amount) < 0n ? 'neg' : 'pos'}`}>${yuan(c.amount)}</span></li>`}
        />`}
  </section>`;
}

function Invites({ scope, role }) {
  const [codes, setCodes] = useState([]);
  const link = (code) => `${window.location.origin}/#/signup?invite=${encodeURIComponent(code)}`;
  return html`<section class="card" id="invites">
    <h2>${t('invite.title')}</h2>
    <p class="muted small">${t('invite.help')}</p>
    <${ActionButton}
      id="invite-new"
      class="primary"
      action=${async () => {
        const input = role === 'SALES' ? {} : { agentId: scope };
        const d = await gql('mutation($input: CreateInviteCodeInput!) { createInviteCode(input: $input) { code createdAt } }', { input });
        setCodes((old) => [d.createInviteCode, ...old]);
      }}
      >${t('invite.new')}<//
    >
    <ul class="list">
      ${codes.map(
        (c) => html`<li class="row invite"><strong class="mono">${c.code}</strong><input readonly value=${link(c.code)} onFocus=${(e) => e.currentTarget.select()} /></li>`,
      )}
    </ul>
  </section>`;
}

export function Dashboard() {
  const user = currentUser();
  const me = useLoad(() => gql('{ me { role agent { id name commissionRate descendantCount } } reportTimeZone }'), []);
  const [scope, setScope] = useState(null);
  const [scopeName, setScopeName] = useState('');
  const [from, setFrom] = useState(null);
  const [to, setTo] = useState(null);
  const [refreshKey, setRefreshKey] = useState(0);
  const pending = useRef(null);
  useEffect(() => {
    if (me.data && from === null) {
      // Reports count in their own time zone's days: the last seven of them.
      setFrom(dayIn(me.data.reportTimeZone, -6));
      setTo(dayIn(me.data.reportTimeZone, 0));
    }
    if (me.data && me.data.me.agent && scope === null) {
      setScope(me.data.me.agent.id);
      setScopeName(me.data.me.agent.name);
    }
  }, [me.data]);
  // A sale or refund changes the reports: read them again (at most once a second).
  const onSale = () => {
    if (pending.current) return;
    pending.current = setTimeout(() => {
      pending.current = null;
      setRefreshKey((k) => k + 1);
    }, 1000);
  };
  useEffect(() => () => pending.current && clearTimeout(pending.current), []);
  if (me.loading && !me.data) return html`<${Spinner} />`;
  if (me.error) return html`<${ErrorBox} error=${me.error} onRetry=${me.reload} />`;
  const role = me.data.me.role;
  const node = me.data.me.agent;
  if (!node && role !== 'ADMIN') return html`<p class="muted">${t('agent.noNode')}</p>`;
  const zone = me.data.reportTimeZone;
  const ready = from !== null && (scope !== null || role === 'ADMIN');
  return html`<div class="page wide-page" id="page-agent">
    <div class="toolbar">
      <h1>${scope ? scopeName : t('agent.everything')}</h1>
      <label class="field inline"><span>${t('report.from')}</span><input type="date" id="report-from" value=${from || ''} max=${to} onChange=${(e) => e.currentTarget.value && setFrom(e.currentTarget.value)} /></label>
      <label class="field inline"><span>${t('report.to')}</span><input type="date" id="report-to" value=${to || ''} min=${from} onChange=${(e) => e.currentTarget.value && setTo(e.currentTarget.value)} /></label>
      <span class="muted small" title=${t('report.zoneHelp')}>${zone}</span>
      <button class="secondary" id="report-refresh" onClick=${() => setRefreshKey((k) => k + 1)}>${t('refresh')}</button>
    </div>
    <div class="grid">
      <div class="col">
        ${ready ? html`<${Live} scope=${scope} zone=${zone} onSale=${onSale} />` : null}
        ${node && role === 'AGENT'
          ? html`<section class="card" id="tree"><h2>${t('tree.title')}</h2>
              <ul class="tree"><${TreeNode} node=${node} open=${true} selected=${scope} select=${(n) => {
                setScope(n.id);
                setScopeName(n.name);
              }} /></ul></section>`
          : null}
        ${scope && role !== 'ADMIN' ? html`<${Invites} scope=${scope} role=${role} />` : null}
      </div>
      <div class="col">
        ${ready
          ? html`
              <${Report} title=${t('report.byDay')} scope=${scope} from=${from} to=${to} groupBy="DAY" refreshKey=${refreshKey} />
              ${role === 'SALES' ? null : html`<${Report} title=${t('report.byAgent')} scope=${scope} from=${from} to=${to} groupBy="AGENT" refreshKey=${refreshKey} />`}
              <${Report} title=${t('report.byProduct')} scope=${scope} from=${from} to=${to} groupBy="PRODUCT" refreshKey=${refreshKey} />
              ${scope && role === 'AGENT' ? html`<${Commissions} scope=${scope} />` : null}
            `
          : null}
      </div>
    </div>
    <p class="muted small">${user ? user.email : ''}</p>
  </div>`;
}
