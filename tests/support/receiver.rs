//! A real HTTP receiver on loopback that records what it got and answers as told.

use super::http::{read_body, read_head};
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the receiver answers.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Answer with this status, these headers and this body.
    Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Wait, then answer.
    Delay(Duration, Box<Behaviour>),
    /// Read the request, then close the connection without answering.
    CloseAfterRead,
    /// Read the request, then play these steps on the raw connection, byte for byte (for
    /// answers no well-behaved server gives: trickled, cut short, reset, stalled mid-body).
    Script(Vec<Step>),
}

/// One step of a scripted answer.
#[derive(Clone, Debug)]
pub enum Step {
    /// Write these bytes (flushed as one write; TCP_NODELAY is set).
    Write(Vec<u8>),
    /// Wait.
    Sleep(Duration),
    /// Close the connection (FIN).
    Close,
    /// Abort the connection (RST: SO_LINGER 0, then close).
    Reset,
}

impl Behaviour {
    pub fn json(status: u16, body: &str) -> Behaviour {
        Behaviour::with_type(status, "application/json", body.as_bytes())
    }

    /// The whole answer (status line, headers, body) written one byte at a time, `gap` apart.
    pub fn trickle(status: u16, content_type: &str, body: &[u8], gap: Duration) -> Behaviour {
        let mut bytes = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        let mut steps = Vec::with_capacity(bytes.len() * 2);
        for byte in bytes {
            steps.push(Step::Write(vec![byte]));
            steps.push(Step::Sleep(gap));
        }
        Behaviour::Script(steps)
    }

    /// A chunked answer (`transfer-encoding: chunked`), one chunk per slice, then `trailers`.
    pub fn chunked(
        status: u16,
        content_type: &str,
        chunks: &[&[u8]],
        trailers: &[(&str, &str)],
    ) -> Behaviour {
        let mut bytes = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for chunk in chunks.iter().filter(|c| !c.is_empty()) {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n");
        for (k, v) in trailers {
            bytes.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        Behaviour::Script(vec![Step::Write(bytes)])
    }

    pub fn with_type(status: u16, content_type: &str, body: &[u8]) -> Behaviour {
        Behaviour::Answer {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.to_vec(),
        }
    }
}

/// What the receiver got.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub request_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Receiver {
    pub port: u16,
    pub records: Arc<Mutex<Vec<Recorded>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    pub connections: Arc<Mutex<u32>>,
}

impl Receiver {
    /// Listens on 127.0.0.1 (or another loopback address) on a free port.
    pub fn start(behaviour: Behaviour) -> Receiver {
        Self::start_on("127.0.0.1", behaviour)
    }

    pub fn start_on(address: &str, behaviour: Behaviour) -> Receiver {
        Self::start_at(address, 0, behaviour)
    }

    /// Listens on `address:port` (0: a free port).
    pub fn start_at(address: &str, port: u16, behaviour: Behaviour) -> Receiver {
        let listener = TcpListener::bind((address, port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let receiver = Receiver {
            port,
            records: Arc::default(),
            behaviour: Arc::new(Mutex::new(behaviour)),
            connections: Arc::default(),
        };
        let (records, behaviour, connections) = (
            receiver.records.clone(),
            receiver.behaviour.clone(),
            receiver.connections.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                *connections.lock().unwrap() += 1;
                let (records, behaviour) = (records.clone(), behaviour.clone());
                std::thread::spawn(move || serve(stream, &records, &behaviour));
            }
        });
        receiver
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    /// How many requests the receiver got on `path` (path and query as sent).
    pub fn received_on(&self, path: &str) -> usize {
        let line = format!("POST {path} HTTP/1.1");
        self.records()
            .iter()
            .filter(|r| r.request_line == line)
            .count()
    }

    pub fn records(&self) -> Vec<Recorded> {
        self.records.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn serve(stream: TcpStream, records: &Mutex<Vec<Recorded>>, behaviour: &Mutex<Behaviour>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    for _ in 0..10_000 {
        let Ok((request_line, headers)) = read_head(&mut reader) else {
            return;
        };
        let Ok(body) = read_body(&mut reader, &headers, false) else {
            return;
        };
        records.lock().unwrap().push(Recorded {
            request_line,
            headers,
            body,
        });
        let behaviour = behaviour.lock().unwrap().clone();
        if !answer(&write_half, &behaviour) {
            return;
        }
    }
}

/// Answers one request; false when the connection is closed.
fn answer(mut stream: &TcpStream, behaviour: &Behaviour) -> bool {
    match behaviour {
        Behaviour::Answer {
            status,
            headers,
            body,
        } => {
            let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(body);
            stream.write_all(&bytes).is_ok()
        }
        Behaviour::Delay(wait, then) => {
            std::thread::sleep(*wait);
            answer(stream, then)
        }
        Behaviour::CloseAfterRead => {
            let _ = stream.shutdown(Shutdown::Both);
            false
        }
        Behaviour::Script(steps) => {
            let _ = stream.set_nodelay(true);
            for step in steps {
                match step {
                    Step::Write(bytes) => {
                        if stream.write_all(bytes).is_err() {
                            return false;
                        }
                    }
                    Step::Sleep(wait) => std::thread::sleep(*wait),
                    Step::Close => {
                        let _ = stream.shutdown(Shutdown::Both);
                        return false;
                    }
                    Step::Reset => {
                        abort(stream);
                        return false;
                    }
                }
            }
            true
        }
    }
}

/// Resets a connection at once: the RST goes out when the caller drops its handle.
pub fn reset_now(stream: &TcpStream) {
    abort(stream);
}

/// Arms an abortive close: SO_LINGER on with a zero timeout, so that when the last handle of the
/// socket is dropped (the caller returns false, `serve` ends) the peer gets RST, not FIN.
fn abort(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    let linger = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor, and a pointer to a `struct linger` of the size given.
    unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            &linger,
            std::mem::size_of::<Linger>() as u32,
        );
    }
}
