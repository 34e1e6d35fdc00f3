//! The browser node in a real Chromium against a real `native-node`
//! bootstrap, through the same JavaScript API the page uses.
//!
//! `tests/browser/run.mjs` (run by `scripts/test.sh`) starts the bootstrap, a
//! native listener and a native writer, then runs these tests with their
//! coordinates in the environment at compile time:
//!
//! - `NS_DHT_TEST_BOOTSTRAP`: the bootstrap's addresses, comma-separated;
//! - `NS_DHT_TEST_HTTP`: its HTTP base URL (`/api/record` reads through it);
//! - `NS_DHT_TEST_NATIVE_KEY`, `NS_DHT_TEST_NATIVE_VALUE`: a record a native
//!   node wrote;
//! - `NS_DHT_TEST_NAMESPACE`, `NS_DHT_TEST_LISTENER`: a native listener.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use wasm_node::DhtNode;

wasm_bindgen_test_configure!(run_in_browser);

fn env(value: Option<&'static str>, name: &str) -> &'static str {
    value.unwrap_or_else(|| {
        panic!("{name} is not set: run the browser tests through tests/browser/run.mjs")
    })
}

fn bootstrap() -> Array {
    env(
        option_env!("NS_DHT_TEST_BOOTSTRAP"),
        "NS_DHT_TEST_BOOTSTRAP",
    )
    .split(',')
    .map(JsValue::from_str)
    .collect()
}

fn options(transport: Option<&str>) -> JsValue {
    let options = js_sys::Object::new();
    Reflect::set(&options, &"bootstrap".into(), &bootstrap()).unwrap();
    // Each test is its own tab, with its own identity.
    Reflect::set(&options, &"ephemeral".into(), &JsValue::TRUE).unwrap();
    if let Some(transport) = transport {
        let list: Array = [JsValue::from_str(transport)].into_iter().collect();
        Reflect::set(&options, &"transports".into(), &list).unwrap();
    }
    options.into()
}

async fn start(transport: Option<&str>) -> DhtNode {
    match DhtNode::start(options(transport), None).await {
        Ok(node) => node,
        Err(error) => panic!("the tab could not join: {}", message(&error)),
    }
}

async fn call(promise: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

fn message(error: &JsValue) -> String {
    Reflect::get(error, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{error:?}"))
}

/// The stable code of a rejection: what the tests match, never the message.
fn code(error: &JsValue) -> String {
    field(error, "code")
        .as_string()
        .unwrap_or_else(|| panic!("an error without a code: {}", message(error)))
}

fn field(object: &JsValue, name: &str) -> JsValue {
    Reflect::get(object, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

/// The text of a `{ text }` or `{ base64 }` value, if it is text.
fn text(value: &JsValue) -> Option<String> {
    field(value, "text").as_string()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", js_sys::Math::random().to_bits())
}

/// What the native bootstrap finds under `key`, read over its HTTP API.
async fn native_lookup(key: &str) -> JsValue {
    let base = env(option_env!("NS_DHT_TEST_HTTP"), "NS_DHT_TEST_HTTP");
    let url = format!(
        "{base}api/record?key={}",
        String::from(js_sys::encode_uri_component(key))
    );
    let window = web_sys::window().expect("a window");
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str(&url))
        .await
        .expect("the bootstrap answers")
        .dyn_into()
        .expect("a response");
    JsFuture::from(response.json().expect("JSON body"))
        .await
        .expect("JSON")
}

#[wasm_bindgen_test]
async fn a_tab_joins_over_websocket() {
    let node = start(Some("websocket")).await;
    assert_eq!(node.transport().as_deref(), Some("websocket"));
    assert!(node.bootstrap_address().unwrap_or_default().contains("/ws"));
    let table = call(node.routing_table())
        .await
        .map_err(|e| message(&e))
        .expect("routing table");
    assert!(
        field(&table, "buckets")
            .dyn_into::<Array>()
            .expect("buckets")
            .length()
            > 0
    );
    call(node.stop()).await.expect("stops");
}

/// Waits `ms` milliseconds of browser time.
async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        let window = web_sys::window().expect("a window");
        window
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .expect("a timer");
    });
    JsFuture::from(promise).await.expect("the timer fires");
}

/// Polls `check` every 100 ms for up to 20 s; `Err` with the last thing
/// seen when it never passed.
async fn eventually(mut check: impl AsyncFnMut() -> Result<(), String>) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..200 {
        match check().await {
            Ok(()) => return Ok(()),
            Err(seen) => last = seen,
        }
        sleep(100).await;
    }
    Err(last)
}

