<?php
/**
 * The pure functions of TikTok Click Capture: no WordPress or WooCommerce calls, so
 * tests/test_functions.php runs them with plain `php`.
 *
 * Click ids are kept as sent (only trimmed), like the connector's own connector/clicks.py:
 * the ad platforms match them byte for byte. A value that cannot be a click id (empty, over
 * 500 bytes, control characters, invalid UTF-8) is dropped rather than "cleaned".
 *
 * What is captured is connector/clicks.py's CAPTURED_URL_PARAMETERS and CAPTURED_COOKIES (a
 * test keeps TCC_URL_PARAMETERS and TCC_COOKIES equal to them):
 * - landing-URL parameters: TikTok's ttclid; Meta's fbclid
 *   (https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/fbp-and-fbc);
 *   Google's gclid, and gbraid / wbraid for clicks from iOS 14+ devices
 *   (https://developers.google.com/google-ads/api/reference/rpc/v21/ClickConversion);
 * - the ad pixels' first-party cookies: TikTok's _ttp, Meta's _fbc and _fbp (Meta's format
 *   fb.<subdomain index>.<creation time>.<value>, same page as above).
 *
 * @package TikTokClickCapture
 */

defined( 'ABSPATH' ) || exit;

/** Landing-URL parameters of the ad click that brought the shopper, kept in our cookies. */
const TCC_URL_PARAMETERS = array( 'ttclid', 'fbclid', 'gclid', 'gbraid', 'wbraid' );

/** The ad pixels' own first-party cookies (the pixels set and renew them), copied as they are. */
const TCC_COOKIES = array( '_ttp', '_fbc', '_fbp' );

/** Our cookie for a landing-URL parameter is this prefix and the parameter's name. */
const TCC_COOKIE_PREFIX = 'tcc_';

/** Our first-party cookie for the ttclid of the ad click that brought the shopper. */
const TCC_TTCLID_COOKIE = TCC_COOKIE_PREFIX . 'ttclid';

/** Seven days: TikTok's default click-through attribution window, the connector's too. */
const TCC_TTCLID_LIFETIME = 7 * 24 * 60 * 60;

/** Meta's _fbc / _fbp shape: fb.<subdomain index>.<creation time>.<value>[.<more>]. */
const TCC_META_COOKIE = '/^fb\.[0-9]\.[0-9]+\..+$/';

/** The longest value accepted as a click id (the connector's MAX_CLICK_ID_LENGTH). */
const TCC_MAX_CLICK_ID_LENGTH = 500;

/** Purchase event names the connector can send (`connector tiktok set --purchase-event`). */
const TCC_EVENT_NAMES = array( 'CompletePayment', 'Purchase', 'PlaceAnOrder' );

/** The connector's default purchase event name. */
const TCC_DEFAULT_EVENT = 'CompletePayment';

/**
 * The trimmed value, or null when it cannot be a click id.
 *
 * @param mixed $value A query or cookie value (already unslashed).
 * @return string|null
 */
function tcc_clean_click_id( $value ): ?string {
	if ( ! is_string( $value ) ) {
		return null;
	}
	$value = trim( $value );
	if ( '' === $value || strlen( $value ) > TCC_MAX_CLICK_ID_LENGTH ) {
		return null;
	}
	// 0: no control character; 1: one; false: not valid UTF-8.
	return 0 === preg_match( '/\p{Cc}/u', $value ) ? $value : null;
}

/**
 * The ttclid TikTok adds to an ad's landing URL, from the query parameters.
 *
 * @param array $query The request's query parameters, unslashed.
 * @return string|null
 */
function tcc_ttclid_from_query( array $query ): ?string {
	return tcc_clean_click_id( $query['ttclid'] ?? null );
}

/**
 * Every usable click id the ad platforms add to a landing URL (TCC_URL_PARAMETERS).
 *
 * @param array $query The request's query parameters, unslashed.
 * @return array<string, string> Our cookie name (tcc_<parameter>) => value.
 */
