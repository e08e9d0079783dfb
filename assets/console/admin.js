// The admin's desk: users, payment reviews, refunds, reconciliation runs and their differences.

import { html, useState, useEffect } from 'preact';
import { gql, subscribe, toFen, idempotencyKey } from 'console/api.js';
import { t } from 'console/i18n.js';
import { ActionButton, ErrorBox, Paged, Spinner, Status, useLoad, when, yuan } from 'console/ui.js';

export function Users() {
  const [search, setSearch] = useState('');
  const [applied, setApplied] = useState('');
  const [refreshKey, setRefreshKey] = useState(0);
  return html`<div class="page wide-page" id="page-users">
    <section class="card">
      <h2>${t('users.title')}</h2>
      <form class="toolbar" onSubmit=${(e) => {
        e.preventDefault();
        setApplied(search.trim());
      }}>
        <input id="user-search" type="search" placeholder=${t('users.search')} value=${search} onInput=${(e) => setSearch(e.currentTarget.value)} />
        <button class="secondary">${t('search')}</button>
      </form>
      <${Paged}
        table
        refreshKey=${refreshKey}
        variables=${{ search: applied || null }}
        query="query($first: Int, $after: String, $search: String) { users(first: $first, after: $after, search: $search) { edges { node { id email role agentId balance createdAt disabledAt } } pageInfo { hasNextPage endCursor } } }"
        pick=${(d) => d.users}
        header=${html`<thead><tr><th>${t('users.email')}</th><th>${t('users.role')}</th><th class="num">${t('wallet.balance')}</th><th>${t('users.created')}</th><th></th></tr></thead>`}
        row=${(u) => html`<tr data-user=${u.id}>
          <td>${u.email}</td><td>${t(`role.${u.role}`)}</td><td class="num">${yuan(u.balance)}</td><td>${when(u.createdAt)}</td>
          <td>${u.disabledAt
            ? html`<span class="badge s-closed">${t('users.disabled')}</span> <${ActionButton} class="link" action=${async () => {
                await gql('mutation($id: ID!) { enableUser(id: $id) { id } }', { id: u.id });
                setRefreshKey((k) => k + 1);
              }}>${t('users.enable')}<//>`
            : html`<${ActionButton} class="link danger" action=${async () => {
                if (!window.confirm(t('users.confirmDisable', { email: u.email }))) return;
                await gql('mutation($id: ID!) { disableUser(id: $id) { id } }', { id: u.id });
                setRefreshKey((k) => k + 1);
              }}>${t('users.disable')}<//>`}</td>
        </tr>`}
      />
    </section>
  </div>`;
}

function Resolve({ review, done }) {
  const [resolution, setResolution] = useState('ACCEPTED');
  const [note, setNote] = useState('');
  return html`<div class="resolve">
    <select value=${resolution} onChange=${(e) => setResolution(e.currentTarget.value)}>
      ${['ACCEPTED', 'ADJUSTED', 'DISMISSED', 'REFUNDED'].map((r) => html`<option value=${r}>${t(`resolution.${r}`)}</option>`)}
    </select>
    <input placeholder=${t('reviews.note')} value=${note} onInput=${(e) => setNote(e.currentTarget.value)} />
    <${ActionButton}
      class="primary small"
      disabled=${!note.trim()}
      action=${async () => {
        await gql('mutation($id: ID!, $r: ReviewResolution!, $n: String!) { resolvePaymentReview(id: $id, resolution: $r, note: $n) { id resolvedAt } }', {
          id: review.id,
          r: resolution,
          n: note.trim(),
        });
        done();
      }}
      >${t('reviews.resolve')}<//
    >
  </div>`;
}

export function Reviews() {
  const [status, setStatus] = useState('OPEN');
  const [refreshKey, setRefreshKey] = useState(0);
  return html`<div class="page wide-page" id="page-reviews">
    <section class="card">
      <h2>${t('reviews.title')}</h2>
      <div class="tabs">
        ${['OPEN', 'RESOLVED'].map((s) => html`<button class=${`tab ${status === s ? 'on' : ''}`} onClick=${() => setStatus(s)}>${t(`reviews.${s}`)}</button>`)}
      </div>
      <${Paged}
        table
        refreshKey=${refreshKey}
        variables=${{ status }}
        query="query($first: Int, $after: String, $status: ReviewStatus) { paymentReviews(first: $first, after: $after, status: $status) { edges { node { id reason orderNo amount source transactionId detail createdAt resolution resolutionNote resolvedAt } } pageInfo { hasNextPage endCursor } } }"
        pick=${(d) => d.paymentReviews}
        empty=${t('reviews.none')}
        header=${html`<thead><tr><th>${t('reviews.when')}</th><th>${t('reviews.reason')}</th><th>${t('orders.no')}</th><th class="num">${t('report.amount')}</th><th>${t('reviews.detail')}</th><th></th></tr></thead>`}
        row=${(r) => html`<tr>
          <td>${when(r.createdAt)}</td><td>${t(`reason.${r.reason}`)}</td><td class="mono">${r.orderNo || '—'}</td><td class="num">${yuan(r.amount)}</td>
          <td class="small">${r.detail || ''} <span class="muted">(${r.source}${r.transactionId ? ` · ${r.transactionId}` : ''})</span></td>
          <td>${r.resolvedAt
            ? html`${t(`resolution.${r.resolution}`)}<br /><span class="muted small">${r.resolutionNote}</span>`
            : html`<${Resolve} review=${r} done=${() => setRefreshKey((k) => k + 1)} />`}</td>
        </tr>`}
      />
    </section>
  </div>`;
}

