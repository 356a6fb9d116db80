//! The stream client against a scripted server on a plain socket: what the real streaming service
//! cannot be made to do on demand — go silent without closing the connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::broadcast;
use vexil_sdk::{Client, Context, FlagChange, State, SyncEvent};

const KEY: &str = "vxs_000000000000_notarealsecretnotarealsecret00";

fn flag(on: bool) -> serde_json::Value {
    json!({"flag": {"key": "a", "kind": "boolean", "variations": [{"value": true}, {"value": false}]},
           "config": {"on": on, "off_variation": 1, "fallthrough": {"variation": 0}}})
}

/// Serves `/v1/stream`: the first connection sends a hydrate at revision 5 and then nothing at all; the
/// next ones send a patch at 7 and heartbeats every 100 ms. `/v1/flags` answers 503. Every request's
/// head is recorded.
fn scripted_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = requests.clone();
    std::thread::spawn(move || {
        let mut streams = 0;
        for connection in listener.incoming() {
            let Ok(connection) = connection else { return };
            let head = read_head(&connection);
            recorded.lock().unwrap().push(head.clone());
            if head.starts_with("GET /v1/stream") {
                streams += 1;
                let first = streams == 1;
                std::thread::spawn(move || serve_stream(connection, first));
            } else {
                let _ =
                    (&connection).write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
            }
        }
    });
    (url, requests)
}

fn read_head(connection: &TcpStream) -> String {
    let mut reader = BufReader::new(connection);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            return head;
        }
        head.push_str(&line);
    }
}

fn serve_stream(mut connection: TcpStream, first: bool) {
    let mut send = |text: String| connection.write_all(text.as_bytes()).and_then(|()| connection.flush());
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\nretry: 50\n\n";
    if send(head.to_owned()).is_err() {
        return;
    }
    if first {
        let hydrate = json!({"revision": 5, "flags": [flag(false)], "segments": []});
        let _ = send(format!("event: hydrate\nid: 5\ndata: {hydrate}\n\n"));
        // Silent from now on, connection open: only the client's dead-stream timeout ends this.
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    let mut patch = flag(true);
    patch["kind"] = json!("flag");
    patch["key"] = json!("a");
    if send(format!("event: patch\nid: 7\ndata: {patch}\n\n")).is_err() {
        return;
    }
    while send(": ping\n\n".to_owned()).is_ok() {
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn next<T: Clone + std::fmt::Debug>(
    receiver: &mut broadcast::Receiver<T>,
    wanted: impl Fn(&T) -> bool,
) -> T {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(item) = receiver.recv().await
                && wanted(&item)
            {
                return item;
            }
        }
    })
    .await
    .expect("the event within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_is_reconnected_with_the_last_event_id_and_heartbeats_keep_one_alive() {
    let (url, requests) = scripted_server();
    let client = Client::builder(KEY)
        .url(&url)
        .dead_stream_after(Duration::from_millis(1_000))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .stale_after(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    assert_eq!((client.state(), client.revision()), (State::Ready, Some(5)));
    let mut sync = client.subscribe_sync_events();
    let mut changes = client.subscribe_changes();

    let dropped = next(&mut sync, |e| matches!(e, SyncEvent::StreamDisconnected { .. })).await;
    let SyncEvent::StreamDisconnected { reason } = dropped else { unreachable!() };
    assert!(reason.contains("no event or heartbeat"), "{reason}");
    let change = next(&mut changes, |_| true).await;
    assert_eq!(change, FlagChange { revision: 7, keys: vec!["a".into()] });
    assert!(client.bool_value("a", &Context::new("u"), false));

    let heads = requests.lock().unwrap().clone();
    let streams: Vec<&String> = heads.iter().filter(|head| head.starts_with("GET /v1/stream")).collect();
    assert!(
        !streams[0].to_ascii_lowercase().contains("last-event-id"),
        "a first connection has no id to resume"
    );
    assert!(streams[1].to_ascii_lowercase().contains("last-event-id: 5\r\n"), "{}", streams[1]);
    assert!(
        streams[1].contains("authorization: Bearer vxs_")
            || streams[1].contains("Authorization: Bearer vxs_")
    );
    assert!(heads.iter().any(|head| head.starts_with("GET /v1/flags")), "the lost stream made it poll");

    // Heartbeats every 100 ms keep the second stream up well past the 1 s dead-stream timeout.
    let quiet = tokio::time::timeout(Duration::from_millis(2_500), async {
        loop {
            if let Ok(SyncEvent::StreamDisconnected { reason }) = sync.recv().await {
                return reason;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "a stream with heartbeats was dropped: {quiet:?}");
    assert_eq!(client.state(), State::Ready);
    client.close().await;
}