function tcc_click_id_cookies( array $query ): array {
	$cookies = array();
	foreach ( TCC_URL_PARAMETERS as $name ) {
		$value = tcc_clean_click_id( $query[ $name ] ?? null );
		if ( null !== $value ) {
			$cookies[ TCC_COOKIE_PREFIX . $name ] = $value;
		}
	}
	return $cookies;
}

/**
 * An ad pixel's cookie value: Meta's _fbc and _fbp only in Meta's format, any usable _ttp.
 *
 * @param string $cookie The cookie's name.
 * @param mixed  $value  Its value (unslashed).
 * @return string|null
 */
function tcc_clean_pixel_cookie( string $cookie, $value ): ?string {
	$value = tcc_clean_click_id( $value );
	if ( null === $value || ( '_ttp' !== $cookie && 1 !== preg_match( TCC_META_COOKIE, $value ) ) ) {
		return null;
	}
	return $value;
}

/**
 * Options for setcookie(): seven days, the whole site, not readable by scripts (only the
 * server reads it, at checkout), sent on top-level navigation from other sites (Lax).
 *
 * @param int  $now    Unix time.
 * @param bool $secure Whether the site is served over HTTPS.
 * @return array
 */
function tcc_cookie_options( int $now, bool $secure ): array {
	return array(
		'expires'  => $now + TCC_TTCLID_LIFETIME,
		'path'     => '/',
		'secure'   => $secure,
		'httponly' => true,
		'samesite' => 'Lax',
	);
}

/**
 * The order meta to add at checkout, each only when its cookie holds a usable value:
 * `_<parameter>` for each landing-URL parameter (`_ttclid`, `_fbclid`, `_gclid`, `_gbraid`,
 * `_wbraid`) and each pixel cookie under its own name (`_ttp`, `_fbc`, `_fbp`). The connector
 * reads these keys from the order's `meta_data` (connector/clicks.py, ATTRIBUTE_KEYS).
 *
 * @param array $cookies The request's cookies, unslashed.
 * @return array<string, string> Meta key => value.
 */
function tcc_click_id_meta( array $cookies ): array {
	$meta = array();
	foreach ( TCC_URL_PARAMETERS as $name ) {
		$meta[ '_' . $name ] = tcc_clean_click_id( $cookies[ TCC_COOKIE_PREFIX . $name ] ?? null );
	}
	foreach ( TCC_COOKIES as $cookie ) {
		$meta[ $cookie ] = tcc_clean_pixel_cookie( $cookie, $cookies[ $cookie ] ?? null );
	}
	return array_filter(
		$meta,
		static function ( $value ) {
			return null !== $value;
		}
	);
}

/**
 * The configured event name when it is one the connector sends, else the default: the
 * browser and the server must use the same name for TikTok to merge their events.
 *
 * @param mixed $configured The stored option.
 * @return string
 */
function tcc_event_name( $configured ): string {
	return in_array( $configured, TCC_EVENT_NAMES, true ) ? $configured : TCC_DEFAULT_EVENT;
}

/**
 * The pixel's purchase event for an order: `event_id` is the order id as a string, the
 * connector's event_id for the same order, so TikTok keeps one of the two.
 *
 * Contents use the variation id, else the product id: the connector's default content id.
 *
 * @param array  $order      { id, total, currency, items: list of { product_id, variation_id,
 *                           name, quantity, price } }.
 * @param string $event_name The configured event name.
 * @return array { event, properties, options }
 */
function tcc_purchase_event( array $order, string $event_name ): array {
	$contents = array();
	foreach ( $order['items'] as $item ) {
		$variation  = (int) $item['variation_id'];
		$contents[] = array(
			'content_id'   => (string) ( $variation > 0 ? $variation : (int) $item['product_id'] ),
			'content_name' => (string) $item['name'],
			'quantity'     => (int) $item['quantity'],
			'price'        => (float) $item['price'],
		);
	}
	return array(
		'event'      => tcc_event_name( $event_name ),
		'properties' => array(
			'value'        => (float) $order['total'],
			'currency'     => strtoupper( (string) $order['currency'] ),
			'content_type' => 'product',
			'contents'     => $contents,
		),
		'options'    => array( 'event_id' => (string) $order['id'] ),
	);
}

