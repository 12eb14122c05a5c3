<?php
/**
 * The pure functions of TikTok Click Capture: no WordPress or WooCommerce calls, so
 * tests/test_functions.php runs them with plain `php`.
 *
 * Click ids are kept as sent (only trimmed), like the connector's own connector/clicks.py:
 * TikTok matches them byte for byte. A value that cannot be a click id (empty, over 500 bytes,
 * control characters, invalid UTF-8) is dropped rather than "cleaned".
 *
 * @package TikTokClickCapture
 */

defined( 'ABSPATH' ) || exit;

/** Our first-party cookie for the ttclid of the ad click that brought the shopper. */
const TCC_TTCLID_COOKIE = 'tcc_ttclid';

/** The TikTok pixel's own first-party cookie; the pixel sets and renews it. */
const TCC_TTP_COOKIE = '_ttp';

/** Seven days: TikTok's default click-through attribution window. */
const TCC_TTCLID_LIFETIME = 7 * 24 * 60 * 60;

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
 * The order meta to add at checkout: `_ttclid` and `_ttp`, each only when its cookie holds a
 * usable value. The connector reads these keys from the order's `meta_data`.
 *
 * @param array $cookies The request's cookies, unslashed.
 * @return array<string, string> Meta key => value.
 */
function tcc_click_id_meta( array $cookies ): array {
	$meta = array(
		'_ttclid' => tcc_clean_click_id( $cookies[ TCC_TTCLID_COOKIE ] ?? null ),
		'_ttp'    => tcc_clean_click_id( $cookies[ TCC_TTP_COOKIE ] ?? null ),
	);
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
