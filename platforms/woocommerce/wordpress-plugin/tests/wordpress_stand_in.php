<?php
/**
 * Runs the plugin's main file, hooks and all, on a stand-in for the few WordPress and
 * WooCommerce functions it calls, for one shopper: `php tests/wordpress_stand_in.php '<json>'`.
 *
 * The scenario (JSON): consent (null: no WP Consent API; else {"marketing": bool,
 * "statistics": bool}), sale_of_data (what the tcc_sale_of_data_consent filter answers, or
 * null), collect_url and home_url (the options and site address), cookies, and order {id,
 * total, currency, paid, items}. It checks out (the classic checkout's
 * woocommerce_checkout_create_order action), then shows the thank-you page (wp_head, then
 * woocommerce_thankyou), and prints JSON: {"meta": the order meta written, "head": what wp_head
 * printed, "thankyou": what woocommerce_thankyou printed}.
 * tests/platforms/woocommerce/test_wordpress_plugin_consent.py runs it; the head and thank-you
 * HTML are what its browser test serves as the thank-you page.
 *
 * @package TikTokClickCapture
 */

define( 'ABSPATH', __DIR__ . '/' );

$tcc_scenario = json_decode( $argv[1], true );
$tcc_hooks    = array();
$tcc_options  = array(
	'tcc_collect_url'    => $tcc_scenario['collect_url'] ?? false,
	'tcc_purchase_event' => $tcc_scenario['purchase_event'] ?? false,
);

if ( null !== $tcc_scenario['consent'] ) {
	/**
	 * The WP Consent API's check, as a consent plugin answers it for this shopper.
	 *
	 * @param string $category A consent category.
	 */
	function wp_has_consent( string $category ): bool {
		global $tcc_scenario;
		return (bool) ( $tcc_scenario['consent'][ $category ] ?? false );
	}
}

/**
 * WordPress's add_action / add_filter: kept per hook, in priority order.
 *
 * @param string   $hook     Hook name.
 * @param callable $callback What runs.
 * @param int      $priority Lower runs first.
 */
function add_filter( string $hook, $callback, int $priority = 10 ): void {
	global $tcc_hooks;
	$tcc_hooks[ $hook ][ $priority ][] = $callback;
}

/**
 * See add_filter().
 *
 * @param string   $hook     Hook name.
 * @param callable $callback What runs.
 * @param int      $priority Lower runs first.
 */
function add_action( string $hook, $callback, int $priority = 10 ): void {
	add_filter( $hook, $callback, $priority );
}

/**
 * Runs a hook's callbacks.
 *
 * @param string $hook Hook name.
 * @param mixed  ...$args Arguments.
 */
function do_action( string $hook, ...$args ): void {
	global $tcc_hooks;
	$callbacks = $tcc_hooks[ $hook ] ?? array();
	ksort( $callbacks );
	foreach ( $callbacks as $at_priority ) {
		foreach ( $at_priority as $callback ) {
			$callback( ...$args );
		}
	}
}

/**
 * The filter this stand-in answers: tcc_sale_of_data_consent from the scenario; others keep
 * their value.
 *
 * @param string $hook  Hook name.
 * @param mixed  $value The value filtered.
 * @return mixed
 */
function apply_filters( string $hook, $value ) {
	global $tcc_scenario;
	if ( 'tcc_sale_of_data_consent' === $hook ) {
		return $tcc_scenario['sale_of_data'] ?? $value;
	}
	return $value;
}

/**
 * WordPress's plugin_basename().
 *
 * @param string $file A plugin file.
 */
function plugin_basename( string $file ): string {
	return basename( dirname( $file ) ) . '/' . basename( $file );
}

/**
 * An option of the scenario.
 *
 * @param string $name Option name.
 * @return mixed
 */
function get_option( string $name ) {
	global $tcc_options;
	return $tcc_options[ $name ] ?? false;
}

/** The site's address. */
function home_url(): string {
	global $tcc_scenario;
	return $tcc_scenario['home_url'];
}

/** The stand-in shows the thank-you page. */
function is_order_received_page(): bool {
	return true;
}

