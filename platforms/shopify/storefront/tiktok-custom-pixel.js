/**
 * TikTok browser pixel with the connector's event ids, and click-id capture: a Shopify custom
 * pixel. Paste it in the Shopify admin under Settings > Customer events > Add custom pixel.
 *
 * Do not copy this file by hand: `connector stores shopify-pixel STORE_ID` prints it for one
 * store, with CONFIG filled in from the store's TikTok settings (platforms/shopify/custom_pixel.py).
 *
 * Why: the connector sends InitiateCheckout and the purchase to TikTok's Events API from the
 * server. When the browser pixel sends the same event with the same event_id, TikTok keeps one
 * instead of counting the conversion twice (and adds the other's match keys when both arrive
 * within 5 minutes). So this pixel fires exactly the events the server sends, with their ids:
 *   - checkout_started   -> InitiateCheckout, event_id = the checkout token (when the store
 *                           sends InitiateCheckout at all);
 *   - checkout_completed -> the store's purchase event (CompletePayment unless changed),
 *                           event_id = the order id as a plain number string: the Web Pixels
 *                           API gives "gid://shopify/Order/5678901234", the server sends
 *                           "5678901234" (the id is kept as text: order ids exceed 2^53).
 * Each fires once per checkout and order (remembered in the shop's sessionStorage; a purchase
 * whose events.js was blocked is tracked again if the thank-you page is reloaded), with
 * value, currency and contents computed as the connector does (connector/mapping.py: value =
 * total or subtotal per the store's setting, content_id = variant id, SKU or product id).
 * No PageView is sent: page views stay with whatever TikTok setup the shop already has.
 *
 * It also captures click ids like the app extension (extensions/tiktok-click-capture), for
 * shops that cannot use it: every ad platform's click id from the landing URL (TikTok's
 * ttclid, Meta's fbclid, Google's gclid, gbraid and wbraid; kept in sessionStorage for the
 * session) and the ad cookies _ttp, _fbc and _fbp (sent as ttp, fbc, fbp), reported with the
 * checkout and cart tokens to the connector's POST /collect, where the order webhook later
 * finds them by token. URL_PARAMETERS and COOKIES are connector/clicks.py's
 * CAPTURED_URL_PARAMETERS and CAPTURED_COOKIES (a test keeps them equal). Values are sent as
 * they are, only trimmed: the platforms match them byte for byte.
 *
 * Consent: the pixel reads the shopper's Customer Privacy state, first from
 * init.customerPrivacy (marketingAllowed, analyticsProcessingAllowed, saleOfDataAllowed), then
 * from each visitorConsentCollected event of the customerPrivacy API, and sends it with every
 * token report as consent_marketing, consent_analytics and consent_sale_of_data ("granted" or
 * "denied"; a value it was not given is left out, the connector then knows it as unknown), and
 * again when the shopper decides on a page where a checkout or cart token is known. The
 * connector's store policy decides from it what is sent (held back, limited data use).
 * TikTok's events.js is loaded only while marketing is not denied (at once when the state is
 * unknown or allowed, later if the shopper allows it on this page), and click ids are neither
 * kept nor reported for a shopper who denied marketing: the report then carries the tokens and
 * the consent only. For it to report a refusal at all, the custom pixel's "Customer privacy"
 * permission must be "Not required" (Settings > Customer events): with a required permission
 * Shopify runs it only for shoppers who allowed it, and the connector never hears of the others.
 *
 * Pixel receipt: after the purchase's ttq.track, it tells the connector whether TikTok's
 * events.js loaded: {shop, receipt: "reported" | "blocked", event_id: <order id>, pixel:
 * "tiktok"}, "reported" when the script element fired `load`, "blocked" when it fired `error`
 * (an ad blocker, a network error) or neither within RECEIPT_WAIT_MS. The connector counts a
 * purchase the browser did not report as one only the server delivered. No receipt is sent
 * when events.js was not requested because marketing is denied. Not told apart: a blocker that
 * answers events.js with an empty script of its own (a "noop" redirect) fires `load` and looks
 * like "reported".
 *
 * Sources:
 *  - Customer Privacy in pixels: init.customerPrivacy and
 *    customerPrivacy.subscribe("visitorConsentCollected", event => event.customerPrivacy), the
 *    only event it offers (https://shopify.dev/docs/api/web-pixels-api/pixel-privacy,
 *    https://shopify.dev/docs/api/web-pixels-api/standard-api/customerprivacy); a custom pixel's
 *    permission setting (https://help.shopify.com/en/manual/promoting-marketing/pixels/custom-pixels/manage).
 *  - Custom pixels run in Shopify's lax sandbox, an iframe where a script element may be
 *    injected, with the globals analytics, browser and init; a script src must be replaced by
 *    its JavaScript equivalent (https://help.shopify.com/en/manual/promoting-marketing/pixels/overview,
 *    https://help.shopify.com/en/manual/promoting-marketing/pixels/custom-pixels/code).
 *  - Events and fields: https://shopify.dev/docs/api/web-pixels-api/standard-events/checkout_started
 *    and .../checkout_completed (fires once per checkout, on the thank-you or first upsell
 *    page); Checkout {token, order {id}, lineItems [{title, quantity, variant {id, sku, price,
 *    product {id}}}], totalPrice, subtotalPrice, currencyCode}; browser.cookie.get and
 *    browser.sessionStorage act on the top frame (https://shopify.dev/docs/api/web-pixels-api).
 *  - TikTok pixel: the base code from TikTok Events Manager queues calls on window.ttq and
 *    loads https://analytics.tiktok.com/i18n/pixel/events.js?sdkid=<pixel code>&lib=ttq;
 *    ttq.track(event, properties, {event_id}) sets the id TikTok deduplicates on: same event
 *    name and event_id within 48 hours (https://ads.tiktok.com/help/article/event-deduplication).
 *  - Meta's fbclid and its _fbc (fb.<subdomain index>.<creation time>.<fbclid>) and _fbp
 *    cookies: https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/fbp-and-fbc;
 *    Google's gclid, and gbraid / wbraid for iOS 14+ clicks:
 *    https://developers.google.com/google-ads/api/reference/rpc/v21/ClickConversion.
 *
 * Not confirmed by a source: that every variant and order id in Web Pixels events is a GID or
 * a plain number (both are handled); under which global name the lax sandbox hands a custom
 * pixel the customerPrivacy API (the code takes `customerPrivacy`, else `api.customerPrivacy`,
 * else does without live updates). Saved storefront pages show the custom-pixel iframe as
 * sandbox="allow-scripts allow-forms" (no allow-same-origin), so a fetch from it carries
 * `Origin: null`: the report is sent `no-cors`, and POST /collect accepts a null origin only for
 * a store installed through the app (connector/web/collect.py explains why); a custom-app
 * store's orders keep note_attributes and the landing page.
 */
