/**
 * TikTok click capture, a Shopify Web Pixel (strict sandbox: no DOM, async browser APIs).
 *
 * What it does, and why:
 *  - page_viewed: reads `ttclid` from the landing URL (event.context.document.location.href)
 *    and keeps it in sessionStorage, so it survives the shopper browsing to checkout;
 *  - checkout_started / checkout_completed: reports {shop, checkout_token, cart_token, ttclid,
 *    ttp} to the connector's POST /collect. The order webhook carries the same checkout and
 *    cart tokens, which is how the server joins the click to the order (see connector/clicks.py
 *    for the precedence: order note_attributes, this report, then the order's landing_site).
 *  - `_ttp` is TikTok's first-party cookie, read with browser.cookie.get.
 *
 * It does not fire TikTok's browser pixel: the strict sandbox has no page to load it in. The
 * custom pixel the connector prints (platforms/shopify/storefront/tiktok-custom-pixel.js) does,
 * with the server's event_id for InitiateCheckout and the purchase, so TikTok deduplicates.
 *
 * The body is sent as text/plain and `no-cors` (the sandbox's origin may be opaque, "null"),
 * so the browser needs no preflight; /collect checks the Origin against the store's domains
 * (its myshopify domain and its primary domain), or accepts "null" for the store named.
 * Sources: Web Pixels API
 * (https://shopify.dev/docs/api/web-pixels-api: register, analytics.subscribe, browser.cookie,
 * browser.sessionStorage, init.data.shop.myshopifyDomain; standard events page_viewed,
 * checkout_started, checkout_completed with data.checkout.token).
 *
 * Not confirmed by a source: that `init.data.cart.id` is `gid://shopify/Cart/<token>` whose
 * token is the webhook's `cart_token` (the checkout token, which is documented, is sent too).
 */
import { register } from "@shopify/web-pixels-extension";

const TTCLID_KEY = "tiktok_ttclid";
const MAX_CLICK_ID_LENGTH = 500;

register(({ analytics, browser, init, settings }) => {
  const shop = init.data.shop.myshopifyDomain;

  analytics.subscribe("page_viewed", async (event) => {
    const ttclid = ttclidFrom(event.context.document.location.href);
    if (ttclid) {
      await browser.sessionStorage.setItem(TTCLID_KEY, ttclid);
    }
  });

  const reportCheckout = async (event) => {
    const ttclid = await browser.sessionStorage.getItem(TTCLID_KEY);
    const ttp = await browser.cookie.get("_ttp");
    const checkoutToken = event.data.checkout.token;
    const cartToken = cartTokenFrom(init.data.cart && init.data.cart.id);
    if (!(ttclid || ttp) || !(checkoutToken || cartToken)) {
      return;
    }
    const report = { shop, ttclid: ttclid || null, ttp: ttp || null };
    if (checkoutToken) report.checkout_token = checkoutToken;
    if (cartToken) report.cart_token = cartToken;
    await fetch(settings.collectUrl, {
      method: "POST",
      body: JSON.stringify(report),
      // The sandbox's origin is opaque ("null"): send without CORS, there is no answer to read.
      mode: "no-cors",
      keepalive: true,
    });
  };

  analytics.subscribe("checkout_started", reportCheckout);
  analytics.subscribe("checkout_completed", reportCheckout);
});

function ttclidFrom(href) {
  try {
    const value = new URL(href).searchParams.get("ttclid");
    return value && value.length <= MAX_CLICK_ID_LENGTH ? value.trim() : null;
  } catch (_error) {
    return null;
  }
}

function cartTokenFrom(cartId) {
  if (typeof cartId !== "string") return null;
  const token = cartId.replace("gid://shopify/Cart/", "").split("?")[0];
  return token || null;
}