/** The stand-in is no admin page. */
function is_admin(): bool {
	return false;
}

/**
 * Unslashing: the scenario's values are not slashed.
 *
 * @param mixed $value A value.
 * @return mixed
 */
function wp_unslash( $value ) {
	return $value;
}

/**
 * WordPress's wp_print_inline_script_tag().
 *
 * @param string $javascript The script.
 */
function wp_print_inline_script_tag( string $javascript ): void {
	echo "<script>\n" . $javascript . "\n</script>\n"; // phpcs:ignore WordPress.Security.EscapeOutput.OutputNotEscaped -- the plugin's own escaped JSON.
}

/** An order as WooCommerce's WC_Order CRUD shows it, enough for the plugin. */
class WC_Order {
	/**
	 * The scenario's order.
	 *
	 * @var array
	 */
	public $data;

	/**
	 * Meta written.
	 *
	 * @var array
	 */
	public $meta = array();

	/**
	 * The order.
	 *
	 * @param array $data The scenario's order.
	 */
	public function __construct( array $data ) {
		$this->data = $data;
	}

	/**
	 * Meta value, '' when absent.
	 *
	 * @param string $key Meta key.
	 */
	public function get_meta( string $key ) {
		return $this->meta[ $key ] ?? '';
	}

	/**
	 * Write one meta value.
	 *
	 * @param string $key   Meta key.
	 * @param mixed  $value Value.
	 */
	public function update_meta_data( string $key, $value ): void {
		$this->meta[ $key ] = $value;
	}

	/** Paid or not. */
	public function is_paid(): bool {
		return (bool) $this->data['paid'];
	}

	/** Order id. */
	public function get_id(): int {
		return (int) $this->data['id'];
	}

	/** Total. */
	public function get_total(): string {
		return (string) $this->data['total'];
	}

	/** Currency. */
	public function get_currency(): string {
		return (string) $this->data['currency'];
	}

	/** Line items. */
	public function get_items(): array {
		return array_map(
			static function ( $item ) {
				return new WC_Order_Item_Product( $item );
			},
			$this->data['items']
		);
	}

	/**
	 * A line's unit price.
	 *
	 * @param WC_Order_Item_Product $item The line.
	 */
	public function get_item_subtotal( $item ): float {
		return (float) $item->data['price'];
	}
}

/** A line item. */
class WC_Order_Item_Product {
	/**
	 * The scenario's line.
	 *
	 * @var array
	 */
	public $data;

	/**
	 * The line.
	 *
	 * @param array $data The scenario's line.
	 */
	public function __construct( array $data ) {
		$this->data = $data;
	}

	/** Product id. */
	public function get_product_id(): int {
		return (int) $this->data['product_id'];
	}

	/** Variation id. */
	public function get_variation_id(): int {
		return (int) $this->data['variation_id'];
	}

	/** Name. */
	public function get_name(): string {
		return (string) $this->data['name'];
	}

	/** Quantity. */
	public function get_quantity(): int {
		return (int) $this->data['quantity'];
	}
}

$tcc_order = new WC_Order( $tcc_scenario['order'] );

/**
 * WooCommerce's wc_get_order(), for the scenario's one order.
 *
 * @param int $id Order id.
 */
function wc_get_order( $id ) {
	global $tcc_order;
	return $tcc_order->get_id() === (int) $id ? $tcc_order : false;
}

require __DIR__ . '/../tiktok-click-capture/tiktok-click-capture.php';

$_COOKIE = $tcc_scenario['cookies'] ?? array();
do_action( 'woocommerce_checkout_create_order', $tcc_order );

ob_start();
do_action( 'wp_head' );
$tcc_head = ob_get_clean();
ob_start();
do_action( 'woocommerce_thankyou', $tcc_order->get_id() );
$tcc_thankyou = ob_get_clean();

echo json_encode(
	array(
		'meta'     => (object) $tcc_order->meta,
		'head'     => $tcc_head,
		'thankyou' => $tcc_thankyou,
	),
	JSON_UNESCAPED_SLASHES
);