/// A tab over WebSocket, once it serves through the bootstrap's relay.
async fn start_serving() -> DhtNode {
    let tab = start(Some("websocket")).await;
    eventually(async || match tab.serving() {
        true => Ok(()),
        false => Err("not serving".into()),
    })
    .await
    .expect("the tab serves through the relay");
    tab
}

/// `Ok` if `tab` holds the record under the text `key` for others, else
/// what it holds.
async fn holds_for_others(tab: &DhtNode, key: &str) -> Result<(), String> {
    let records: Array = call(tab.records())
        .await
        .map_err(|e| message(&e))?
        .dyn_into()
        .expect("an array");
    let held = records.iter().any(|r| {
        text(&field(&r, "key")).as_deref() == Some(key) && field(&r, "forOthers") == JsValue::TRUE
    });
    match held {
        true => Ok(()),
        false => Err(String::from(
            js_sys::JSON::stringify(&records).expect("JSON"),
        )),
    }
}

/// The peer id at the end of the first bootstrap address.
fn bootstrap_peer() -> String {
    let first = bootstrap().get(0).as_string().expect("an address");
    first
        .rsplit("/p2p/")
        .next()
        .expect("a /p2p/ suffix")
        .to_owned()
}

#[wasm_bindgen_test]
async fn a_tab_serves_through_its_bootstrap_and_holds_records_for_others() {
    let tab = start_serving().await;
    assert_eq!(tab.relays(), vec![bootstrap_peer()]);
    let report = call(tab.report()).await.expect("a report");
    assert_eq!(field(&report, "serving"), JsValue::TRUE);

    // Another tab finds the first through the DHT, at its circuit address.
    let other = start(Some("webrtc-direct")).await;
    let tab_id = tab.peer_id();
    let found = eventually(async || {
        let peers = call(other.closest_peers(tab_id.clone()))
            .await
            .map_err(|e| message(&e))?;
        let peers: Array = peers.dyn_into().expect("an array");
        let found = peers.iter().any(|p| {
            field(&p, "peerId").as_string().as_deref() == Some(tab_id.as_str())
                && field(&p, "addresses").dyn_into::<Array>().is_ok_and(|a| {
                    a.iter().any(|a| {
                        a.as_string().is_some_and(|a| {
                            a.contains("/p2p-circuit") && a.contains(&bootstrap_peer())
                        })
                    })
                })
        });
        match found {
            true => Ok(()),
            false => Err(String::from(js_sys::JSON::stringify(&peers).expect("JSON"))),
        }
    })
    .await;
    if let Err(seen) = found {
        panic!("the other tab does not find the first at a circuit address; last lookup: {seen}");
    }

    // In a network this small the serving tab is among the k closest to
    // any key: it stores what another node writes.
    let stored = call(other.put_immutable(unique("for others").into()))
        .await
        .map_err(|e| message(&e))
        .expect("put succeeds");
    let key = text(&field(&stored, "key")).expect("a text key");
    if let Err(records) = eventually(async || holds_for_others(&tab, &key).await).await {
        panic!("the serving tab does not hold the other's record: {records}");
    }
    call(other.stop()).await.expect("stops");
    call(tab.stop()).await.expect("stops");
}

/// Whether `holder` is closer to `key` than every other peer of `others`.
fn closest_of(key: &[u8], holder: &str, others: &[&str]) -> bool {
    use dht_core::libp2p::{PeerId, kad::KBucketKey};
    let target = KBucketKey::new(key.to_vec());
    let distance = |peer: &str| {
        let peer: PeerId = peer.parse().expect("a peer id");
        KBucketKey::from(peer).distance(&target)
    };
    others
        .iter()
        .all(|other| distance(holder) < distance(other))
}