/**
 * The JavaScript that fires the event through the TikTok pixel, if the page has one.
 *
 * JSON is encoded with `<`, `>`, `&` and quotes as \u escapes, so no value (a product name)
 * can close the script element or break out of the string.
 *
 * @param array $event From tcc_purchase_event().
 * @return string
 */
function tcc_pixel_script( array $event ): string {
	$flags = JSON_HEX_TAG | JSON_HEX_AMP | JSON_HEX_APOS | JSON_HEX_QUOT
		| JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE;
	$args  = array();
	foreach ( array( $event['event'], $event['properties'], $event['options'] ) as $value ) {
		$args[] = json_encode( $value, $flags );
	}
	return 'if(window.ttq&&typeof window.ttq.track==="function"){window.ttq.track('
		. implode( ',', $args ) . ');}';
}

/** Where the pixel script of TikTok's base code is loaded from (TikTok Events Manager). */
const TCC_TIKTOK_SCRIPT = 'analytics.tiktok.com/i18n/pixel/events.js';

/** How long the receipt waits for TikTok's events.js before calling it blocked (ms). */
const TCC_RECEIPT_WAIT_MS = 5000;

/** What /collect accepts as an event_id. */
const TCC_EVENT_ID = '/^[A-Za-z0-9_\-.:]{1,255}$/';

/** The connector's /collect address: http(s), no quote, space or angle bracket, ends in /collect. */
const TCC_COLLECT_URL = '#^https?://[^\s"\'<>\\\\]+/collect$#';

/**
 * "granted", "denied" or null (unknown) for a consent answer: a boolean from the WP Consent API,
 * or the same words from a filter.
 *
 * @param mixed $value What the API or a filter answered.
 * @return string|null
 */
function tcc_consent_value( $value ): ?string {
	if ( true === $value || 'granted' === $value ) {
		return 'granted';
	}
	if ( false === $value || 'denied' === $value ) {
		return 'denied';
	}
	return null;
}

/**
 * The order meta for the shopper's consent at checkout. Nothing when the WP Consent API is
 * absent (the connector then knows the consent as unknown).
 *
 * @param bool  $api_present  Whether wp_has_consent() exists.
 * @param mixed $marketing    wp_has_consent( 'marketing' ).
 * @param mixed $statistics   wp_has_consent( 'statistics' ).
 * @param mixed $sale_of_data What the tcc_sale_of_data_consent filter answered (null: unknown).
 * @return array<string, string> Meta key => value.
 */
function tcc_consent_meta( bool $api_present, $marketing, $statistics, $sale_of_data ): array {
	if ( ! $api_present ) {
		return array();
	}
	$meta = array(
		'_tcc_consent_marketing'    => tcc_consent_value( $marketing ),
		'_tcc_consent_analytics'    => tcc_consent_value( $statistics ),
		'_tcc_consent_sale_of_data' => tcc_consent_value( $sale_of_data ),
	);
	$meta = array_filter(
		$meta,
		static function ( $value ) {
			return null !== $value;
		}
	);
	if ( $meta ) {
		$meta['_tcc_consent_source'] = 'wp_consent_api';
	}
	return $meta;
}

/**
 * The configured /collect address, or '' when it is not one (then no receipt is sent).
 *
 * @param mixed $configured The stored option.
 * @return string
 */
function tcc_collect_url( $configured ): string {
	if ( ! is_string( $configured ) ) {
		return '';
	}
	$url = trim( $configured );
	return 1 === preg_match( TCC_COLLECT_URL, $url ) ? $url : '';
}

/**
 * The domain the connector registers the store under, from the site's address: the lowercased
 * host, its port when one is given, and the folder of a site installed in one (the connector's
 * StoreAddress.parse does the same with the address the merchant gave it).
 *
 * @param string $home_url The site's address (home_url()).
 * @return string|null
 */