/** The refund form of one paid recharge, then its refund followed live to the end. */
function RefundForm({ order, done }) {
  const left = (BigInt(order.amount) - BigInt(order.refundedAmount)).toString();
  const [amount, setAmount] = useState((Number(BigInt(left)) / 100).toFixed(2));
  const [reason, setReason] = useState('');
  const [refund, setRefund] = useState(null);
  const [status, setStatus] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (!refund) return undefined;
    return subscribe(
      'subscription($no: String!) { orderStatus(orderNo: $no, followRefunds: true) { status order { refundedAmount refunds { refundNo status } } } }',
      { no: order.orderNo },
      {
        next: (d) => {
          const mine = d.orderStatus.order.refunds.find((r) => r.refundNo === refund.refundNo);
          if (mine) setStatus(mine.status);
          if (mine && mine.status !== 'PROCESSING') done();
        },
        error: setError,
      },
    );
  }, [refund]);
  if (refund) {
    return html`<div class="refund-state" id="refund-state" data-status=${status || refund.status}>
      ${t('refunds.requested', { amount: yuan(refund.amount) })} <${Status} value=${status || refund.status} />
      ${(status || refund.status) === 'PROCESSING' ? html`<span class="spinner"></span>` : null}
      <${ErrorBox} error=${error} />
    </div>`;
  }
  const fen = toFen(amount);
  return html`<form class="refund-form" onSubmit=${(e) => e.preventDefault()}>
    <label class="field inline"><span>${t('refunds.amount')}</span><input id="refund-amount" inputmode="decimal" value=${amount} onInput=${(e) => setAmount(e.currentTarget.value)} /></label>
    <label class="field inline"><span>${t('refunds.reason')}</span><input id="refund-reason" value=${reason} onInput=${(e) => setReason(e.currentTarget.value)} /></label>
    <${ActionButton}
      id="refund-go"
      class="primary danger small"
      disabled=${!fen || !reason.trim()}
      action=${async () => {
        const d = await gql(
          'mutation($input: RefundOrderInput!) { refundOrder(input: $input) { refundNo amount status } }',
          { input: { orderNo: order.orderNo, amount: fen, reason: reason.trim(), idempotencyKey: idempotencyKey('refund') } },
        );
        setRefund(d.refundOrder);
        setStatus(d.refundOrder.status);
      }}
      >${t('refunds.go')}<//
    >
  </form>`;
}

export function Refunds() {
  const [orderNo, setOrderNo] = useState('');
  const [open, setOpen] = useState(null);
  const [refreshKey, setRefreshKey] = useState(0);
  const [found, setFound] = useState(null);
  const [findError, setFindError] = useState(null);
  const query = `orderNo kind status amount refundedAmount channel paidAt createdAt user { email }
    refunds { refundNo amount status reason createdAt }`;
  const refundable = (o) => o.kind === 'RECHARGE' && (o.status === 'PAID' || o.status === 'PARTIALLY_REFUNDED');
  const row = (o) => html`<tr data-order=${o.orderNo}>
    <td class="mono">${o.orderNo}</td><td>${o.user ? o.user.email : '—'}</td><td class="num">${yuan(o.amount)}</td>
    <td class="num">${yuan(o.refundedAmount)}</td><td><${Status} value=${o.status} /></td><td>${when(o.paidAt)}</td>
    <td>${open === o.orderNo
      ? html`<${RefundForm} order=${o} done=${() => setRefreshKey((k) => k + 1)} />`
      : refundable(o)
        ? html`<button class="secondary small refund-open" onClick=${() => setOpen(o.orderNo)}>${t('refunds.open')}</button>`
        : null}
      ${o.refunds.map((r) => html`<div class="small">${yuan(r.amount)} <${Status} value=${r.status} /> <span class="muted">${r.reason}</span></div>`)}</td>
  </tr>`;
  const header = html`<thead><tr><th>${t('orders.no')}</th><th>${t('users.email')}</th><th class="num">${t('orders.amount')}</th><th class="num">${t('orders.refunded')}</th><th>${t('orders.status')}</th><th>${t('orders.paid')}</th><th></th></tr></thead>`;
  return html`<div class="page wide-page" id="page-refunds">
    <section class="card">
      <h2>${t('refunds.title')}</h2>
      <p class="muted small">${t('refunds.help')}</p>
      <form class="toolbar" onSubmit=${async (e) => {
        e.preventDefault();
        setFindError(null);
        setFound(null);
        if (!orderNo.trim()) return;
        try {
          const d = await gql(`query($no: String!) { order(orderNo: $no) { ${query} } }`, { no: orderNo.trim() });
          setFound(d.order);
        } catch (err) {
          setFindError(err);
        }
      }}>
        <input id="order-search" placeholder=${t('refunds.find')} value=${orderNo} onInput=${(e) => setOrderNo(e.currentTarget.value)} />
        <button class="secondary">${t('search')}</button>
      </form>
      <${ErrorBox} error=${findError} />
      ${found ? html`<div class="table-wrap"><table>${header}<tbody>${row(found)}</tbody></table></div>` : null}
      <h3>${t('refunds.recent')}</h3>
      <${Paged}
        table
        refreshKey=${refreshKey}
        variables=${{ filter: { kind: 'RECHARGE' } }}
        query=${`query($first: Int, $after: String, $filter: OrderFilterInput) { orders(first: $first, after: $after, filter: $filter) { edges { node { ${query} } } pageInfo { hasNextPage endCursor } } }`}
        pick=${(d) => d.orders}
        header=${header}
        row=${row}
      />
    </section>
  </div>`;
}

