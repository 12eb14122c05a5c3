/**
 * Ad click capture, a Shopify Web Pixel (strict sandbox: no DOM, async browser APIs).
 *
 * What it does, and why:
 *  - page_viewed: reads the ad platforms' click ids from the landing URL
 *    (event.context.document.location.href) and keeps each in sessionStorage, so it survives
 *    the shopper browsing to checkout: TikTok's `ttclid`, Meta's `fbclid`, Google's `gclid`
 *    and, for clicks from iOS 14+ devices, `gbraid` and `wbraid`;
 *  - checkout_started / checkout_completed: reports {shop, checkout_token, cart_token} with the
 *    click ids it kept and the ad platforms' first-party cookies, read with browser.cookie.get:
 *    TikTok's `_ttp` (sent as `ttp`), Meta's `_fbc` and `_fbp` (sent as `fbc`, `fbp`), to the
 *    connector's POST /collect. The order webhook carries the same checkout and cart tokens,
 *    which is how the server joins the click to the order (see connector/clicks.py for the
 *    precedence: order note_attributes, this report, then the order's landing_site).
 *  - Values are sent as they are (only trimmed): the platforms match them byte for byte.
 *
 * URL_PARAMETERS and COOKIES are connector/clicks.py's CAPTURED_URL_PARAMETERS and
 * CAPTURED_COOKIES; a test keeps this file, the custom pixel and the WordPress plugin equal to
 * them.
 *
 * It does not fire TikTok's browser pixel: the strict sandbox has no page to load it in. The
 * custom pixel the connector prints (platforms/shopify/storefront/tiktok-custom-pixel.js) does,
 * with the server's event_id for InitiateCheckout and the purchase, so TikTok deduplicates.
 *
 * The body is sent as text/plain and `no-cors` (the sandbox's origin may be opaque, "null"),
 * so the browser needs no preflight; /collect checks the Origin against the store's domains
 * (its myshopify domain and its primary domain), or accepts "null" only for a store installed
 * through the app.
 * Sources: Web Pixels API
 * (https://shopify.dev/docs/api/web-pixels-api: register, analytics.subscribe, browser.cookie,
 * browser.sessionStorage, init.data.shop.myshopifyDomain; standard events page_viewed,
 * checkout_started, checkout_completed with data.checkout.token); Meta's fbclid, _fbc and _fbp
 * (https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/fbp-and-fbc);
 * Google's gclid, gbraid and wbraid
 * (https://developers.google.com/google-ads/api/reference/rpc/v21/ClickConversion).
 *
 * Consent: it reads the shopper's Customer Privacy state from init.customerPrivacy
 * (marketingAllowed, analyticsProcessingAllowed, saleOfDataAllowed) and each later
 * visitorConsentCollected event of the customerPrivacy API, and sends it with every token
 * report as consent_marketing, consent_analytics and consent_sale_of_data ("granted" or
 * "denied"; left out when not given: the connector then knows it as unknown), and again when
 * the shopper decides on a page where a token is known. Click ids are neither kept nor sent
 * while marketing is denied (the report then carries the tokens and the consent only). Its
 * shopify.extension.toml requires no permission, so Shopify runs it for every shopper and a
 * refusal or a sale-of-data opt-out reaches the connector, whose consent policy honours it.
 * Sources: https://shopify.dev/docs/api/web-pixels-api/pixel-privacy and
 * https://shopify.dev/docs/api/web-pixels-api/standard-api/customerprivacy.
 *
 * No pixel receipts: this pixel does not load TikTok's pixel, so it has nothing to say about
 * whether the browser reported a purchase; only the custom pixel (which loads events.js) and the
 * WordPress plugin send receipts, and a shop with only this extension shows its purchases as
 * "no receipt".
 *
 * Not confirmed by a source: that `init.data.cart.id` is `gid://shopify/Cart/<token>` whose
 * token is the webhook's `cart_token` (the checkout token, which is documented, is sent too).
 */
import { register } from "@shopify/web-pixels-extension";

