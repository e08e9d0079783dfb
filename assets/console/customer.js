// The customer's pages (phone first): wallet and recharge, products, orders and their timeline.

import { html, useState, useEffect } from 'preact';
import { gql, subscribe, toFen, idempotencyKey } from 'console/api.js';
import { t } from 'console/i18n.js';
import { ActionButton, ErrorBox, Paged, Spinner, Status, useLoad, useCountdown, mmss, when, yuan } from 'console/ui.js';

const PRESETS = ['1000', '5000', '10000', '50000'];
const ORDER_FIELDS = 'orderNo kind status amount channel createdAt paidAt expiresAt productName quantity refundedAmount';

/** The QR code of a PENDING order, its countdown and its live status until it is paid. */
export function PayPanel({ payload, onSettled, onClose }) {
  const [status, setStatus] = useState(payload.order.status);
  const [error, setError] = useState(null);
  const [live, setLive] = useState(false);
  const left = useCountdown(payload.expiresAt);
  const orderNo = payload.order.orderNo;
  useEffect(() => {
    setStatus(payload.order.status);
    setError(null);
    const stop = subscribe(
      'subscription($no: String!) { orderStatus(orderNo: $no) { orderNo status } }',
      { no: orderNo },
      {
        next: (data) => {
          setLive(true);
          const s = data.orderStatus.status;
          setStatus(s);
          if (s !== 'PENDING' && onSettled) onSettled(s);
        },
        error: setError,
        complete: () => setLive(false),
      },
    );
    return stop;
  }, [orderNo]);
  const src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(payload.qrCodeSvg)}`;
  const pending = status === 'PENDING';
  return html`<section class="card pay" id="pay-panel" data-order=${orderNo} data-status=${status}>
    <div class="pay-head">
      <strong class="amount">${yuan(payload.order.amount)}</strong>
      <${Status} value=${status} />
    </div>
    ${pending
      ? html`
          <img class="qr" src=${src} alt=${t('pay.qrAlt')} width="220" height="220" />
          <p class="hint">${t(payload.order.channel === 'ALIPAY' ? 'pay.scanAlipay' : 'pay.scanWechat')}</p>
          <p class="countdown" id="countdown">
            ${left > 0 ? t('pay.expiresIn', { time: mmss(left) }) : t('pay.expired')}
          </p>
          <p><a id="pay-link" class="button secondary" href=${payload.codeUrl} target="_blank" rel="noopener">${t('pay.open')}</a></p>
          <p class="muted small">${live ? t('pay.waiting') : t('pay.connecting')} · ${orderNo}</p>
          <${ActionButton}
            class="link"
            action=${async () => {
              const data = await gql(`mutation($no: String!) { closeOrder(orderNo: $no) { status } }`, { no: orderNo });
              setStatus(data.closeOrder.status);
              if (onSettled) onSettled(data.closeOrder.status);
            }}
            >${t('pay.cancel')}<//
          >
        `
      : html`<p class="done" id="pay-result">${t(`pay.result.${status}`, { no: orderNo })}</p>
          ${onClose ? html`<button class="secondary" onClick=${onClose}>${t('ok')}</button>` : null}`}
    <${ErrorBox} error=${error} />
  </section>`;
}

function Recharge({ onSettled }) {
  const [preset, setPreset] = useState(PRESETS[1]);
  const [custom, setCustom] = useState('');
  const [channel, setChannel] = useState('WECHAT');
  const [payload, setPayload] = useState(null);
  const [inputError, setInputError] = useState(null);
  const amount = custom ? toFen(custom) : preset;
  if (payload) {
    return html`<${PayPanel}
      payload=${payload}
      onSettled=${onSettled}
      onClose=${() => setPayload(null)}
    />`;
  }
  return html`<section class="card" id="recharge">
    <h2>${t('recharge.title')}</h2>
    <div class="presets" role="radiogroup">
      ${PRESETS.map(
        (p) => html`<button
          class=${`preset ${!custom && preset === p ? 'on' : ''}`}
          role="radio"
          aria-checked=${!custom && preset === p}
          data-amount=${p}
          onClick=${() => {
            setPreset(p);
            setCustom('');
          }}
        >
          ${yuan(p)}
        </button>`,
      )}
    </div>
    <label class="field"><span>${t('recharge.other')}</span>
      <input id="recharge-custom" inputmode="decimal" placeholder="0.00" value=${custom} onInput=${(e) => setCustom(e.currentTarget.value)} />
    </label>
    <div class="channels" role="radiogroup">
      ${['WECHAT', 'ALIPAY'].map(
        (c) => html`<button class=${`channel ${channel === c ? 'on' : ''}`} role="radio" aria-checked=${channel === c} onClick=${() => setChannel(c)}>
          ${t(`channel.${c}`)}
        </button>`,
      )}
    </div>
    <${ErrorBox} error=${inputError} />
    <${ActionButton}
      id="recharge-go"
      class="primary wide"
      disabled=${!amount}
      action=${async () => {
        setInputError(null);
        const data = await gql(
          `mutation($input: RechargeInput!) { recharge(input: $input) { order { ${ORDER_FIELDS} } codeUrl qrCodeSvg expiresAt } }`,
          { input: { amount, channel, idempotencyKey: idempotencyKey('recharge') } },
        );
        setPayload(data.recharge);
      }}
    >
      ${amount ? t('recharge.go', { amount: yuan(amount) }) : t('recharge.enter')}
    <//>
  </section>`;
}

export function Wallet() {
  const [refreshKey, setRefreshKey] = useState(0);
  const me = useLoad(() => gql('{ me { email balance entitlements { product { name } quantity validUntil active } } }'), [refreshKey]);
  const bump = () => setRefreshKey((k) => k + 1);
  return html`<div class="page" id="page-wallet">
    <section class="card balance">
      <span class="muted">${t('wallet.balance')}</span>
      ${me.data
        ? html`<strong id="balance" class="big">${yuan(me.data.me.balance)}</strong>`
        : me.loading
          ? html`<${Spinner} />`
          : null}
      <button class="link" id="refresh" onClick=${bump} disabled=${me.loading}>${t('refresh')}</button>
      <${ErrorBox} error=${me.error} onRetry=${me.reload} />
    </section>
    <${Recharge} onSettled=${bump} />
    <section class="card">
      <h2>${t('wallet.ledger')}</h2>
      <${Paged}
        refreshKey=${refreshKey}
        query="query($first: Int, $after: String) { ledger(first: $first, after: $after) { edges { node { amount balanceAfter kind createdAt order { orderNo } } } pageInfo { hasNextPage endCursor } } }"
        pick=${(d) => d.ledger}
        empty=${t('wallet.noLedger')}
        row=${(p) => html`<li class="row ledger-row">
          <div><strong>${t(`entry.${p.kind}`)}</strong><span class="muted small">${when(p.createdAt)}${p.order ? ` · ${p.order.orderNo}` : ''}</span></div>
          <div class="right"><span class=${BigInt(p.amount) < 0n ? 'neg' : 'pos'}>${BigInt(p.amount) > 0n ? '+' : ''}${yuan(p.amount)}</span>
          <span class="muted small">${t('wallet.after', { amount: yuan(p.balanceAfter) })}</span></div>
        </li>`}
      />
    </section>
  </div>`;
}

export function Products() {
  const [refreshKey, setRefreshKey] = useState(0);
  const [payload, setPayload] = useState(null);
  const [bought, setBought] = useState(null);
  const me = useLoad(() => gql('{ me { balance entitlements { product { id name } quantity validUntil active } } }'), [refreshKey]);
  const bump = () => setRefreshKey((k) => k + 1);
  return html`<div class="page" id="page-products">
    <section class="card balance small-card">
      <span class="muted">${t('wallet.balance')}</span>
      <strong id="balance">${me.data ? yuan(me.data.me.balance) : '…'}</strong>
    </section>
    ${payload ? html`<${PayPanel} payload=${payload} onSettled=${bump} onClose=${() => setPayload(null)} />` : null}
    ${bought ? html`<div class="notice" role="status" id="bought">${t('products.bought', { name: bought })}</div>` : null}
    <section class="card">
      <h2>${t('products.title')}</h2>
      <${Paged}
        query="query($first: Int, $after: String) { products(first: $first, after: $after, filter: {active: true}) { edges { node { id name description price kind periodDays } } pageInfo { hasNextPage endCursor } } }"
        pick=${(d) => d.products}
        empty=${t('products.none')}
        row=${(p) => html`<li class="row product" data-product=${p.id}>
          <div>
            <strong>${p.name}</strong>
            <span class="muted small">${p.kind === 'SUBSCRIPTION' ? t('products.period', { days: p.periodDays }) : t('products.oneTime')}</span>
            ${p.description ? html`<span class="small">${p.description}</span>` : null}
          </div>
          <div class="right buy">
            <strong>${yuan(p.price)}</strong>
            <${ActionButton}
              class="primary small buy-balance"
              action=${async () => {
                setBought(null);
                await gql(
                  'mutation($input: PurchaseInput!) { purchase(input: $input) { order { orderNo status } entitlement { active } } }',
                  { input: { productId: p.id, quantity: 1, idempotencyKey: idempotencyKey('buy') } },
                );
                setBought(p.name);
                bump();
              }}
              >${t('products.buyBalance')}<//
            >
            <${ActionButton}
              class="secondary small buy-qr"
              action=${async () => {
                setBought(null);
                const data = await gql(
                  `mutation($input: CheckoutInput!) { checkout(input: $input) { order { ${ORDER_FIELDS} } codeUrl qrCodeSvg expiresAt } }`,
                  { input: { productId: p.id, channel: 'WECHAT', idempotencyKey: idempotencyKey('qr') } },
                );
                setPayload(data.checkout);
                window.scrollTo(0, 0);
              }}
              >${t('products.buyQr')}<//
            >
          </div>
        </li>`}
      />
    </section>
    <section class="card">
      <h2>${t('products.held')}</h2>
      ${me.data && me.data.me.entitlements.length === 0 ? html`<p class="muted">${t('products.noneHeld')}</p>` : null}
      <ul class="list">
        ${me.data
          ? me.data.me.entitlements.map(
              (e) => html`<li class="row">
                <strong>${e.product ? e.product.name : '—'}</strong>
                <span class="right">${e.quantity !== null ? t('products.units', { n: e.quantity }) : t('products.until', { date: when(e.validUntil) })}
                  ${e.active ? '' : html` <span class="badge">${t('products.inactive')}</span>`}</span>
              </li>`,
            )
          : null}
      </ul>
    </section>
  </div>`;
}

const STATUSES = ['', 'PENDING', 'PAID', 'PARTIALLY_REFUNDED', 'REFUNDED', 'CLOSED', 'FAILED'];

export function Orders() {
  const [status, setStatus] = useState('');
  const filter = status ? { status } : {};
  return html`<div class="page" id="page-orders">
    <section class="card">
      <h2>${t('orders.title')}</h2>
      <label class="field inline"><span>${t('orders.status')}</span>
        <select value=${status} onChange=${(e) => setStatus(e.currentTarget.value)}>
          ${STATUSES.map((s) => html`<option value=${s}>${s ? t(`status.${s}`) : t('all')}</option>`)}
        </select>
      </label>
      <${Paged}
        variables=${{ filter }}
        query=${`query($first: Int, $after: String, $filter: OrderFilterInput) { orders(first: $first, after: $after, filter: $filter) { edges { node { ${ORDER_FIELDS} } } pageInfo { hasNextPage endCursor } } }`}
        pick=${(d) => d.orders}
        empty=${t('orders.none')}
        row=${(o) => html`<li class="row order-row" data-order=${o.orderNo}>
          <a href=${`#/orders/${o.orderNo}`} class="rowlink">
            <div><strong>${o.kind === 'RECHARGE' ? t('orders.recharge') : o.productName || t('orders.purchase')}</strong>
              <span class="muted small">${when(o.createdAt)}</span><span class="muted small mono">${o.orderNo}</span></div>
            <div class="right"><strong>${yuan(o.amount)}</strong><${Status} value=${o.status} /></div>
          </a>
        </li>`}
      />
    </section>
  </div>`;
}