function Differences({ run }) {
  return html`<${Paged}
    table
    variables=${{ date: run.billDate }}
    query="query($first: Int, $after: String) { reconciliationRuns(first: 100) { edges { node { billDate differences(first: $first, after: $after) { edges { node { kind orderNo refundNo billAmount ourAmount detail } } pageInfo { hasNextPage endCursor } } } } } }"
    pick=${(d) => {
      const edge = d.reconciliationRuns.edges.find((e) => e.node.billDate === run.billDate);
      return edge ? edge.node.differences : { edges: [], pageInfo: { hasNextPage: false } };
    }}
    empty=${t('recon.noDifferences')}
    header=${html`<thead><tr><th>${t('recon.kind')}</th><th>${t('orders.no')}</th><th class="num">${t('recon.bill')}</th><th class="num">${t('recon.ours')}</th><th>${t('reviews.detail')}</th></tr></thead>`}
    row=${(d) => html`<tr><td>${t(`diff.${d.kind}`)}</td><td class="mono">${d.orderNo || d.refundNo || '—'}</td><td class="num">${yuan(d.billAmount)}</td><td class="num">${yuan(d.ourAmount)}</td><td class="small">${d.detail}</td></tr>`}
  />`;
}

export function Reconciliation() {
  const lag = useLoad(() => gql('{ reconcilerLag { dueOrders dueRefunds dueReplays lagSeconds oldestDueAt } }'), []);
  const [open, setOpen] = useState(null);
  const l = lag.data && lag.data.reconcilerLag;
  return html`<div class="page wide-page" id="page-reconciliation">
    <section class="card">
      <h2>${t('recon.lag')}</h2>
      ${lag.loading && !l ? html`<${Spinner} />` : null}
      <${ErrorBox} error=${lag.error} onRetry=${lag.reload} />
      ${l
        ? html`<div class="figures">
            <div><span class="muted small">${t('recon.dueOrders')}</span><strong>${l.dueOrders}</strong></div>
            <div><span class="muted small">${t('recon.dueRefunds')}</span><strong>${l.dueRefunds}</strong></div>
            <div><span class="muted small">${t('recon.dueReplays')}</span><strong>${l.dueReplays}</strong></div>
            <div><span class="muted small">${t('recon.lagSeconds')}</span><strong>${l.lagSeconds}s</strong></div>
          </div>`
        : null}
    </section>
    <section class="card">
      <h2>${t('recon.runs')}</h2>
      <${Paged}
        table
        query="query($first: Int, $after: String) { reconciliationRuns(first: $first, after: $after) { edges { node { billDate status attempts startedAt finishedAt billCount ourCount billTotal ourTotal billRefundTotal ourRefundTotal error } } pageInfo { hasNextPage endCursor } } }"
        pick=${(d) => d.reconciliationRuns}
        empty=${t('recon.none')}
        header=${html`<thead><tr><th>${t('recon.date')}</th><th>${t('orders.status')}</th><th class="num">${t('recon.billTotal')}</th><th class="num">${t('recon.ourTotal')}</th><th class="num">${t('recon.billRefunds')}</th><th class="num">${t('recon.ourRefunds')}</th><th></th></tr></thead>`}
        row=${(r) => html`<tr><td>${r.billDate}</td><td><${Status} value=${r.status} />${r.error ? html`<div class="small neg">${r.error}</div>` : null}</td>
          <td class="num">${yuan(r.billTotal)} (${r.billCount ?? '—'})</td><td class="num">${yuan(r.ourTotal)} (${r.ourCount ?? '—'})</td>
          <td class="num">${yuan(r.billRefundTotal)}</td><td class="num">${yuan(r.ourRefundTotal)}</td>
          <td><button class="link" onClick=${() => setOpen(open === r.billDate ? null : r.billDate)}>${t('recon.differences')}</button>
          ${open === r.billDate ? html`<${Differences} run=${r} />` : null}</td></tr>`}
      />
    </section>
  </div>`;
}