const URL_PARAMETERS = ["ttclid", "fbclid", "gclid", "gbraid", "wbraid"];
const COOKIES = { "_ttp": "ttp", "_fbc": "fbc", "_fbp": "fbp" };
// Shopify's Customer Privacy fields and the /collect fields that carry them.
const CONSENT_FIELDS = {
  marketingAllowed: "consent_marketing",
  analyticsProcessingAllowed: "consent_analytics",
  saleOfDataAllowed: "consent_sale_of_data",
};
const STORAGE_KEY_PREFIX = "connector_click:";
// What /collect accepts (connector/clicks.py): a value it refuses would cost the whole report.
const MAX_CLICK_ID_LENGTH = 500;
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;
// _fbc and _fbp are fb.<subdomain index>.<creation time>.<fbclid or random number>.
const META_COOKIE = /^fb\.[0-9]\.[0-9]+\..+$/;

register(({ analytics, browser, init, settings, customerPrivacy }) => {
  const shop = init.data.shop.myshopifyDomain;
  let privacy = init.customerPrivacy || {};
  let lastHref = null; // the page's URL, to keep its click ids if marketing is allowed later
  let checkoutToken = null; // the checkout of this page, once an event named it
  // Marketing allowed, or not known to be denied.
  const marketingAllowed = () => privacy.marketingAllowed !== false;

  const keepClickIds = async (href) => {
    for (const [name, value] of Object.entries(clickIdsFrom(href))) {
      await browser.sessionStorage.setItem(STORAGE_KEY_PREFIX + name, value);
    }
  };

  const tokensOf = (token) => {
    const tokens = {};
    const cartToken = cartTokenFrom(init.data.cart && init.data.cart.id);
    if (token) tokens.checkout_token = token;
    if (cartToken) tokens.cart_token = cartToken;
    return tokens;
  };

  const send = (report) =>
    fetch(settings.collectUrl, {
      method: "POST",
      body: JSON.stringify(report),
      // The sandbox's origin is opaque ("null"): send without CORS, there is no answer to read.
      mode: "no-cors",
      keepalive: true,
    });

  if (customerPrivacy && customerPrivacy.subscribe) {
    customerPrivacy.subscribe("visitorConsentCollected", async (event) => {
      privacy = (event && event.customerPrivacy) || {};
      if (marketingAllowed() && lastHref) await keepClickIds(lastHref);
      const consent = consentFields(privacy);
      const tokens = tokensOf(checkoutToken);
      if (Object.keys(consent).length > 0 && Object.keys(tokens).length > 0) {
        await send({ shop, ...consent, ...tokens });
      }
    });
  }

  analytics.subscribe("page_viewed", async (event) => {
    lastHref = event.context.document.location.href;
    if (marketingAllowed()) await keepClickIds(lastHref);
  });

  const reportCheckout = async (event) => {
    checkoutToken = event.data.checkout.token || checkoutToken;
    const clicks = {};
    if (marketingAllowed()) {
      for (const name of URL_PARAMETERS) {
        const value = cleanClickId(
          await browser.sessionStorage.getItem(STORAGE_KEY_PREFIX + name),
        );
        if (value) clicks[name] = value;
      }
      for (const [cookie, name] of Object.entries(COOKIES)) {
        const value = cleanClickId(await browser.cookie.get(cookie));
        if (value && (cookie === "_ttp" || META_COOKIE.test(value))) clicks[name] = value;
      }
    }
    const consent = consentFields(privacy);
    const tokens = tokensOf(event.data.checkout.token);
    const nothing = Object.keys(clicks).length === 0 && Object.keys(consent).length === 0;
    if (nothing || Object.keys(tokens).length === 0) {
      return;
    }
    await send({ shop, ...clicks, ...consent, ...tokens });
  };

  analytics.subscribe("checkout_started", reportCheckout);
  analytics.subscribe("checkout_completed", reportCheckout);
});

/** The consent fields of a report: "granted" / "denied" for what Shopify told us. */
function consentFields(privacy) {
  const fields = {};
  for (const [name, field] of Object.entries(CONSENT_FIELDS)) {
    if (privacy[name] === true) fields[field] = "granted";
    else if (privacy[name] === false) fields[field] = "denied";
  }
  return fields;
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
  const token = cartId.replace("gid://shopify/Cart/", "").split("?")[0];
  return token || null;
}