export function OrderDetail({ orderNo }) {
  const order = useLoad(
    () =>
      gql(
        `query($no: String!) { order(orderNo: $no) { ${ORDER_FIELDS} unitPrice failureReason closedAt
          events { kind status at detail } refunds { refundNo amount status createdAt finishedAt reason } } }`,
        { no: orderNo },
      ),
    [orderNo],
  );
  const o = order.data && order.data.order;
  return html`<div class="page" id="page-order">
    <p><a href="#/orders">← ${t('orders.title')}</a></p>
    ${order.loading && !o ? html`<${Spinner} />` : null}
    <${ErrorBox} error=${order.error} onRetry=${order.reload} />
    ${o
      ? html`<section class="card">
            <div class="pay-head"><strong class="amount">${yuan(o.amount)}</strong><${Status} value=${o.status} /></div>
            <dl class="facts">
              <dt>${t('orders.no')}</dt><dd class="mono">${o.orderNo}</dd>
              <dt>${t('orders.kind')}</dt><dd>${o.kind === 'RECHARGE' ? t('orders.recharge') : `${o.productName} × ${o.quantity}`}</dd>
              ${o.channel ? html`<dt>${t('orders.channel')}</dt><dd>${t(`channel.${o.channel}`)}</dd>` : null}
              <dt>${t('orders.created')}</dt><dd>${when(o.createdAt)}</dd>
              ${o.paidAt ? html`<dt>${t('orders.paid')}</dt><dd>${when(o.paidAt)}</dd>` : null}
              ${o.refundedAmount !== '0' ? html`<dt>${t('orders.refunded')}</dt><dd>${yuan(o.refundedAmount)}</dd>` : null}
              ${o.failureReason ? html`<dt>${t('orders.failure')}</dt><dd>${o.failureReason}</dd>` : null}
            </dl>
          </section>
          <section class="card">
            <h2>${t('orders.timeline')}</h2>
            <ol class="timeline" id="timeline">
              ${o.events.map(
                (e) => html`<li>
                  <strong>${t(`event.${e.kind}`)}</strong> <${Status} value=${e.status} />
                  <span class="muted small">${when(e.at)}</span>
                  ${e.detail ? html`<span class="small">${e.detail}</span>` : null}
                </li>`,
              )}
            </ol>
          </section>
          ${o.refunds.length
            ? html`<section class="card"><h2>${t('orders.refunds')}</h2>
                <ul class="list">${o.refunds.map(
                  (r) => html`<li class="row"><div><strong>${yuan(r.amount)}</strong><span class="muted small">${when(r.createdAt)} · ${r.reason}</span></div>
                  <${Status} value=${r.status} /></li>`,
                )}</ul></section>`
            : null}`
      : null}
  </div>`;
}