function tcc_shop_domain( string $home_url ): ?string {
	$parts = tcc_parse_url( $home_url );
	if ( ! is_array( $parts ) || empty( $parts['host'] ) || ! in_array( $parts['scheme'] ?? '', array( 'http', 'https' ), true ) ) {
		return null;
	}
	$domain = strtolower( $parts['host'] ) . ( isset( $parts['port'] ) ? ':' . (int) $parts['port'] : '' );
	return $domain . rtrim( (string) ( $parts['path'] ?? '' ), '/' );
}

/**
 * parse_url(), through WordPress's wp_parse_url() when it is loaded.
 *
 * @param string $url A URL.
 * @return array|false
 */
function tcc_parse_url( string $url ) {
	return function_exists( 'wp_parse_url' ) ? wp_parse_url( $url ) : parse_url( $url ); // phpcs:ignore WordPress.WP.AlternativeFunctions.parse_url_parse_url -- plain PHP in tests.
}

/**
 * The script printed early in the thank-you page's head: it notes whether TikTok's events.js
 * loaded or failed, whichever plugin or theme added it, for tcc_receipt_script() to read.
 *
 * @return string
 */
function tcc_pixel_watch_script(): string {
	return '(function(d){var w=window.tccPixelWatch=window.tccPixelWatch||{state:null,listeners:[]};'
		. 'function seen(e){var t=e.target;if(!t||t.tagName!=="SCRIPT"||String(t.src).indexOf('
		. json_encode( TCC_TIKTOK_SCRIPT, JSON_UNESCAPED_SLASHES ) . ')<0)return;'
		. 'if(e.type==="load"){w.state="loaded";}else if(w.state!=="loaded"){w.state="failed";}'
		. 'w.listeners.slice().forEach(function(f){f();});}'
		. 'd.addEventListener("load",seen,true);d.addEventListener("error",seen,true);})(document);';
}

/**
 * The receipt for one order's browser purchase event, or null when it cannot be sent (no
 * /collect address, no shop domain, an event id /collect would refuse).
 *
 * @param string      $collect_url From tcc_collect_url().
 * @param string|null $shop        From tcc_shop_domain().
 * @param string      $event_id    The order id, the purchase event's event_id.
 * @return array|null { collectUrl, shop, eventId, waitMs }
 */
function tcc_receipt( string $collect_url, ?string $shop, string $event_id ): ?array {
	if ( '' === $collect_url || null === $shop || '' === $shop || 1 !== preg_match( TCC_EVENT_ID, $event_id ) ) {
		return null;
	}
	return array(
		'collectUrl' => $collect_url,
		'shop'       => $shop,
		'eventId'    => $event_id,
		'waitMs'     => TCC_RECEIPT_WAIT_MS,
	);
}

/**
 * The JavaScript that reports the receipt to the connector, printed after tcc_pixel_script():
 * when the page has a TikTok pixel (window.ttq) and the watch script ran, it sends
 * {shop, receipt: "reported" | "blocked", event_id, pixel: "tiktok"} once, as text/plain
 * (no CORS preflight) with keepalive, so leaving the page does not cancel it.
 *
 * @param array $receipt From tcc_receipt().
 * @return string
 */
function tcc_receipt_script( array $receipt ): string {
	$flags = JSON_HEX_TAG | JSON_HEX_AMP | JSON_HEX_APOS | JSON_HEX_QUOT
		| JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE;
	return '(function(w,c){var watch=w.tccPixelWatch;'
		. 'if(!w.ttq||typeof w.ttq.track!=="function"||!watch||typeof w.fetch!=="function")return;'
		. 'var done=false;function send(outcome){if(done)return;done=true;'
		. 'w.fetch(c.collectUrl,{method:"POST",mode:"no-cors",keepalive:true,credentials:"omit",'
		. 'body:JSON.stringify({shop:c.shop,receipt:outcome,event_id:c.eventId,pixel:"tiktok"})})'
		. '.catch(function(){});}'
		. 'function decide(){if(watch.state==="loaded"){send("reported");}'
		. 'else if(watch.state==="failed"){send("blocked");}}'
		. 'watch.listeners.push(decide);decide();'
		. 'w.setTimeout(function(){send("blocked");},c.waitMs);})(window,'
		. json_encode( $receipt, $flags ) . ');';
}

