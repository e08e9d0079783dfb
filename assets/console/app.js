// The console's shell: sign-in, the hash router and the navigation of each role.

import { html, render, useState, useEffect } from 'preact';
import { currentUser, onSession, login, register, logout } from 'console/api.js';
import { t, lang, setLang, onLang } from 'console/i18n.js';
import { ActionButton, Field } from 'console/ui.js';
import { Wallet, Products, Orders, OrderDetail } from 'console/customer.js';
import { Dashboard } from 'console/agent.js';
import { Users, Reviews, Refunds, Reconciliation } from 'console/admin.js';

const NAV = {
  CUSTOMER: [
    ['#/wallet', 'nav.wallet'],
    ['#/products', 'nav.products'],
    ['#/orders', 'nav.orders'],
  ],
  AGENT: [['#/sales', 'nav.sales']],
  SALES: [['#/sales', 'nav.sales']],
  ADMIN: [
    ['#/sales', 'nav.sales'],
    ['#/admin/users', 'nav.users'],
    ['#/admin/reviews', 'nav.reviews'],
    ['#/admin/refunds', 'nav.refunds'],
    ['#/admin/reconciliation', 'nav.reconciliation'],
  ],
};

function parseHash() {
  const raw = window.location.hash.replace(/^#/, '') || '/';
  const [path, query] = raw.split('?');
  return { path, params: new URLSearchParams(query || '') };
}

function useHash() {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}

function SignIn({ params, expired }) {
  const [mode, setMode] = useState(params.get('invite') || window.location.hash.startsWith('#/signup') ? 'up' : 'in');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [invite, setInvite] = useState(params.get('invite') || '');
  const submit = async () => {
    if (mode === 'in') await login(email.trim(), password);
    else await register(email.trim(), password, invite.trim());
  };
  return html`<div class="page narrow" id="page-signin">
    <section class="card">
      <h1 class="brand">Topup <span class="muted">${t('tagline')}</span></h1>
      ${expired ? html`<div class="notice" role="status">${t('signin.expired')}</div>` : null}
      <div class="tabs">
        <button id="tab-signin" class=${`tab ${mode === 'in' ? 'on' : ''}`} onClick=${() => setMode('in')}>${t('signin.in')}</button>
        <button id="tab-signup" class=${`tab ${mode === 'up' ? 'on' : ''}`} onClick=${() => setMode('up')}>${t('signin.up')}</button>
      </div>
      <form onSubmit=${(e) => e.preventDefault()}>
        <${Field} id="email" label=${t('signin.email')} type="email" autocomplete="username" value=${email} set=${setEmail} />
        <${Field}
          id="password"
          label=${t('signin.password')}
          type="password"
          autocomplete=${mode === 'in' ? 'current-password' : 'new-password'}
          value=${password}
          set=${setPassword}
        />
        ${mode === 'up'
          ? html`<p class="muted small">${t('signin.passwordRule')}</p>
              <${Field} id="invite" label=${t('signin.invite')} value=${invite} set=${setInvite} />`
          : null}
        <${ActionButton} id="signin-go" class="primary wide" type="submit" disabled=${!email || !password} action=${submit}>
          ${mode === 'in' ? t('signin.in') : t('signin.up')}
        <//>
      </form>
    </section>
  </div>`;
}

function Page({ route, user }) {
  const p = route.path;
  const m = /^\/orders\/([A-Za-z0-9]+)$/.exec(p);
  if (user.role === 'CUSTOMER') {
    if (m) return html`<${OrderDetail} orderNo=${m[1]} />`;
    if (p === '/products') return html`<${Products} />`;
    if (p === '/orders') return html`<${Orders} />`;
    return html`<${Wallet} />`;
  }
  if (user.role === 'ADMIN') {
    if (p === '/admin/users') return html`<${Users} />`;
    if (p === '/admin/reviews') return html`<${Reviews} />`;
    if (p === '/admin/refunds') return html`<${Refunds} />`;
    if (p === '/admin/reconciliation') return html`<${Reconciliation} />`;
    if (m) return html`<${OrderDetail} orderNo=${m[1]} />`;
  }
  return html`<${Dashboard} />`;
}

function App() {
  const [user, setUser] = useState(currentUser());
  const [expired, setExpired] = useState(false);
  const [, setLanguage] = useState(lang());
  const route = useHash();
  useEffect(
    () =>
      onSession((u, reason) => {
        setUser(u);
        setExpired(!u && reason === 'expired');
        if (u) {
          const home = NAV[u.role] ? NAV[u.role][0][0] : '#/';
          const allowed = (NAV[u.role] || []).some(([href]) => window.location.hash.startsWith(href));
          if (!allowed) window.location.hash = home;
        }
      }),
    [],
  );
  useEffect(() => onLang((l) => {
    setLanguage(l);
    document.documentElement.lang = l;
  }), []);
  useEffect(() => {
    document.documentElement.lang = lang();
  }, []);
  const nav = user ? NAV[user.role] || [] : [];
  return html`<div class=${`shell role-${user ? user.role.toLowerCase() : 'none'}`}>
    <header class="top">
      <a class="brand" href="#/">Topup</a>
      <nav>
        ${nav.map(
          ([href, key]) => html`<a href=${href} class=${route.path.startsWith(href.slice(1)) ? 'on' : ''}>${t(key)}</a>`,
        )}
      </nav>
      <span class="spacer"></span>
      <button class="link lang" id="lang" onClick=${() => setLang(lang() === 'zh-CN' ? 'en' : 'zh-CN')}>
        ${lang() === 'zh-CN' ? 'English' : '中文'}
      </button>
      ${user
        ? html`<span class="who muted small" id="who">${user.email}</span>
            <button class="link" id="signout" onClick=${() => logout()}>${t('signout')}</button>`
        : null}
    </header>
    <main>
      ${user ? html`<${Page} route=${route} user=${user} />` : html`<${SignIn} params=${route.params} expired=${expired} />`}
    </main>
  </div>`;
}

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
