/* supportdesk loader: <script src="https://HOST/widget.js" data-site="KEY" async></script>
 * Adds the launcher; the chat lives in an iframe from HOST, created on first open, so the
 * host page's CSS and scripts can neither break nor read it. Styles go through CSSOM
 * (style.cssText), which host pages with a strict CSP still allow.
 * Written compact on purpose (budget: 2 KB gzipped); /widget.js serves it without the
 * comments and indentation. Names: d document, w window, me this <script>, H app origin,
 * B launcher button, F frame, P icon path, N badge. Loader <-> frame messages are
 * {supportdesk: "ready" | "open" | "close" | "unread" | "message", count, focus, message},
 * origin-checked; the loader's also carry the page and `who` (the identify call's data).
 * The config's open, close, unread ("#" the count) and title are the launcher's words,
 * and frame the chat's path in the language the config was asked for.
 * The page's API (docs/api.md): window.supportdesk = window.supportdesk || [], then
 * supportdesk.push(["open"] | ["close"] | ["hide"] | ["show"] | ["identify", {...}] |
 * ["on", "message" | "open" | "close", fn]); commands pushed before load run in order. */
(() => {
  const d = document, w = window;
  const me = d.currentScript || d.querySelector('script[data-site][src$="/widget.js"]');
  if (!me || w.supportdeskLoaded) return;
  w.supportdeskLoaded = 1;
  // L: the embed's data-lang for config and frame; [undefined] joins as '' (no data-lang:
  // the visitor's browser language).
  const H = new URL(me.src).origin, id = encodeURIComponent(me.dataset.site), L = '/?lang=' + [me.dataset.lang];
  const SK = 'supportdesk-open:' + id;
  const CHAT = 'M20 2H4a2 2 0 0 0-2 2v18l4-4h14a2 2 0 0 0 2-2V4a2 2 0 0 0-2-2z';
  const CLOSE = 'M6 6l12 12M18 6 6 18';
  const SHADOW = ';box-shadow:0 6px 24px rgba(0,0,0,.24)', Z = 'position:fixed;z-index:2147483000;';
  const mq = (q) => w.matchMedia(q);
  const store = (f) => { try { return f(sessionStorage); } catch {} };
  const add = (parent, tag, css) => {
    const e = parent.appendChild(d.createElement(tag));
    e.style.cssText = css;
    return e;
  };

  const build = (c) => {
    if (!d.body) return d.addEventListener('DOMContentLoaded', () => build(c));
    // The server checked them: side is left|right, ink the colour that reads on color.
    const side = c.position;
    const still = mq('(prefers-reduced-motion: reduce)').matches, narrow = mq('(max-width: 480px)');
    let F, ready, open = false, focus = false, unread = 0, hide, who;
    const on = {}, fire = (e, x) => (on[e] || []).map((f) => setTimeout(f, 0, x));

    const B = add(d.body, 'button', Z + 'bottom:20px;' + side + ':20px;width:60px;height:60px;margin:0;' +
      'padding:0;border:0;border-radius:50%;cursor:pointer;display:grid;place-items:center;' +
      'background:' + c.color + ';color:' + c.ink + SHADOW);
    B.id = 'supportdesk-launcher';
    const svg = B.appendChild(d.createElementNS('http://www.w3.org/2000/svg', 'svg'));
    const P = svg.appendChild(d.createElementNS(svg.namespaceURI, 'path'));
    // One style for both icons: the bubble is filled, the cross is two stroked lines.
    for (const a of ['viewBox=0 0 24 24', 'width=28', 'height=28', 'fill=currentColor',
      'stroke=currentColor', 'stroke-width=2', 'stroke-linecap=round']) svg.setAttribute(...a.split('='));
    const N = add(B, 'span', 'position:absolute;top:-4px;right:-4px;min-width:8px;padding:0 6px;' +
      'border-radius:10px;background:#c5221f;color:#fff;font:700 12px/20px system-ui,sans-serif');
    N.setAttribute('aria-hidden', 'true');

    // Each message also tells the frame the page the visitor is on (agent context).
    const post = (m) => ready && F.contentWindow.postMessage({ ...m, who, page: [location.href, d.title, d.referrer] }, H);
    const paint = () => {
      const full = narrow.matches, shown = unread && !open;
      P.setAttribute('d', open ? CLOSE : CHAT);
      N.textContent = unread > 9 ? '9+' : unread;
      N.style.display = shown ? 'block' : 'none';
      B.setAttribute('aria-expanded', open);
      B.setAttribute('aria-label', (open ? c.close : c.open) + (shown ? c.unread.replace('#', unread) : ''));
      B.style.display = hide || open && full ? 'none' : 'grid';
      if (F) F.style.cssText = Z + 'border:0;background:#fff;color-scheme:normal;' + (full
        ? 'inset:0;width:100%;height:100%'
        : 'bottom:92px;' + side + ':20px;width:380px;height:min(680px,calc(100% - 112px));' +
          'border-radius:16px;box-shadow:0 12px 48px rgba(0,0,0,.22)') + (open && !hide ? '' : ';display:none');
    };
    const toggle = (want, byUser) => {
      open = want;
      focus = byUser;
      if (open && !F) {
        F = d.body.appendChild(d.createElement('iframe'));
        F.id = 'supportdesk-frame';
        F.title = c.title;
        // A call's microphone and camera, asked for only when the visitor accepts one.
        F.allow = 'camera;microphone';
        // The hash only backs up document.referrer/ancestorOrigins; the frame checks it.
        F.src = H + c.frame + '#' + encodeURIComponent(location.origin);
        B.setAttribute('aria-controls', F.id);
      }
      store((s) => (open ? s.setItem(SK, 1) : s.removeItem(SK)));
      if (open) unread = 0;
      paint();
      if (open && !still) F.animate([{ opacity: 0, transform: 'translateY(16px)' }, {}], 200);
      post({ supportdesk: open ? 'open' : 'close', focus });
      fire(open ? 'open' : 'close');
      if (!open && byUser) B.focus();
    };
    const api = ([k, a, f]) => {
      if (k == 'open' || k == 'close') toggle(k == 'open', false);
      if (k == 'hide' || k == 'show') { hide = k == 'hide'; paint(); }
      if (k == 'identify') { who = a; post({}); }
      if (k == 'on') (on[a] = on[a] || []).push(f);
    };

    B.onclick = () => toggle(!open, true);
    // A visible focus ring that no host stylesheet can take away.
    B.onfocus = () => {
      try { if (B.matches(':focus-visible')) B.style.boxShadow = '0 0 0 3px #fff,0 0 0 6px #111'; } catch {}
    };
    B.onblur = () => { B.style.boxShadow = SHADOW.slice(12); };
    narrow.addEventListener('change', paint);
    w.addEventListener('message', (e) => {
      const m = F && e.origin == H && e.source == F.contentWindow && e.data, k = m && m.supportdesk;
      if (k == 'ready') { ready = 1; post({ supportdesk: open ? 'open' : 'close', focus }); }
      if (k == 'close') toggle(false, true);
      if (k == 'unread') { unread = open ? 0 : m.count | 0; paint(); }
      if (k == 'message') fire(k, m.message);
    });
    paint();
    // Single-page apps change the page without a reload: the frame keeps only changes.
    setInterval(() => post({}), 2e3);
    // Still open from the previous page of this tab: reopen, without taking focus.
    if (store((s) => s.getItem(SK))) toggle(true, false);
    // The page's commands: those pushed before now, then each as it is pushed.
    const q = w.supportdesk;
    w.supportdesk = { push: api };
    if (q && q.forEach) q.forEach(api);
  };

  // Unknown or disabled site, or a page the site does not allow: no launcher at all.
  fetch(H + '/widget/config/' + id + L).then((r) => (r.ok ? r.json() : Promise.reject())).then(build, () => {});
})();