/// A tab stores for others and answers a native node's read through the
/// relay: the writer (k = 1) puts a record whose closest peer is a serving
/// tab and stops, so that tab is the only holder left.
#[wasm_bindgen_test]
async fn a_native_node_reads_a_record_only_a_tab_holds() {
    let holder = start_serving().await;
    let writer_options = options(Some("webrtc-direct"));
    Reflect::set(&writer_options, &"replicationFactor".into(), &1.into()).unwrap();
    Reflect::set(&writer_options, &"serve".into(), &JsValue::FALSE).unwrap();
    let writer = DhtNode::start(writer_options, None)
        .await
        .unwrap_or_else(|e| panic!("the writer could not join: {}", message(&e)));

    // The native nodes of this network: the bootstrap and the listener.
    let natives = [
        bootstrap_peer(),
        env(option_env!("NS_DHT_TEST_LISTENER"), "NS_DHT_TEST_LISTENER").to_owned(),
    ];
    let natives: Vec<&str> = natives.iter().map(String::as_str).collect();
    let holder_id = holder.peer_id();
    let value = std::iter::repeat_with(|| unique("held by a tab"))
        .find(|value| {
            let key = dht_core::record::immutable_key(value.as_bytes());
            closest_of(&key, &holder_id, &natives)
        })
        .expect("half of all values qualify");
    let stored = call(writer.put_immutable(value.clone().into()))
        .await
        .map_err(|e| message(&e))
        .expect("the put succeeds");
    let key = text(&field(&stored, "key")).expect("a text key");
    if let Err(records) = eventually(async || holds_for_others(&holder, &key).await).await {
        panic!("the tab does not hold the record for the writer: {records}");
    }
    call(writer.stop()).await.expect("stops");

    let answer = native_lookup(&key).await;
    assert_eq!(field(&answer, "ok"), JsValue::TRUE, "{answer:?}");
    let record = field(&answer, "record");
    assert_eq!(text(&field(&record, "value")), Some(value));
    assert_eq!(field(&record, "foundLocally"), JsValue::FALSE);
    let found_at: Vec<String> = field(&record, "foundAt")
        .dyn_into::<Array>()
        .expect("an array")
        .iter()
        .filter_map(|p| p.as_string())
        .collect();
    assert_eq!(found_at, vec![holder_id], "only the tab held it");
    call(holder.stop()).await.expect("stops");
}

#[wasm_bindgen_test]
async fn a_tab_joins_over_webrtc_direct() {
    let node = start(Some("webrtc-direct")).await;
    assert_eq!(node.transport().as_deref(), Some("webrtc-direct"));
    assert!(
        node.bootstrap_address()
            .unwrap_or_default()
            .contains("/webrtc-direct/certhash/")
    );
    call(node.stop()).await.expect("stops");
}

#[wasm_bindgen_test]
async fn a_native_node_reads_what_a_tab_wrote() {
    let node = start(None).await;
    let name = unique("written-by-a-tab");
    let stored = call(node.put(name.clone(), "hello from the browser".into()))
        .await
        .map_err(|e| message(&e))
        .expect("put succeeds");
    let key = text(&field(&stored, "key")).expect("a text key");
    assert_eq!(key, format!("/ns-dht/m/{}/{name}", node.peer_id()));
    let answer = native_lookup(&key).await;
    assert_eq!(field(&answer, "ok"), JsValue::TRUE, "{answer:?}");
    let record = field(&answer, "record");
    assert_eq!(
        text(&field(&record, "value")).as_deref(),
        Some("hello from the browser")
    );
    // The native node checked the tab's signature, version included.
    assert_eq!(field(&record, "owner").as_string(), Some(node.peer_id()));
    assert_eq!(field(&record, "seq"), field(&stored, "seq"));
    call(node.stop()).await.expect("stops");
}

#[wasm_bindgen_test]
async fn a_tab_reads_what_a_native_node_wrote() {
    let node = start(None).await;
    let key = env(
        option_env!("NS_DHT_TEST_NATIVE_KEY"),
        "NS_DHT_TEST_NATIVE_KEY",
    );
    let value = env(
        option_env!("NS_DHT_TEST_NATIVE_VALUE"),
        "NS_DHT_TEST_NATIVE_VALUE",
    );
    let found = call(node.get(key.to_owned()))
        .await
        .map_err(|e| message(&e))
        .expect("the record is found");
    assert_eq!(text(&field(&found, "value")).as_deref(), Some(value));
    assert_eq!(
        field(&found, "foundLocally"),
        JsValue::FALSE,
        "it came from the network"
    );
    call(node.stop()).await.expect("stops");
}

#[wasm_bindgen_test]
async fn a_tab_discovers_a_native_listener_with_its_addresses() {
    let node = start(None).await;
    let namespace = env(
        option_env!("NS_DHT_TEST_NAMESPACE"),
        "NS_DHT_TEST_NAMESPACE",
    );
    let listener = env(option_env!("NS_DHT_TEST_LISTENER"), "NS_DHT_TEST_LISTENER");
    let members: Array = call(node.discover(namespace.to_owned()))
        .await
        .map_err(|e| message(&e))
        .expect("discovery works")
        .dyn_into()
        .expect("an array");
    let member = members
        .iter()
        .find(|m| field(m, "peerId").as_string().as_deref() == Some(listener))
        .unwrap_or_else(|| panic!("listener {listener} not among {members:?}"));
    let addresses = field(&member, "addresses")
        .dyn_into::<Array>()
        .expect("addresses");
    assert!(
        addresses.length() > 0,
        "no addresses for the listener: {:?}",
        js_sys::JSON::stringify(&member)
    );
    call(node.stop()).await.expect("stops");
}