const CONFIG = {} /* CONNECTOR_CONFIG */;

(function (analytics, browser, init) {
  "use strict";

  const URL_PARAMETERS = ["ttclid", "fbclid", "gclid", "gbraid", "wbraid"];
  const COOKIES = { "_ttp": "ttp", "_fbc": "fbc", "_fbp": "fbp" };
  // Shopify's Customer Privacy fields and the /collect fields that carry them.
  const CONSENT_FIELDS = {
    marketingAllowed: "consent_marketing",
    analyticsProcessingAllowed: "consent_analytics",
    saleOfDataAllowed: "consent_sale_of_data",
  };
  const CLICK_KEY_PREFIX = "connector_click:";
  const SENT_KEY_PREFIX = "tiktok_pixel_sent:";
  // How long the receipt waits for events.js to load or fail before calling it blocked.
  const RECEIPT_WAIT_MS = 5000;
  // What /collect accepts (connector/clicks.py): a value it refuses would cost the whole report.
  const MAX_CLICK_ID_LENGTH = 500;
  const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;
  const META_COOKIE = /^fb\.[0-9]\.[0-9]+\..+$/;
  const sentOnThisPage = new Set();

  const shop = init.data.shop.myshopifyDomain;
  let privacy = init.customerPrivacy || {};
  let lastHref = null; // the page's URL, to keep its click ids if marketing is allowed later
  let checkoutToken = null; // the checkout of this page, once an event named it
  const tiktok = tiktokPixel(window, document, CONFIG.pixelCode);
  if (marketingAllowed()) tiktok.load();

  const privacyApi = customerPrivacyApi();
  if (privacyApi) {
    privacyApi.subscribe("visitorConsentCollected", async (event) => {
      privacy = (event && event.customerPrivacy) || {};
      if (!marketingAllowed()) {
        await reportConsent();
        return;
      }
      tiktok.load();
      if (lastHref) await keepClickIds(lastHref);
      await reportConsent();
    });
  }

  analytics.subscribe("page_viewed", async (event) => {
    lastHref = event.context.document.location.href;
    if (marketingAllowed()) await keepClickIds(lastHref);
  });

  analytics.subscribe("checkout_started", async (event) => {
    const checkout = event.data.checkout;
    checkoutToken = checkout.token || checkoutToken;
    const tracked = CONFIG.initiateCheckout && checkout.token
      ? trackOnce("InitiateCheckout", checkout, checkout.token)
      : null;
    await Promise.all([tracked, reportClicks(event, checkout)]);
  });

  analytics.subscribe("checkout_completed", async (event) => {
    const checkout = event.data.checkout;
    checkoutToken = checkout.token || checkoutToken;
    const orderId = numericId(checkout.order && checkout.order.id);
    // Without the server's id TikTok could not merge the two: better no browser event.
    const tracked = orderId
      ? trackOnce(CONFIG.purchaseEvent, checkout, orderId).then(
          (made) => made && reportReceipt(CONFIG.purchaseEvent, orderId),
        )
      : null;
    await Promise.all([tracked, reportClicks(event, checkout)]);
  });

  /** Whether marketing may be done: allowed, or not known to be denied. */
  function marketingAllowed() {
    return privacy.marketingAllowed !== false;
  }

  /** The customerPrivacy API of the sandbox, if it hands one (see the header). */
  function customerPrivacyApi() {
    /* global customerPrivacy, api */
    if (typeof customerPrivacy !== "undefined" && customerPrivacy && customerPrivacy.subscribe) {
      return customerPrivacy;
    }
    if (typeof api !== "undefined" && api && api.customerPrivacy && api.customerPrivacy.subscribe) {
      return api.customerPrivacy;
    }
    return null;
  }

  /** The consent fields of a report: "granted" / "denied" for what Shopify told us. */
  function consentFields() {
    const fields = {};
    for (const [name, field] of Object.entries(CONSENT_FIELDS)) {
      if (privacy[name] === true) fields[field] = "granted";
      else if (privacy[name] === false) fields[field] = "denied";
    }
    return fields;
  }

  async function keepClickIds(href) {
    for (const [name, value] of Object.entries(clickIdsFrom(href))) {
      await browser.sessionStorage.setItem(CLICK_KEY_PREFIX + name, value);
    }
  }

  /** Resolves true when this call made the ttq.track call (once per event and id). Before
   * events.js is requested a call only waits in ttq's queue (sent if the shopper allows
   * marketing on this page); once it ran, a shopper who withdrew is not tracked any more. */
  async function trackOnce(eventName, checkout, eventId) {
    if (tiktok.requested() && !marketingAllowed()) return false;
    const key = SENT_KEY_PREFIX + eventName + ":" + eventId;
    if (sentOnThisPage.has(key)) return false;
    sentOnThisPage.add(key);
    if (await browser.sessionStorage.getItem(key)) return false;
    await browser.sessionStorage.setItem(key, "1");
    // window.ttq at call time, not a saved reference, in case events.js replaces the object.
    window.ttq.track(eventName, properties(checkout), { event_id: eventId });
    return true;
  }

  /** After the purchase's track call: did events.js load? Nothing is sent when it was never
   * requested (marketing denied), since then nothing was blocked. A blocked call is forgotten,
   * so that a reload of the thank-you page tracks again and, if events.js loads that time,
   * reports it (the connector lets "reported" replace "blocked"; TikTok keeps one event per
   * event_id should the first call have gone out after all). */
  async function reportReceipt(eventName, orderId) {
    const outcome = await tiktok.outcome(RECEIPT_WAIT_MS);
    if (outcome === null) return;
    if (outcome === "blocked") {
      await browser.sessionStorage.setItem(SENT_KEY_PREFIX + eventName + ":" + orderId, "");
    }
    await send({ shop, receipt: outcome, event_id: orderId, pixel: "tiktok" });
  }

  function properties(checkout) {
    const money = CONFIG.valueBasis === "subtotal" ? checkout.subtotalPrice : checkout.totalPrice;
    return present({
      value: money ? Number(money.amount) : null,
      currency: checkout.currencyCode || (money && money.currencyCode),
      content_type: "product",
      contents: (checkout.lineItems || []).map(content),
    });
  }

  function content(lineItem) {
    const variant = lineItem.variant || {};
    const ids = {
      variant: numericId(variant.id),
      sku: variant.sku || null,
      product: numericId(variant.product && variant.product.id),
    };
    // The connector's fallback order: the chosen id, then variant, product, SKU.
    const contentId = [ids[CONFIG.contentId], ids.variant, ids.product, ids.sku].find(Boolean);
    return present({
      content_id: contentId || null,
      content_type: "product",
      content_name: lineItem.title,
      price: variant.price ? Number(variant.price.amount) : null,
      quantity: lineItem.quantity,
    });
  }

  async function reportClicks(event, checkout) {
    const clicks = marketingAllowed() ? await clickIds(event) : {};
    const consent = consentFields();
    const tokens = tokensOf(checkout.token);
    const nothing = Object.keys(clicks).length === 0 && Object.keys(consent).length === 0;
    if (nothing || Object.keys(tokens).length === 0) return;
    await send({ shop, ...clicks, ...consent, ...tokens });
  }

  /** The shopper decided on this page: the latest choice goes with the tokens known here. */
  async function reportConsent() {
    const consent = consentFields();
    const tokens = tokensOf(checkoutToken);
    if (Object.keys(consent).length === 0 || Object.keys(tokens).length === 0) return;
    await send({ shop, ...consent, ...tokens });
  }

  async function clickIds(event) {
    const clicks = clickIdsFrom(event.context.document.location.href);
    for (const name of URL_PARAMETERS) {
      const kept = cleanClickId(await browser.sessionStorage.getItem(CLICK_KEY_PREFIX + name));
      if (kept && !clicks[name]) clicks[name] = kept;
    }
    for (const [cookie, name] of Object.entries(COOKIES)) {
      const value = cleanClickId(await browser.cookie.get(cookie));
      if (value && (cookie === "_ttp" || META_COOKIE.test(value))) clicks[name] = value;
    }
    return clicks;
  }

  function tokensOf(token) {
    const tokens = {};
    const cartToken = cartTokenFrom(init.data.cart && init.data.cart.id);
    if (token) tokens.checkout_token = token;
    if (cartToken) tokens.cart_token = cartToken;
    return tokens;
  }

  async function send(report) {
    // A string body is sent as text/plain: a simple request, no CORS preflight.
    try {
      await fetch(CONFIG.collectUrl, {
        method: "POST",
        body: JSON.stringify(report),
        // The sandbox's origin is opaque ("null"): send without CORS, there is no answer to read.
        mode: "no-cors",
        keepalive: true,
      });
    } catch (_error) {
      // The connector is unreachable: the order still converts, with its landing-page click ids.
    }
  }

  function clickIdsFrom(href) {
    const found = {};
    try {
      const query = new URL(href).searchParams;
      for (const name of URL_PARAMETERS) {
        const value = cleanClickId(query.get(name));
        if (value) found[name] = value;
      }
    } catch (_error) {
      // Not a URL: no click ids.
    }
    return found;
  }

  function cleanClickId(value) {
    if (typeof value !== "string") return null;
    const trimmed = value.trim();
    const usable = trimmed && trimmed.length <= MAX_CLICK_ID_LENGTH;
    return usable && !CONTROL_CHARACTER.test(trimmed) ? trimmed : null;
  }

  function cartTokenFrom(cartId) {
    if (typeof cartId !== "string") return null;
    return cartId.replace("gid://shopify/Cart/", "").split("?")[0] || null;
  }

  function numericId(id) {
    if (id === null || id === undefined) return null;
    const text = String(id);
    const last = text.slice(text.lastIndexOf("/") + 1);
    return /^[0-9]+$/.test(last) ? last : null;
  }

  function present(fields) {
    const kept = {};
    for (const [key, value] of Object.entries(fields)) {
      if (value !== null && value !== undefined && value !== "") kept[key] = value;
    }
    return kept;
  }

  // TikTok's base code, restated: window.ttq queues calls until events.js loads and replays
  // them; ttq.load records the pixel (ttq._i/_t/_o, which events.js reads) and adds the script.
  // The queue is made at once (a purchase tracked before consent is replayed if the shopper
  // allows marketing on this page); the script is added by load(), at most once, and its
  // load / error events are what the receipt reports.
  function tiktokPixel(w, d, pixelCode) {
    w.TiktokAnalyticsObject = "ttq";
    const queue = (w.ttq = w.ttq || []);
    queue.methods = [
      "page", "track", "identify", "instances", "debug", "on", "off", "once", "ready",
      "alias", "group", "enableCookie", "disableCookie", "holdConsent", "revokeConsent",
      "grantConsent",
    ];
    queue.setAndDefer = function (target, method) {
      target[method] = function () {
        target.push([method].concat(Array.prototype.slice.call(arguments, 0)));
      };
    };
    queue.methods.forEach((method) => queue.setAndDefer(queue, method));
    queue.instance = function (code) {
      const instance = queue._i[code] || [];
      queue.methods.forEach((method) => queue.setAndDefer(instance, method));
      return instance;
    };
    let settled = null; // "reported" | "blocked" once the script loaded or failed
    let requested = false;
    const waiting = [];
    const settle = (outcome) => {
      if (settled) return;
      settled = outcome;
      waiting.splice(0).forEach((resolve) => resolve(outcome));
    };
    queue.load = function (code, options) {
      const src = "https://analytics.tiktok.com/i18n/pixel/events.js";
      queue._i = queue._i || {};
      queue._i[code] = [];
      queue._i[code]._u = src;
      queue._t = queue._t || {};
      queue._t[code] = +new Date();
      queue._o = queue._o || {};
      queue._o[code] = options || {};
      const script = d.createElement("script");
      script.type = "text/javascript";
      script.async = true;
      script.src = src + "?sdkid=" + encodeURIComponent(code) + "&lib=ttq";
      if (script.addEventListener) {
        script.addEventListener("load", () => settle("reported"));
        script.addEventListener("error", () => settle("blocked"));
      }
      (d.head || d.documentElement).appendChild(script);
    };
    return {
      requested: () => requested,
      load() {
        if (requested) return;
        requested = true;
        queue.load(pixelCode);
      },
      /** "reported" or "blocked" once known, "blocked" if still loading after waitMs, null when
       * the script was never requested. */
      outcome(waitMs) {
        if (settled) return Promise.resolve(settled);
        return new Promise((resolve) => {
          waiting.push(resolve);
          setTimeout(() => {
            const index = waiting.indexOf(resolve);
            if (index >= 0) waiting.splice(index, 1);
            resolve(settled || (requested ? "blocked" : null));
          }, waitMs);
        });
      },
    };
  }
})(analytics, browser, init);
