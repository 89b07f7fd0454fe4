//! A tiny authoritative DNS server for tests: answers A queries for the names it is given (the
//! headless Service's pod names), NXDOMAIN for the rest. Names can change while it runs, as pod
//! IPs do. UDP only, loopback only.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct TestDns {
    pub addr: SocketAddr,
    records: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>,
}

impl TestDns {
    pub fn start() -> TestDns {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
        let addr = socket.local_addr().expect("dns addr");
        let records: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>> = Arc::default();
        let table = Arc::clone(&records);
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                if let Some(reply) = answer(&buf[..n], &table.lock().unwrap()) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        TestDns { addr, records }
    }

    /// Sets (or with an empty list, removes) the addresses of a name.
    pub fn set(&self, name: &str, ips: &[Ipv4Addr]) {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        let mut r = self.records.lock().unwrap();
        if ips.is_empty() {
            r.remove(&key);
        } else {
            r.insert(key, ips.to_vec());
        }
    }
}

/// Builds the reply to one query, or `None` for a packet that is not a query.
fn answer(q: &[u8], records: &HashMap<String, Vec<Ipv4Addr>>) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    // Question: labels, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question_end = i + 4;
    let name = labels.join(".");
    let found = records.get(&name);
    let ips: Vec<Ipv4Addr> = match (found, qtype) {
        (Some(ips), 1) => ips.clone(),
        _ => Vec::new(),
    };
    let rcode = if found.is_some() { 0 } else { 3 };
    let mut r = Vec::with_capacity(question_end + ips.len() * 16);
    r.extend_from_slice(&q[0..2]); // id
    r.push(0x84 | (q[2] & 0x01)); // QR, AA, RD copied
    r.push(0x80 | rcode); // RA, rcode
    r.extend_from_slice(&[0, 1]); // one question
    r.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]); // no authority, no additional
    r.extend_from_slice(q.get(12..question_end)?);
    for ip in ips {
        r.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]); // name ptr, A, IN, TTL 1, len 4
        r.extend_from_slice(&ip.octets());
    }
    Some(r)
}
