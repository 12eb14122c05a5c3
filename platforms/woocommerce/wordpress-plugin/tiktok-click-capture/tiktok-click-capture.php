<?php
/**
 * Plugin Name:          TikTok Click Capture (Conversion Connector)
 * Description:          Keeps the ad click ids (TikTok's ttclid, Meta's fbclid, Google's gclid, gbraid and wbraid) and the ad pixels' cookies (_ttp, _fbc, _fbp) with each WooCommerce order, as order meta the conversion connector sends to the ad platforms' conversion APIs, and fires the TikTok pixel's purchase event with the order id as event_id, so TikTok counts the purchase once.
 * Version:              0.2.0
 * Requires at least:    6.0
 * Requires PHP:         7.4
 * Requires Plugins:     woocommerce
 * WC requires at least: 8.0
 * License:              MIT
 * Text Domain:          tiktok-click-capture
 *
 * Why: the connector receives orders through WooCommerce webhooks, which know nothing of the
 * shopper's browser. The ad click ids in the landing URL (ttclid, fbclid, gclid, gbraid,
 * wbraid) and the pixels' cookies (_ttp, _fbc, _fbp) are what the ad platforms attribute a
 * purchase with, so this plugin puts them on the order at checkout, where the webhook's
 * `meta_data` carries them. Hooks used:
 * - `init`: remember each click id of the landing URL in a first-party cookie (tcc_<name>)
 *   for seven days;
 * - `woocommerce_checkout_create_order` (classic checkout, before the order is saved) and
 *   `woocommerce_store_api_checkout_update_order_from_request` (checkout block / Store API,
 *   followed by `$order->save()` in WooCommerce's Checkout route): copy both into order meta;
 * - `woocommerce_thankyou`: fire the pixel's purchase event for a paid order, and report to
 *   the connector's POST /collect whether TikTok's pixel script loaded ("reported") or not
 *   ("blocked"): the pixel receipt, which tells a purchase the browser also reported from one
 *   only the server delivered. It needs the connector's /collect address (Settings → General);
 *   `wp_head` notes the script's load or error early on that page;
 * - consent: when a consent plugin provides the WP Consent API, the shopper's marketing and
 *   statistics consent at checkout go on the order (`_tcc_consent_*`), for the connector's
 *   consent policy; the plugin declares itself to the API (wp_consent_api_registered_<plugin>).
 *
 * @package TikTokClickCapture
 */

defined( 'ABSPATH' ) || exit;

require_once __DIR__ . '/includes/functions.php';

/** The option holding the purchase event name (Settings → General). */
const TCC_EVENT_OPTION = 'tcc_purchase_event';

/** The option holding the connector's POST /collect address (Settings → General). */
const TCC_COLLECT_OPTION = 'tcc_collect_url';

add_action( 'init', 'tcc_remember_click_ids' );
add_action( 'woocommerce_checkout_create_order', 'tcc_add_click_ids_to_order', 10, 1 );
add_action( 'woocommerce_store_api_checkout_update_order_from_request', 'tcc_add_click_ids_to_order', 10, 1 );
add_action( 'woocommerce_checkout_create_order', 'tcc_add_consent_to_order', 10, 1 );
add_action( 'woocommerce_store_api_checkout_update_order_from_request', 'tcc_add_consent_to_order', 10, 1 );
add_action( 'woocommerce_thankyou', 'tcc_print_purchase_event', 20, 1 );
add_action( 'wp_head', 'tcc_print_pixel_watch', 1 );
add_filter( 'wp_consent_api_registered_' . plugin_basename( __FILE__ ), '__return_true' );
add_action( 'admin_init', 'tcc_register_setting' );
add_action( 'before_woocommerce_init', 'tcc_declare_compatibility' );

/**
 * Keep the landing URL's click ids in our cookies, so they are still known when the shopper
 * pays, pages and days later. A consent plugin can refuse them with the
 * `tcc_may_store_click_ids` filter.
 */
function tcc_remember_click_ids(): void {
	if ( is_admin() || headers_sent() || ! apply_filters( 'tcc_may_store_click_ids', true ) ) {
		return;
	}
	$cookies = tcc_click_id_cookies( wp_unslash( $_GET ) ); // phpcs:ignore WordPress.Security.NonceVerification.Recommended -- a landing page, no form.
	foreach ( $cookies as $name => $value ) {
		setcookie( $name, $value, tcc_cookie_options( time(), is_ssl() ) );
		$_COOKIE[ $name ] = wp_slash( $value ); // A checkout in this same request sees it.
	}
}

/**
 * Copy the click ids into the order's meta, without replacing ones already there.
 *
 * @param WC_Order $order The order being created; WooCommerce saves it after this hook.
 */
function tcc_add_click_ids_to_order( $order ): void {
	if ( ! apply_filters( 'tcc_may_store_click_ids', true ) ) {
		return;
	}
	foreach ( tcc_click_id_meta( wp_unslash( $_COOKIE ) ) as $key => $value ) {
		if ( '' === (string) $order->get_meta( $key ) ) {
			$order->update_meta_data( $key, $value );
		}
	}
}

/**
 * Put the shopper's consent at checkout on the order, replacing what an earlier checkout
 * attempt wrote (the latest choice counts). Only with the WP Consent API: without it, nothing
 * is written and the connector knows the consent as unknown.
 *
 * @param WC_Order $order The order being created; WooCommerce saves it after this hook.
 */
function tcc_add_consent_to_order( $order ): void {
	$present = function_exists( 'wp_has_consent' );
	$meta    = tcc_consent_meta(
		$present,
		$present ? (bool) wp_has_consent( 'marketing' ) : null,
		$present ? (bool) wp_has_consent( 'statistics' ) : null,
		// The WP Consent API has no sale-of-data category: a site that records the shopper's
		// opt-out (CCPA "Do Not Sell") returns "granted" or "denied" here.
		$present ? apply_filters( 'tcc_sale_of_data_consent', null, $order ) : null
	);
	foreach ( $meta as $key => $value ) {
		$order->update_meta_data( $key, $value );
	}
}

