//! The timed queries of `--url` mode on plain keep-alive sockets, polled in a busy loop.
//!
//! Why not the reqwest client used for uploads: on one machine, a client that sleeps between
//! answers must be woken by the node's `write`, and on loopback that wake-up (an inter-processor
//! interrupt, expensive in a VM) is charged to the node's CPU, which a client on another host
//! would never cost it. Measured on the 2-vCPU bench machine with the node on one core: 10 % more
//! searches/s with a spinning client than with wrk's epoll loop. So this client keeps its own core
//! busy: `concurrency` connections, each with one request in flight, read with non-blocking
//! `read` calls until the answer is complete. Run it on a core of its own (the harness pins it).

use anyhow::{anyhow, bail, Context, Result};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::time::{Duration, Instant};

/// An answer slower than this ends the run with an error instead of spinning forever.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Room set aside for each kept answer body: ten hits without payload take ~0.6 KB.
const BODY_CAPACITY: usize = 4096;

/// A parsed base URL: where to connect and what to send as `Host`.
pub struct Endpoint {
    addr: SocketAddr,
    host: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint> {
        let u = reqwest::Url::parse(url).with_context(|| format!("bad URL {url}"))?;
        if u.scheme() != "http" {
            bail!("the spinning client speaks plain http only: {url}");
        }
        let host = u.host_str().ok_or_else(|| anyhow!("no host in {url}"))?;
        let port = u.port_or_known_default().unwrap_or(80);
        let addr = (host, port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow!("{host} does not resolve"))?;
        Ok(Endpoint {
            addr,
            host: format!("{host}:{port}"),
        })
    }
}

/// One answered request. Only the first answer to each body keeps its body (recall is taken
/// from it); the repeats that fill the timed run keep an empty one.
pub struct Answer {
    pub query: usize,
    pub latency_us: f64,
    pub body: Vec<u8>,
}

impl Answer {
    /// Whether the answer to request `query`, of `bodies` distinct ones, keeps its body.
    pub fn keeps_body(query: usize, bodies: usize) -> bool {
        query < bodies
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The query in flight and when it was sent.
    busy: Option<(usize, Instant)>,
}

impl Conn {
    fn send(&mut self, request: &[u8], query: usize) -> Result<()> {
        let mut sent = 0;
        while sent < request.len() {
            match self.stream.write(&request[sent..]) {
                Ok(0) => bail!("connection closed while sending"),
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(e) => return Err(e.into()),
            }
        }
        self.busy = Some((query, Instant::now()));
        Ok(())
    }

    /// Reads what has arrived; once an answer is complete, returns its status and the place of
    /// its body in `buf` (to be taken and then [`Conn::consume`]d).
    fn poll(&mut self, scratch: &mut [u8]) -> Result<Option<(u16, Range<usize>)>> {
        match self.stream.read(scratch) {
            Ok(0) => bail!("the node closed the connection"),
            Ok(n) => self.buf.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let Some((status, head_len, body_len)) = parse_head(&self.buf)? else {
            return Ok(None);
        };
        let end = head_len + body_len;
        Ok((self.buf.len() >= end).then_some((status, head_len..end)))
    }

    /// Drops an answer that has been read from the front of `buf`.
    fn consume(&mut self, answer: Range<usize>) {
        self.buf.drain(..answer.end);
    }
}

/// A buffer of `capacity` bytes whose memory has been written, so that filling it later takes
/// no page faults.
fn touched_buffer(capacity: usize) -> Vec<u8> {
    let mut buf = vec![1u8; capacity];
    buf.clear();
    buf
}

/// Status, header length and `Content-Length` of a response head, once the head is complete.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("chunked answers are not supported by this client");
            }
        }
    }
    let length = length.ok_or_else(|| anyhow!("answer without Content-Length"))?;
    Ok(Some((status, end + 4, length)))
}

/// Sends `total` requests `POST {path}`, request `i` with body `i % bodies.len()` (so the set
/// repeats without being copied), `concurrency` at a time; answers in completion order, each
/// numbered by its request. Returns them with the wall time in seconds. Any non-2xx answer is an
/// error.
pub fn run(
    endpoint: &Endpoint,
    path: &str,
    bodies: &[String],
    total: usize,
    concurrency: usize,
) -> Result<(Vec<Answer>, f64)> {
    let requests: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| {
            let mut r = format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                endpoint.host,
                b.len()
            )
            .into_bytes();
            r.extend_from_slice(b.as_bytes());
            r
        })
        .collect();
    let total = if requests.is_empty() { 0 } else { total };
    let mut conns = Vec::new();
    for _ in 0..concurrency.clamp(1, total.max(1)) {
        let stream = TcpStream::connect(endpoint.addr)
            .with_context(|| format!("connect {}", endpoint.addr))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        conns.push(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            busy: None,
        });
    }
    // Everything the timed loop stores goes into memory written before the clock starts. A
    // growing heap takes page faults, and in the bench VM one 2 MB huge page takes ~4.5 ms to
    // clear: the client stalled that long every ~120 ms with both of its requests answered, the
    // node sat idle, and the HTTP figure came out ~3 % low for a cost a client on another host
    // never charges the node.
    let mut answers: Vec<Answer> = (0..total)
        .map(|_| Answer {
            query: usize::MAX,
            latency_us: f64::NAN,
            body: Vec::new(),
        })
        .collect();
    let mut spare: Vec<Vec<u8>> = (0..requests.len().min(total))
        .map(|_| touched_buffer(BODY_CAPACITY))
        .collect();
    let mut answered = 0;
    let mut scratch = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut next = 0;
    for c in conns.iter_mut() {
        if next < total {
            c.send(&requests[next % requests.len()], next)?;
            next += 1;
        }
    }
    while answered < total {
        for c in conns.iter_mut() {
            let Some((query, sent)) = c.busy else {
                continue;
            };
            let Some((status, body)) = c.poll(&mut scratch)? else {
                if sent.elapsed() > ANSWER_TIMEOUT {
                    bail!("no answer to query {query} within {ANSWER_TIMEOUT:?}");
                }
                continue;
            };
            let latency_us = sent.elapsed().as_secs_f64() * 1e6;
            if !(200..300).contains(&status) {
                bail!("HTTP {status}: {}", String::from_utf8_lossy(&c.buf[body]));
            }
            let mut kept = Vec::new();
            if Answer::keeps_body(query, requests.len()) {
                kept = spare.pop().unwrap_or_default();
                kept.extend_from_slice(&c.buf[body.clone()]);
            }
            c.consume(body);
            answers[answered] = Answer {
                query,
                latency_us,
                body: kept,
            };
            answered += 1;
            c.busy = None;
            if next < total {
                c.send(&requests[next % requests.len()], next)?;
                next += 1;
            }
        }
        std::hint::spin_loop();
    }
    Ok((answers, started.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_head(r).unwrap(), Some((200, 38, 5)));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap(), None);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    }
}
