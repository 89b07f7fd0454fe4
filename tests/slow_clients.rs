//! Slow and greedy clients on raw TCP sockets (issue 16): trickled headers are cut off by the
//! header read timeout, trickled bodies by the body read timeout (a 408), one source IP cannot
//! hold more than its connections and its share of the request slots, and meanwhile another
//! client and the probes are served. Each attacker uses its own loopback source address.

mod common;
use common::Node;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A connection to `to` from the loopback address `from`.
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
        socket.connect(to).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// What the server sent within `wait` (empty if nothing; `None` if it closed with nothing).
fn read_within(s: &mut TcpStream, wait: Duration) -> Option<String> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = vec![0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => None,
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
        Err(_) => Some(String::new()),
    }
}

/// Whether the server has closed the connection (EOF or reset), waiting at most `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if read_within(s, Duration::from_millis(200)).is_none() {
            return true;
        }
    }
    false
}

fn served(node: &Node) {
    for path in ["/readyz", "/collections"] {
        let (s, v) = node.call("GET", path, None);
        assert_eq!(s, 200, "{path} while under attack: {v}");
    }
    let (s, v) = node.call(
        "POST",
        "/collections/c/points/count",
        Some(serde_json::json!({})),
    );
    assert_eq!(s, 200, "count while under attack: {v}");
}

#[test]
fn slow_headers_are_cut_off_and_one_client_cannot_take_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        &dir.path().join("n"),
        &[
            "--header-read-timeout-secs",
            "1",
            "--max-connections-per-client",
            "20",
        ],
    );
    node.create_collection("c", 2, "Dot");
    // 40 connections from 127.0.0.2, each sending half a request line.
    let mut slow: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = connect_from([127, 0, 0, 2], node.addr);
            s.write_all(b"GET /collections HT").unwrap();
            s
        })
        .collect();
    // The 20 over the limit are answered a 503 in Qdrant's shape and closed at once.
    let refused = slow
        .iter_mut()
        .filter_map(|s| read_within(s, Duration::from_millis(300)))
        .filter(|answer| {
            answer.starts_with("HTTP/1.1 503") && answer.contains("--max-connections-per-client")
        })
        .count();
    assert_eq!(refused, 20);
    // Another client and the probes are served meanwhile.
    served(&node);
    // The others are closed by the header read timeout.
    let started = Instant::now();
    for s in slow.iter_mut() {
        assert!(
            closed_within(s, Duration::from_secs(10)),
            "a slow-header connection stayed open"
        );
    }
    eprintln!("slow headers cut off after {:?}", started.elapsed());
    // The client's connections are counted down again: it may connect.
    let mut again = connect_from([127, 0, 0, 2], node.addr);
    again
        .write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let answer = read_within(&mut again, Duration::from_secs(5)).unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn slow_bodies_time_out_and_hold_only_their_clients_share() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        &dir.path().join("n"),
        &[
            "--body-read-timeout-secs",
            "2",
            "--max-concurrent-requests",
            "16",
            "--max-requests-per-client",
            "8",
        ],
    );
    node.create_collection("c", 2, "Dot");
    // 12 requests from 127.0.0.3 that announce a body and send one byte of it.
    let mut slow: Vec<TcpStream> = (0..12)
        .map(|_| {
            let mut s = connect_from([127, 0, 0, 3], node.addr);
            s.write_all(
                b"PUT /collections/c/points HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
            )
            .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The 4 over the client's share are refused at once...
    let mut shed = 0;
    let mut waiting = Vec::new();
    // On a loaded machine these reads can outlast the body timeout: an answer already read is
    // kept for the check below.
    let mut answers = Vec::new();
    for mut s in slow.drain(..) {
        match read_within(&mut s, Duration::from_millis(200)) {
            Some(a) if a.starts_with("HTTP/1.1 503") => {
                assert!(a.contains("--max-requests-per-client"), "{a}");
                shed += 1;
            }
            Some(a) if !a.is_empty() => answers.push(a),
            _ => waiting.push(s),
        }
    }
    assert_eq!(shed, 4);
    // ...and the node's other 8 slots still serve another client.
    served(&node);
    // The trickled bodies get a 408 in Qdrant's shape.
    for s in waiting.iter_mut() {
        answers.push(read_within(s, Duration::from_secs(10)).unwrap_or_default());
    }
    assert_eq!(answers.len(), 8);
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("--body-read-timeout-secs"), "{answer}");
    }
    assert_eq!(node.count("c"), 0);
}