#[wasm_bindgen_test]
async fn two_tabs_find_each_others_registrations() {
    let (first, second) = (
        start(Some("websocket")).await,
        start(Some("webrtc-direct")).await,
    );
    let namespace = unique("tabs");
    call(first.register(namespace.clone()))
        .await
        .map_err(|e| message(&e))
        .expect("first registers");
    call(second.register(namespace.clone()))
        .await
        .map_err(|e| message(&e))
        .expect("second registers");
    for (seeker, other) in [(&first, &second), (&second, &first)] {
        let members: Array = call(seeker.discover(namespace.clone()))
            .await
            .map_err(|e| message(&e))
            .expect("discovery works")
            .dyn_into()
            .expect("an array");
        let ids: Vec<String> = members
            .iter()
            .filter_map(|m| field(&m, "peerId").as_string())
            .collect();
        assert_eq!(
            ids,
            vec![other.peer_id()],
            "each tab finds the other (and not itself): {:?}",
            js_sys::JSON::stringify(&members)
        );
    }
    call(first.stop()).await.expect("stops");
    call(second.stop()).await.expect("stops");
}

#[wasm_bindgen_test]
async fn bytes_that_are_not_text_come_back_exactly() {
    let node = start(None).await;
    let bytes = js_sys::Uint8Array::from(&[0xff_u8, 0x0a, 0x00][..]);
    let stored = call(node.put_immutable(bytes.into()))
        .await
        .map_err(|e| message(&e))
        .expect("put succeeds");
    // The key names the content: the SHA-256 of ff 0a 00.
    let key = text(&field(&stored, "key")).expect("a text key");
    assert_eq!(
        key,
        "/ns-dht/i/012e4089a992fc6160c0ce888ab59d200d8a480811d1d7f40bec704f61c59861"
    );
    let found = call(node.get(key))
        .await
        .map_err(|e| message(&e))
        .expect("found");
    let value = field(&found, "value");
    assert_eq!(text(&value), None);
    assert_eq!(field(&value, "base64").as_string().as_deref(), Some("/woA"));
    call(node.stop()).await.expect("stops");
}

#[wasm_bindgen_test]
async fn bad_input_rejects_with_a_code() {
    let bad = js_sys::Object::new();
    let list: Array = [JsValue::from_str("/ip4/not-an-address")]
        .into_iter()
        .collect();
    Reflect::set(&bad, &"bootstrap".into(), &list).unwrap();
    let error = DhtNode::start(bad.into(), None).await.expect_err("refused");
    assert_eq!(code(&error), "bad-address");

    let tcp_only = js_sys::Object::new();
    let list: Array = [JsValue::from_str(
        "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWEPTK1qWbbdU13mQGfXcFZ1RYofvEFje7quTUWHvhGKC6",
    )]
    .into_iter()
    .collect();
    Reflect::set(&tcp_only, &"bootstrap".into(), &list).unwrap();
    let error = DhtNode::start(tcp_only.into(), None)
        .await
        .expect_err("refused");
    assert_eq!(code(&error), "no-browser-address");

    let node = start(None).await;
    let too_big = "x".repeat(70_000);
    let error = call(node.put("big".into(), too_big.into()))
        .await
        .expect_err("refused");
    assert_eq!(code(&error), "value-too-large");
    let error = call(node.put("number".into(), 7.into()))
        .await
        .expect_err("refused");
    assert_eq!(code(&error), "bad-value");
    let error = call(node.get(format!("/ns-dht/i/{}", "0".repeat(64))))
        .await
        .expect_err("not found");
    assert_eq!(code(&error), "not-found");
    let error = call(node.get(unique("unsigned")))
        .await
        .expect_err("refused");
    assert_eq!(code(&error), "unknown-record-kind");
    let error = call(node.put(String::new(), "v".into()))
        .await
        .expect_err("refused");
    assert_eq!(code(&error), "bad-record-name");
    let error = call(node.register(String::new()))
        .await
        .expect_err("refused");
    assert_eq!(code(&error), "empty-namespace");
    call(node.stop()).await.expect("stops");
}
