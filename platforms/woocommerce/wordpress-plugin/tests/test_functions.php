<?php
/**
 * Plain-PHP tests of the plugin's pure functions: `php tests/test_functions.php`.
 * Prints each failure and a closing "N passed, N failed" line; exits 1 when anything failed.
 * tests/platforms/woocommerce/test_wordpress_plugin.py runs it under pytest.
 *
 * @package TikTokClickCapture
 */

define( 'ABSPATH', __DIR__ . '/' );
require __DIR__ . '/../tiktok-click-capture/includes/functions.php';

$tcc_results = array(
	'passed' => 0,
	'failed' => 0,
);

/**
 * Record one check: identical (===) or a failure with both values.
 *
 * @param string $name     What is checked.
 * @param mixed  $actual   What the code gave.
 * @param mixed  $expected What it must give.
 */
function check( string $name, $actual, $expected ): void {
	global $tcc_results;
	if ( $actual === $expected ) {
		++$tcc_results['passed'];
		return;
	}
	++$tcc_results['failed'];
	fwrite( STDERR, "FAIL {$name}\n  expected: " . var_export( $expected, true ) . "\n  actual:   " . var_export( $actual, true ) . "\n" );
}

// -- ttclid from the landing URL -------------------------------------------------------------

$ttclid = 'E.C.P.CqgBvN3xY8kLm2Qw8vR7yZ3nA4sF6hJ1uP0tG5bW';
check( 'ttclid as sent', tcc_ttclid_from_query( array( 'ttclid' => $ttclid, 'utm_source' => 'tiktok' ) ), $ttclid );
check( 'ttclid trimmed', tcc_ttclid_from_query( array( 'ttclid' => "  {$ttclid}\n" ) ), $ttclid );
check( 'no ttclid', tcc_ttclid_from_query( array( 'utm_source' => 'tiktok' ) ), null );
check( 'empty ttclid', tcc_ttclid_from_query( array( 'ttclid' => '   ' ) ), null );
check( 'ttclid[]= is not a click id', tcc_ttclid_from_query( array( 'ttclid' => array( $ttclid ) ) ), null );
check( '500 bytes are accepted', tcc_ttclid_from_query( array( 'ttclid' => str_repeat( 'a', 500 ) ) ), str_repeat( 'a', 500 ) );
check( '501 bytes are refused', tcc_ttclid_from_query( array( 'ttclid' => str_repeat( 'a', 501 ) ) ), null );
check( 'a control character inside is refused', tcc_clean_click_id( "E.C.P.a\nb" ), null );
check( 'DEL is refused', tcc_clean_click_id( "E.C.P.a\x7Fb" ), null );
check( 'invalid UTF-8 is refused', tcc_clean_click_id( "E.C.P.\xFF" ), null );
check( 'no clean-up of other characters', tcc_clean_click_id( 'a+b/c=d%20' ), 'a+b/c=d%20' );
check( 'a number is not a click id', tcc_clean_click_id( 12345 ), null );

// -- cookies -----------------------------------------------------------------------------------

check(
	'cookie options',
	tcc_cookie_options( 1700000000, true ),
	array(
		'expires'  => 1700000000 + 604800,
		'path'     => '/',
		'secure'   => true,
		'httponly' => true,
		'samesite' => 'Lax',
	)
);
check( 'cookie not secure over http', tcc_cookie_options( 0, false )['secure'], false );
check(
	'both click ids become order meta',
	tcc_click_id_meta( array( 'tcc_ttclid' => $ttclid, '_ttp' => ' 2gKx7TqW4mZr9LbVn3PcY8sHdJf ', 'other' => 'x' ) ),
	array(
		'_ttclid' => $ttclid,
		'_ttp'    => '2gKx7TqW4mZr9LbVn3PcY8sHdJf',
	)
);
check( 'only _ttp', tcc_click_id_meta( array( '_ttp' => 'ttp-value' ) ), array( '_ttp' => 'ttp-value' ) );
check( 'unusable cookies give no meta', tcc_click_id_meta( array( 'tcc_ttclid' => "\x00", '_ttp' => '' ) ), array() );

// -- every ad platform's click ids and cookies -------------------------------------------------

