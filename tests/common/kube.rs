//! A fake Kubernetes API server for tests: serves one StatefulSet object whose `spec.replicas`
//! the test changes, as `kubectl scale` would. Loopback only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct FakeKube {
    pub addr: SocketAddr,
    replicas: Arc<AtomicU32>,
}

impl FakeKube {
    pub fn start(replicas: u32) -> FakeKube {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake kube");
        let addr = listener.local_addr().expect("addr");
        let count = Arc::new(AtomicU32::new(replicas));
        let served = Arc::clone(&count);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = if path
                    == "/apis/apps/v1/namespaces/default/statefulsets/shoal"
                {
                    let r = served.load(Ordering::SeqCst);
                    (
                        "200 OK",
                        format!(
                            r#"{{"kind":"StatefulSet","apiVersion":"apps/v1","metadata":{{"name":"shoal","namespace":"default"}},"spec":{{"replicas":{r},"serviceName":"shoal-headless"}}}}"#
                        ),
                    )
                } else {
                    (
                        "404 Not Found",
                        r#"{"kind":"Status","status":"Failure","reason":"NotFound","code":404}"#
                            .to_string(),
                    )
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeKube {
            addr,
            replicas: count,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `kubectl scale statefulset shoal --replicas=n`
    pub fn scale(&self, n: u32) {
        self.replicas.store(n, Ordering::SeqCst);
    }
}