/**
 * Whether marketing consent is known to be refused: then the TikTok pixel is held back by the
 * consent plugin, and a "blocked" receipt would blame an ad blocker for the shopper's choice.
 */
function tcc_marketing_refused(): bool {
	return function_exists( 'wp_has_consent' ) && ! wp_has_consent( 'marketing' );
}

/** Early in the thank-you page's head: note whether TikTok's pixel script loads or fails. */
function tcc_print_pixel_watch(): void {
	if ( ! function_exists( 'is_order_received_page' ) || ! is_order_received_page() ) {
		return;
	}
	if ( '' === tcc_collect_url( get_option( TCC_COLLECT_OPTION ) ) || tcc_marketing_refused() ) {
		return;
	}
	wp_print_inline_script_tag( tcc_pixel_watch_script() );
}

/**
 * On the thank-you page of a paid order, fire the pixel's purchase event with the order id as
 * event_id, then report the pixel receipt for it. Unpaid orders (bank transfer, cheque:
 * on-hold) fire nothing, as the connector sends nothing for them until they are paid; its
 * server event then carries the click ids.
 *
 * @param int $order_id The order shown.
 */
function tcc_print_purchase_event( $order_id ): void {
	$order = wc_get_order( $order_id );
	if ( ! $order instanceof WC_Order || ! $order->is_paid() ) {
		return;
	}
	$event = tcc_purchase_event( tcc_order_data( $order ), tcc_event_name( get_option( TCC_EVENT_OPTION ) ) );
	wp_print_inline_script_tag( tcc_pixel_script( $event ) );
	$receipt = tcc_receipt(
		tcc_collect_url( get_option( TCC_COLLECT_OPTION ) ),
		tcc_shop_domain( home_url() ),
		$event['options']['event_id']
	);
	if ( null !== $receipt && ! tcc_marketing_refused() ) {
		wp_print_inline_script_tag( tcc_receipt_script( $receipt ) );
	}
}

/**
 * The plain data tcc_purchase_event() needs from an order.
 *
 * @param WC_Order $order The order.
 * @return array
 */
function tcc_order_data( WC_Order $order ): array {
	$items = array();
	foreach ( $order->get_items() as $item ) {
		$items[] = array(
			'product_id'   => $item->get_product_id(),
			'variation_id' => $item->get_variation_id(),
			'name'         => $item->get_name(),
			'quantity'     => $item->get_quantity(),
			'price'        => $order->get_item_subtotal( $item, false, false ),
		);
	}
	return array(
		'id'       => $order->get_id(),
		'total'    => $order->get_total(),
		'currency' => $order->get_currency(),
		'items'    => $items,
	);
}

/** The purchase event name, under Settings → General; it must match the connector's. */
function tcc_register_setting(): void {
	register_setting(
		'general',
		TCC_EVENT_OPTION,
		array(
			'type'              => 'string',
			'default'           => TCC_DEFAULT_EVENT,
			'sanitize_callback' => 'tcc_event_name',
		)
	);
	add_settings_field( TCC_EVENT_OPTION, __( 'TikTok purchase event', 'tiktok-click-capture' ), 'tcc_render_event_field', 'general' );
	register_setting(
		'general',
		TCC_COLLECT_OPTION,
		array(
			'type'              => 'string',
			'default'           => '',
			'sanitize_callback' => 'tcc_collect_url',
		)
	);
	add_settings_field( TCC_COLLECT_OPTION, __( 'Conversion connector /collect address', 'tiktok-click-capture' ), 'tcc_render_collect_field', 'general' );
}

/** The /collect address field: empty sends no pixel receipts. */
function tcc_render_collect_field(): void {
	printf(
		'<input type="url" class="regular-text code" name="%1$s" id="%1$s" value="%2$s" placeholder="https://connector.example.com/collect">',
		esc_attr( TCC_COLLECT_OPTION ),
		esc_attr( tcc_collect_url( get_option( TCC_COLLECT_OPTION ) ) )
	);
	echo '<p class="description">'
		. esc_html__( 'The connector\'s address followed by /collect. With it, the thank-you page tells the connector whether the TikTok pixel loaded, so it can show which purchases only the server reported. Empty: no such reports.', 'tiktok-click-capture' )
		. '</p>';
}

/** The setting's select box. */
function tcc_render_event_field(): void {
	$current = tcc_event_name( get_option( TCC_EVENT_OPTION ) );
	echo '<select name="' . esc_attr( TCC_EVENT_OPTION ) . '" id="' . esc_attr( TCC_EVENT_OPTION ) . '">';
	foreach ( TCC_EVENT_NAMES as $name ) {
		printf( '<option value="%1$s"%2$s>%1$s</option>', esc_attr( $name ), selected( $name, $current, false ) );
	}
	echo '</select><p class="description">'
		. esc_html__( 'The same name as the connector sends (connector tiktok set --purchase-event).', 'tiktok-click-capture' )
		. '</p>';
}

/** It uses only WooCommerce's order CRUD, so it works with HPOS and the checkout block. */
function tcc_declare_compatibility(): void {
	if ( class_exists( \Automattic\WooCommerce\Utilities\FeaturesUtil::class ) ) {
		\Automattic\WooCommerce\Utilities\FeaturesUtil::declare_compatibility( 'custom_order_tables', __FILE__, true );
		\Automattic\WooCommerce\Utilities\FeaturesUtil::declare_compatibility( 'cart_checkout_blocks', __FILE__, true );
	}
}