$fbclid  = 'IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk';
$fbc     = "fb.1.1554763741205.{$fbclid}";
$fbp     = 'fb.1.1596403881668.1116446470';
$landing = array(
	'utm_source' => 'ads',
	'ttclid'     => $ttclid,
	'fbclid'     => " {$fbclid} ",
	'gclid'      => 'Cj0KCQiA5NSdBhDfARIsALzs2EDw',
	'gbraid'     => '0AAAAAoK1kZx9gbraid',
	'wbraid'     => 'CjkKCQiA5NSdBhDfwbraid',
);
check(
	'every landing-URL click id gets our cookie',
	tcc_click_id_cookies( $landing ),
	array(
		'tcc_ttclid' => $ttclid,
		'tcc_fbclid' => $fbclid,
		'tcc_gclid'  => 'Cj0KCQiA5NSdBhDfARIsALzs2EDw',
		'tcc_gbraid' => '0AAAAAoK1kZx9gbraid',
		'tcc_wbraid' => 'CjkKCQiA5NSdBhDfwbraid',
	)
);
check( 'only the parameters present', tcc_click_id_cookies( array( 'gclid' => 'g1', 'fbclid' => '' ) ), array( 'tcc_gclid' => 'g1' ) );
check( 'no click id, no cookie', tcc_click_id_cookies( array( 'GCLID' => 'x', 'fbclid' => array( 'x' ) ) ), array() );
check( 'the ttclid cookie keeps its name', tcc_click_id_cookies( array( 'ttclid' => $ttclid ) ), array( TCC_TTCLID_COOKIE => $ttclid ) );
check(
	'every click id and pixel cookie becomes order meta',
	tcc_click_id_meta(
		array_merge(
			tcc_click_id_cookies( $landing ),
			array(
				'_ttp'  => 'ttp-value',
				'_fbc'  => " {$fbc} ",
				'_fbp'  => $fbp,
				'other' => 'x',
			)
		)
	),
	array(
		'_ttclid' => $ttclid,
		'_fbclid' => $fbclid,
		'_gclid'  => 'Cj0KCQiA5NSdBhDfARIsALzs2EDw',
		'_gbraid' => '0AAAAAoK1kZx9gbraid',
		'_wbraid' => 'CjkKCQiA5NSdBhDfwbraid',
		'_ttp'    => 'ttp-value',
		'_fbc'    => $fbc,
		'_fbp'    => $fbp,
	)
);
check( 'Meta cookies only in Meta\'s format', tcc_click_id_meta( array( '_fbc' => $fbclid, '_fbp' => 'fb.1.x.1' ) ), array() );
check( 'a Meta cookie with an appendix is kept', tcc_clean_pixel_cookie( '_fbp', "{$fbp}.AQEAAQMB" ), "{$fbp}.AQEAAQMB" );
check( 'a _ttp has no required format', tcc_clean_pixel_cookie( '_ttp', 'abc' ), 'abc' );

// -- the pixel event ---------------------------------------------------------------------------

check( 'configured event name', tcc_event_name( 'Purchase' ), 'Purchase' );
check( 'unknown event name falls back', tcc_event_name( 'Buy' ), 'CompletePayment' );
check( 'no option falls back', tcc_event_name( false ), 'CompletePayment' );

$order = array(
	'id'       => 1187,
	'total'    => '54.30',
	'currency' => 'usd',
	'items'    => array(
		array(
			'product_id'   => 22,
			'variation_id' => 23,
			'name'         => 'Ship Your Idea – Black, M',
			'quantity'     => 1,
			'price'        => '12',
		),
		array(
			'product_id'   => 93,
			'variation_id' => 0,
			'name'         => 'Woo Single #1',
			'quantity'     => 2,
			'price'        => 3.0,
		),
	),
);
$event = tcc_purchase_event( $order, 'Purchase' );
check( 'event name', $event['event'], 'Purchase' );
check( 'event_id is the order id as a string', $event['options'], array( 'event_id' => '1187' ) );
check( 'value and currency', array( $event['properties']['value'], $event['properties']['currency'] ), array( 54.3, 'USD' ) );
check( 'content type', $event['properties']['content_type'], 'product' );
check(
	'contents use the variation id, else the product id',
	$event['properties']['contents'],
	array(
		array(
			'content_id'   => '23',
			'content_name' => 'Ship Your Idea – Black, M',
			'quantity'     => 1,
			'price'        => 12.0,
		),
		array(
			'content_id'   => '93',
			'content_name' => 'Woo Single #1',
			'quantity'     => 2,
			'price'        => 3.0,
		),
	)
);
check( 'an unknown event name is not sent', tcc_purchase_event( $order, 'Buy' )['event'], 'CompletePayment' );

$script = tcc_pixel_script( $event );
check(
	'pixel call',
	$script,
	'if(window.ttq&&typeof window.ttq.track==="function"){window.ttq.track("Purchase",'
	. '{"value":54.3,"currency":"USD","content_type":"product","contents":['
	. '{"content_id":"23","content_name":"Ship Your Idea \u2013 Black, M","quantity":1,"price":12},'
	. '{"content_id":"93","content_name":"Woo Single #1","quantity":2,"price":3}]},'
	. '{"event_id":"1187"});}'
);
$order['items'][1]['name'] = '</script><script>alert("x")</script> & \'';
$hostile                   = tcc_pixel_script( tcc_purchase_event( $order, 'Purchase' ) );
check( 'a product name cannot close the script', strpos( $hostile, '</script>' ), false );
check( 'nor break out of the string', strpos( $hostile, '"x"' ) === false && strpos( $hostile, "'" ) === false, true );
check( 'invalid UTF-8 still gives a script', strpos( tcc_pixel_script( array( 'event' => "a\xFF", 'properties' => array(), 'options' => array() ) ), 'track("a' ) !== false, true );

// -- consent on the order ----------------------------------------------------------------------

check( 'no WP Consent API, no consent meta', tcc_consent_meta( false, null, null, null ), array() );
check(
	'granted',
	tcc_consent_meta( true, true, true, null ),
	array(
		'_tcc_consent_marketing' => 'granted',
		'_tcc_consent_analytics' => 'granted',
		'_tcc_consent_source'    => 'wp_consent_api',
	)
);
check(
	'denied',
	tcc_consent_meta( true, false, false, null ),
	array(
		'_tcc_consent_marketing' => 'denied',
		'_tcc_consent_analytics' => 'denied',
		'_tcc_consent_source'    => 'wp_consent_api',
	)
);
check(
	'sale of data opted out through the filter',
	tcc_consent_meta( true, true, true, 'denied' ),
	array(
		'_tcc_consent_marketing'    => 'granted',
		'_tcc_consent_analytics'    => 'granted',
		'_tcc_consent_sale_of_data' => 'denied',
		'_tcc_consent_source'       => 'wp_consent_api',
	)
);
check( 'sale of data granted through the filter', tcc_consent_meta( true, true, true, 'granted' )['_tcc_consent_sale_of_data'], 'granted' );
check( 'a filter answer that is not granted/denied is unknown', array_key_exists( '_tcc_consent_sale_of_data', tcc_consent_meta( true, true, true, 'yes' ) ), false );
check( 'a filter answering a boolean', tcc_consent_meta( true, true, true, false )['_tcc_consent_sale_of_data'], 'denied' );
check( 'nothing known, no source either', tcc_consent_meta( true, null, null, null ), array() );
check( 'consent values', array( tcc_consent_value( true ), tcc_consent_value( false ), tcc_consent_value( 'granted' ), tcc_consent_value( 'denied' ), tcc_consent_value( 1 ), tcc_consent_value( '' ) ), array( 'granted', 'denied', 'granted', 'denied', null, null ) );

// -- the pixel receipt -------------------------------------------------------------------------

check( 'collect address', tcc_collect_url( ' https://connector.example.com/collect ' ), 'https://connector.example.com/collect' );
check( 'http for a local connector', tcc_collect_url( 'http://127.0.0.1:8000/collect' ), 'http://127.0.0.1:8000/collect' );
check( 'not /collect', tcc_collect_url( 'https://connector.example.com/other' ), '' );
check( 'no scheme', tcc_collect_url( 'connector.example.com/collect' ), '' );
check( 'no quote in it', tcc_collect_url( 'https://c.example/"};alert(1);//collect' ), '' );
check( 'javascript: is refused', tcc_collect_url( 'javascript:alert(1)//collect' ), '' );
check( 'no option', tcc_collect_url( false ), '' );

check( 'shop domain', tcc_shop_domain( 'https://Shop.Example.com/' ), 'shop.example.com' );
check( 'shop domain with a port', tcc_shop_domain( 'http://localhost:8080' ), 'localhost:8080' );
check( 'shop in a folder', tcc_shop_domain( 'https://example.com/store/' ), 'example.com/store' );
check( 'not an address', tcc_shop_domain( 'example.com' ), null );

$receipt = tcc_receipt( 'https://connector.example.com/collect', 'shop.example.com', '1187' );
check(
	'receipt',
	$receipt,
	array(
		'collectUrl' => 'https://connector.example.com/collect',
		'shop'       => 'shop.example.com',
		'eventId'    => '1187',
		'waitMs'     => 5000,
	)
);
check( 'no address, no receipt', tcc_receipt( '', 'shop.example.com', '1187' ), null );
check( 'no shop, no receipt', tcc_receipt( 'https://c.example/collect', null, '1187' ), null );
check( 'an event id /collect refuses, no receipt', tcc_receipt( 'https://c.example/collect', 'shop.example.com', '11 87' ), null );
$receipt_script = tcc_receipt_script( $receipt );
check( 'the receipt carries its config', strpos( $receipt_script, '{"collectUrl":"https://connector.example.com/collect","shop":"shop.example.com","eventId":"1187","waitMs":5000}' ) !== false, true );
check( 'the receipt names the pixel', strpos( $receipt_script, 'pixel:"tiktok"' ) !== false, true );
$hostile_receipt = tcc_receipt_script( array_merge( $receipt, array( 'shop' => '</script><b>"x"' ) ) );
check( 'a value cannot close the receipt script', strpos( $hostile_receipt, '</script>' ), false );
check( 'the watch looks for TikTok\'s events.js', strpos( tcc_pixel_watch_script(), '"analytics.tiktok.com/i18n/pixel/events.js"' ) !== false, true );

printf( "%d passed, %d failed\n", $tcc_results['passed'], $tcc_results['failed'] );
exit( $tcc_results['failed'] > 0 ? 1 : 0 );
